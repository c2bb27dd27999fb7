"""Builds ``StreamSession`` objects with the service's detector, tracker settings and limits."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Literal

import numpy as np

from tdmi.model.smoothing import OneEuroParams, PoseSmoother
from tdmi.model.tracking import PoseTracker, TrackerConfig
from tdmi.service.config import Settings
from tdmi.service.detection import DetectionSchedule, TimedDetections, make_detector
from tdmi.service.inference.runtime import ModelRuntime
from tdmi.service.inference.threads import named_threads
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.boxes import BoxMode, SessionBoxes, detect_timed
from tdmi.service.streaming.session import SessionOptions, StreamSession
from tdmi.service.weights.resolve import resolve_detector, weights_store

__all__ = ["SessionFactory"]


class SessionFactory:
    """One per app: owns the shared detector and the thread it runs on."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics):
        self.settings = settings
        self.metrics = metrics
        self.detector_spec = resolve_detector(settings.detector, weights_store(settings))
        # with the faint boxes too: they keep tracked people (the tracker's second association)
        self.detector = make_detector(self.detector_spec, second_pass=True)
        logging.getLogger("tdmi.service").info("person detector: %s", self.detector_spec)
        self.detect_thread = named_threads("tdmi-detect")
        self._grid = DetectionSchedule(settings.detect_every)  # the sessions' default schedule

    def detect_ahead(self, position: int, image: np.ndarray) -> asyncio.Future[TimedDetections] | None:
        """Start the detector on a video job's frame before it reaches its session (frame
        ``position`` of a session with the default schedule and no client boxes), if the schedule
        surely detects it: the same answer, sooner, on the detector's thread while the model works
        on the frames before. None when it is not on the grid or there is no detector."""
        if self.detector is None or not self._grid.on_grid(position):
            return None
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self.detect_thread, detect_timed, self.detector, image)

    def new(
        self,
        stream_id: str,
        model: ModelRuntime,
        *,
        live: bool,
        lookahead: int | None = None,
        box_mode: BoxMode = "auto",
        detect_every: int | None = None,
        smoothing: Literal["none", "one_euro"] | None = None,
        smoothing_min_cutoff: float | None = None,
        smoothing_beta: float | None = None,
    ) -> StreamSession:
        """A session; ``smoothing*`` given (a live stream's config) override the server's settings."""
        radius = model.preset.num_frames // 2
        if lookahead is None:  # the server's default, capped by what this model can use
            default = self.settings.lookahead if live and self.settings.lookahead is not None else radius
            lookahead = min(default, radius)
        options = SessionOptions(
            radius=radius,
            lookahead=lookahead,
            live=live,
            staleness_s=self.settings.staleness_ms / 1000.0 if live else None,
            feature_reuse=self.settings.feature_reuse and model.preset.multi_frame,
            reuse_drift_iou=self.settings.reuse_drift_iou,
            box_lag=None if live else self.settings.job_box_lag,
        )
        boxes = SessionBoxes(
            box_mode,
            self.detector,
            detect_every or self.settings.detect_every,
            self.detect_thread,
            self.metrics.observe_stage,
            self.metrics.cpu,
            live=live,
        )
        config = TrackerConfig(
            match_threshold=self.settings.track_match_threshold,
            max_age=self.settings.track_max_age,
            max_coast=self.settings.track_max_coast,
        )
        # a job numbers its own tracks from 1, so its result is the same in any process; live
        # streams draw from the process-wide sequence, so two streams never share an id
        tracker = PoseTracker(config) if live else PoseTracker(config, itertools.count(1).__next__)
        smoother = self._smoother(smoothing, smoothing_min_cutoff, smoothing_beta)
        return StreamSession(
            stream_id, model.engine, options, boxes, tracker, smoother=smoother, cpu=self.metrics.cpu
        )

    def _smoother(
        self, choice: Literal["none", "one_euro"] | None, min_cutoff: float | None, beta: float | None
    ) -> PoseSmoother | None:
        if (choice or self.settings.smoothing) == "none":
            return None
        return PoseSmoother(
            OneEuroParams(
                min_cutoff=self.settings.smoothing_min_cutoff if min_cutoff is None else min_cutoff,
                beta=self.settings.smoothing_beta if beta is None else beta,
            )
        )

    def close(self) -> None:
        self.detect_thread.shutdown(wait=False, cancel_futures=True)
