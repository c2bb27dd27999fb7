"""The benchmark suite runs end to end on tiny settings and its JSON holds finite, positive numbers.

Each command runs as a user runs it (``python -m bench ... --json``, a real server for
``service``); the numbers themselves are not asserted against targets (performance is measured,
not tested), only that they are there, finite and of the right sign.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def _bench(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--json"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _check_header(report: dict[str, Any], bench: str) -> None:
    assert report["bench"] == bench
    assert report["date"][:2] == "20" and report["command"].startswith(f"python -m bench {bench}")
    assert report["device_type"] == "cpu" and "threads" in report["device"]
    assert {"python", "torch", "onnxruntime"} <= set(report["software"])


@pytest.fixture(scope="module")
def model_report() -> dict[str, Any]:
    return _bench(
        "model", "--presets", "hrnet-tiny", "--batches", "1", "2", "--repeats", "1",
        "--variants", "eager-fp32", "torchscript-fp32", "onnxruntime-cpu",
        "eager-bf16-cl", "onnxruntime-cuda",
    )  # fmt: skip


@pytest.fixture(scope="module")
def service_report() -> dict[str, Any]:
    # the single-frame hrnet-tiny: no lookahead, so the open-loop level needs few frames
    return _bench(
        "service", "--model", "hrnet-tiny", "--streams", "2", "--persons", "1", "--frames", "5",
        "--max-batch", "2", "--loads", "0.5", "--load-seconds", "1", "--baseline-frames", "1",
        "--rounds", "2",
    )  # fmt: skip


@pytest.mark.slow
def test_model_reports_every_variant_batch_and_utilisation(model_report: dict[str, Any]) -> None:
    _check_header(model_report, "model")
    assert _positive(model_report["peak_flops"]["fp32"])
    assert model_report["flops_per_clip"]["hrnet-tiny"] > 1e8  # 0.17 GFLOPs: convolutions counted
    rows = model_report["rows"]
    assert {(r["variant"], r["batch"]) for r in rows} == {
        (v, b) for v in ("eager-fp32", "torchscript-fp32", "onnxruntime-cpu") for b in (1, 2)
    }
    for row in rows:
        for key in ("ms_per_batch", "clips_per_s", "speedup_vs_eager_fp32", "achieved_tflops", "utilisation"):
            assert _positive(row[key]), (row, key)
        # utilisation is achieved over the measured peak (not bounded by 1 here: on a shared CPU the
        # peak and the model are timed at different moments of contention)
        achieved = model_report["flops_per_clip"]["hrnet-tiny"] * row["clips_per_s"]
        assert row["achieved_tflops"] == pytest.approx(achieved / 1e12)
        assert row["utilisation"] == pytest.approx(achieved / model_report["peak_flops"]["fp32"])
        assert 0 <= row["rel_error_vs_fp32"] < 1e-4  # every fp32 runtime computes the same heatmaps
        assert math.isclose(row["clips_per_s"], 1e3 * row["batch"] / row["ms_per_batch"])
    assert model_report["deformable_conv_share"] == {
        "hrnet-tiny": {"fp32": None}
    }  # a single-frame HRNet has none
    missing = {u["variant"]: u["reason"] for u in model_report["unavailable"]}
    assert set(missing) == {"eager-bf16-cl", "onnxruntime-cuda"}
    assert all("not available on this device" in reason for reason in missing.values())


@pytest.mark.slow
def test_service_reports_throughput_latency_batches_stages_and_ratios(service_report: dict[str, Any]) -> None:
    _check_header(service_report, "service")
    assert service_report["settings"]["backend"] == "onnxruntime"  # auto, as the service picks on a CPU
    saturation = service_report["saturation"]
    assert saturation["frames_answered"] == 2 * 5 and saturation["frames_dropped"] == 0
    assert not saturation["errors"]
    assert _positive(saturation["frames_per_s"])
    assert saturation["person_frames_per_s"] == pytest.approx(saturation["frames_per_s"])  # 1 person
    latency = saturation["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert sum(saturation["batch_histogram"].values()) >= 5  # 10 clips in batches of at most 2
    assert set(saturation["batch_histogram"]) <= {"<=1", "<=2"}
    assert {"decode", "crop", "model", "post", "send"} <= set(saturation["stages"])
    assert all(_positive(s["ms_per_call"]) for s in saturation["stages"].values())
    assert _positive(saturation["client_cpu_ms_per_person_frame"])
    cpu = saturation["cpu_ms_per_person_frame"]
    assert {"event loop (main thread)", "tdmi-device", "tdmi-prepare", "tdmi-finish"} <= set(cpu["groups"])
    assert cpu["process_ms"] > 0 and cpu["session_ms"] is None  # the server shares the bench's session
    _check_stages(saturation["cpu_ms_per_person_frame_by_stage"], cpu["process_ms"])
    (level,) = service_report["loads"]
    assert level["fraction_of_saturation"] == 0.5 and level["frames_answered"] > 0
    assert _positive(level["target_p95_ms"])
    for key in ("service_over_model", "service_over_baseline"):
        assert _positive(service_report[key])
    rounds = service_report["rounds"]  # saturation and the model alone, alternated
    assert len(rounds) == 2 and all(r["saturation"]["frames_answered"] == 2 * 5 for r in rounds)
    for r in rounds:
        alone, served = r["model_at_batch"], r["saturation"]
        assert r["service_over_model"] == pytest.approx(served["person_frames_per_s"] / alone["clips_per_s"])
        assert alone["batch"] == max(1, round(served["mean_batch"]))
    assert service_report["service_over_model"] == pytest.approx(
        statistics.median(r["service_over_model"] for r in rounds)
    )
    assert _positive(service_report["model_at_batch"]["clips_per_s"])
    assert _positive(service_report["baseline"]["person_frames_per_s"])
    assert isinstance(service_report["half_load_p95_within_target"], bool)


@pytest.mark.slow
def test_pipeline_times_every_stage_alone() -> None:
    report = _bench("pipeline", "--persons", "1", "--max-batch", "2", "--repeats", "1")
    _check_header(report, "pipeline")
    stages = report["stages"]
    assert set(stages) == {
        "decode-video",
        "decode-jpeg",
        "detect",
        "detect-amortised",
        "crop",
        "model",
        "post",
    }
    for stage in stages.values():
        assert _positive(stage["ms_per_frame"]) and _positive(stage["frames_per_s"])
    assert report["slowest"] in stages and report["slowest"] != "detect"
    assert stages["crop"]["frames_per_call"] == 2  # two one-person frames per batch of 2 clips


@pytest.mark.slow
def test_plots_are_written_from_the_reports(
    model_report: dict[str, Any], service_report: dict[str, Any], tmp_path: Path
) -> None:
    model_json, service_json = tmp_path / "model.json", tmp_path / "service.json"
    model_json.write_text(json.dumps(model_report))
    service_json.write_text(json.dumps(service_report))
    written = _bench(
        "plots", "--model-json", str(model_json), "--service-json", str(service_json), "--out", str(tmp_path)
    )["written"]
    assert sorted(Path(p).name for p in written) == ["latency_vs_load_cpu.png", "throughput_vs_batch_cpu.png"]
    for path in written:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_gpu_is_a_one_line_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "model", "--device", "cuda:99"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("--device cuda:99: ") and "CUDA" in line


@pytest.mark.slow
def test_the_deformable_convolutions_share_of_tdmi_time_is_a_fraction() -> None:
    from bench.dcn import deformable_share
    from tdmi.model.presets import build_model, get_preset

    preset = get_preset("tdmi-tiny")
    share = deformable_share(build_model(preset.name), lambda: torch.randn(preset.input_shape(1)), CPU)
    assert share is not None and 0.0 < share < 0.5  # tdmi-tiny: a few percent on a CPU


@pytest.mark.slow
def test_peer_serves_the_same_load_through_litserve_next_to_ours_and_leaves_no_process() -> None:
    from bench.cpu import EVENT_LOOP, process_start, session_pids

    report = _bench(
        "peer", "--model", "hrnet-tiny", "--streams", "2", "--persons", "2", "--frames", "4",
        "--load-seconds", "1", "--baseline-frames", "1", "--threads", "1",
        "--backend", "onnxruntime", "--rounds", "2",
    )  # fmt: skip
    _check_header(report, "peer")
    assert report["settings"]["peer_max_batch_frames"] == 16 // 2  # clips per batch / persons per frame
    assert report["settings"]["backend"] == "onnxruntime"
    # per round: the first server, the second (up for both its phases), the first again for the same load
    sessions = report["sessions"]
    assert len({s["session"] for s in sessions}) == 2 * 3
    for session in sessions:
        assert session_pids(session["session"]) == [], f"session {session} outlived the bench"
        for pid, start in session["processes"]:  # one that left its session is found by pid and start
            assert process_start(pid) != start, f"process {pid} of session {session} outlived the bench"
    # LitServe's sessions (the second of round 1) held its workers besides the process started
    assert len(sessions[1]["processes"]) >= 2 and all(len(s["processes"]) >= 1 for s in sessions)
    same_fps = {server["same_load_fps_per_stream"] for server in report["servers"].values()}
    assert len(same_fps) == 1 and _positive(same_fps.pop())  # both at the one offered load
    for name in ("ours", "litserve"):
        server = report["servers"][name]
        assert server["errors"] == [], server["errors"]
        assert server["rounds"] == 2
        assert _positive(server["person_frames_per_s"]) and _positive(server["half_load_p95_ms"])
        assert server["half_load_p50_ms"] <= server["half_load_p95_ms"]
        assert 0 < server["same_load_p50_ms"] <= server["same_load_p95_ms"]
        assert _positive(server["cpu_ms_per_person_frame"]["session_ms"])  # its workers' CPU too
        assert _positive(server["client_cpu_ms_per_person_frame"])  # the load generator's, beside it
    cpu = report["servers"]["ours"]["cpu_ms_per_person_frame"]
    assert {EVENT_LOOP, "tdmi-device"} <= set(cpu["groups"])
    assert cpu["groups"]["tdmi-device"]["threads"] >= 1
    assert _positive(cpu["process_ms"])
    _check_stages(cpu["stages"], cpu["process_ms"])
    waited = report["servers"]["ours"]["same_load_stages_ms"]  # where our same-load latency went
    assert {"decode", "crop", "model", "post", "send", "queue wait"} <= set(waited)
    assert _positive(waited["model"]) and waited["queue wait"] >= 0 and waited["mean batch (clips)"] >= 1
    assert "same_load_stages_ms" not in report["servers"]["litserve"]  # its stages are not ours to see
    for name, runs in report["rounds"].items():  # each round's own numbers, of which the medians are
        assert len(runs) == 2, name
        assert all(_positive(run["person_frames_per_s"]) and run["same_load_p95_ms"] > 0 for run in runs)
    assert _positive(report["baseline"]["person_frames_per_s"])
    assert _positive(report["ours_over_litserve"]) and _positive(report["ours_over_baseline"])


def _check_stages(stages: dict[str, float], process_ms: float) -> None:
    """Every live stage is reported, the counted ones spent CPU, and they add up to the process."""
    from bench.cpu import LIVE_STAGES

    assert list(stages) == [s for s, _, _ in LIVE_STAGES] + ["event loop itself", "other", "process"]
    for stage, _, counter in LIVE_STAGES:
        assert stages[stage] > 0 if counter is not None else stages[stage] >= 0, stage
    assert stages["process"] == pytest.approx(process_ms)
    assert sum(ms for stage, ms in stages.items() if stage != "process") == pytest.approx(process_ms)


@pytest.mark.slow
def test_job_runs_a_video_through_the_server_and_the_plain_script(tmp_path: Path) -> None:
    from bench.load import synthetic_jpegs
    from tdmi.service.images import decode_image
    from tdmi.service.video.encode import OverlayWriter

    video = tmp_path / "clip.mp4"
    with OverlayWriter(video, 640, 480, Fraction(1, 25), Fraction(25)) as writer:
        for i, jpeg in enumerate(synthetic_jpegs(6, 4)):
            writer.write(decode_image(jpeg), i)
    report = _bench("job", "--video", str(video), "--frames", "0", "--model", "hrnet-tiny", "--threads", "1")
    _check_header(report, "job")
    assert report["settings"]["frames"] == 6 and report["source_fps_needed"] == 25
    assert [run["render"] for run in report["runs"]] == [False, True]
    for run in report["runs"]:
        assert _positive(run["service"]["frames_per_s"]) and _positive(run["plain"]["frames_per_s"])
        assert {"decode", "pose"} <= set(run["plain"]["stages_s"])
        assert ("encode" in run["plain"]["stages_s"]) == run["render"]
        assert "model" in run["service"]["stages"] or "detect" in run["service"]["stages"]
        assert _positive(run["service_over_plain"])


@pytest.mark.slow
def test_soak_samples_the_server_while_streams_and_jobs_come_and_go() -> None:
    report = _bench(
        "soak", "--model", "hrnet-tiny", "--seconds", "3", "--streams", "1", "--jobs", "1",
        "--stream-frames", "4", "--job-frames", "4", "--persons", "1", "--samples", "3", "--threads", "1",
        env={"TDMI_HEAP_TRIM_S": "0.5"},  # the first and last samples wait 5.5 s of idle, not 25
    )  # fmt: skip
    _check_header(report, "soak")
    samples = report["samples"]
    assert len(samples) == 3 and samples[0]["seconds"] < samples[1]["seconds"] < samples[2]["seconds"]
    assert samples[-1]["seconds"] >= 3.0  # the last sample is taken after the load has ended
    for sample in samples:
        assert _positive(sample["rss_mib"]) and sample["open_fds"] > 3 and sample["data_dir_mib"] > 0
    assert report["change"]["open_fds"] == samples[-1]["open_fds"] - samples[0]["open_fds"]
    assert report["idle_wait_s"] == 5.5 and report["rss_mib_under_load_max"] == samples[1]["rss_mib"]
    totals = report["totals"]
    assert totals["streams"] >= 1 and totals["frames_answered"] >= 4
    assert totals["jobs_done"] >= 1
    assert totals["jobs_deleted"] == totals["jobs_done"]
    assert report["errors"] == []


@pytest.mark.slow
@pytest.mark.camera
def test_sources_pulls_a_real_camera_to_its_viewers_and_leaves_no_process() -> None:
    from bench.cpu import session_pids

    report = _bench("sources", "--cameras", "1", "--viewers", "1", "--seconds", "3")
    _check_header(report, "sources")
    assert report["settings"]["camera_fps"] == 10 and report["settings"]["model"] == "tdmi-tiny"
    phases = report["cameras"] + report["viewers"]
    assert [(p["cameras"], p["viewers_per_camera"]) for p in phases] == [(1, 1), (1, 1)]
    for phase in phases:
        (camera,) = phase["per_camera"]
        assert camera["camera_fps"] == pytest.approx(10, abs=0.5)  # as the camera's stream says
        assert _positive(camera["read_fps"]) and _positive(camera["processed_fps"])
        assert camera["skipped"] >= 0 and camera["viewer_dropped"] == 0 and camera["viewer_errors"] == []
        assert _positive(camera["viewer_results_per_s"])
        assert phase["processed_fps"] == camera["processed_fps"]
        assert phase["all_at_full_rate"] == (camera["processed_fps"] >= 0.95 * 10)
        assert phase["results_timed"] > 0
        assert 0 < phase["latency_ms"]["p50"] <= phase["latency_ms"]["p95"]
        assert 0 < phase["engine_latency_ms"]["p50"] <= phase["engine_latency_ms"]["p95"]
        assert phase["p95_target_ms"] == pytest.approx(phase["model_ms_per_batch"] + 150)
        assert phase["p95_within_target"] == (phase["latency_ms"]["p95"] < phase["p95_target_ms"])
    assert report["most_cameras_at_full_rate"] == (1 if report["cameras"][0]["all_at_full_rate"] else 0)
    assert report["fps_most_over_fewest_viewers"] == 1.0  # one viewer count: the phase against itself
    processes = report["processes"]
    assert len(processes["server_sessions"]) == 1 and len(processes["camera_pids"]) == 2  # one per phase
    for session in processes["server_sessions"]:
        assert session_pids(session) == [], f"the server's session {session} outlived the bench"
    for pid in processes["camera_pids"]:
        assert not _running(pid), f"camera {pid} outlived the bench"


@pytest.mark.slow
@pytest.mark.camera
def test_sources_times_an_outage_and_samples_a_soak_and_leaves_no_process() -> None:
    from bench.cpu import session_pids

    report = _bench(
        "sources", "--cameras", "none", "--viewers", "none", "--outage", "2",
        "--soak", "0.4", "--soak-cycle", "8", "--soak-cameras", "1",
    )  # fmt: skip
    _check_header(report, "sources")
    assert report["cameras"] == [] and report["viewers"] == []
    outage = report["outage"]
    assert outage["outage_s"] >= 2 and _positive(outage["recovery_s"])
    assert outage["no_results_s"] > outage["recovery_s"] and outage["viewer_error"] is None
    statuses = [event["status"] for event in outage["statuses"]]
    assert statuses[0] == "reconnecting" and statuses[-1] == "live" and outage["reconnects"] >= 1
    soak = report["soak"]
    assert soak["swaps"] >= 2 and soak["minutes"] == pytest.approx(0.4, abs=0.2)
    assert [s["t_s"] for s in soak["samples"]] == sorted(s["t_s"] for s in soak["samples"])
    for sample in soak["samples"]:
        assert _positive(sample["rss_mib"]) and _positive(sample["threads"]) and _positive(sample["open_fds"])
    assert soak["rss_max_mib"] == max(s["rss_mib"] for s in soak["samples"])
    assert math.isfinite(soak["rss_slope_second_half_mib_per_min"])
    processes = report["processes"]
    # the outage's two starts; the soak's first camera, its warm-up swap's and one per swap
    assert len(processes["camera_pids"]) == 2 + 1 + 1 + soak["swaps"]
    for session in processes["server_sessions"]:
        assert session_pids(session) == [], f"the server's session {session} outlived the bench"
    for pid in processes["camera_pids"]:
        assert not _running(pid), f"camera {pid} outlived the bench"


def test_the_viewer_fanout_is_timed_per_result_for_each_viewer_count() -> None:
    """In-process (no server, no camera): the viewers' real route, fed by the real fan-out."""
    from bench.viewer_fanout import fanout_cost

    report = fanout_cost([1, 3], messages=40, rounds=2)
    assert set(report["us_per_result"]) == {"1", "3"}
    assert all(_positive(us) for us in report["us_per_result"].values())
    assert all(len(rounds) == 2 for rounds in report["us_per_result_rounds"].values())
    assert math.isfinite(report["us_per_added_viewer"])


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_tracking_counts_tracks_on_a_real_clip_and_scores_synthetic_video(tmp_path: Path) -> None:
    clip = Path(__file__).parents[1] / "data" / "pedestrians" / "vtest_cut.mp4"
    saved = tmp_path / "result.json"
    report = _bench(
        "tracking", "--video", str(clip), "--frames", "12", "--threads", "1", "--save-result", str(saved)
    )
    _check_header(report, "tracking")
    stats, frames = report["video"], json.loads(saved.read_text())["frames"]
    assert stats["frames"] == len(frames) == 12 and stats["track_ids"] >= 1
    assert stats["track_ids"] == len({p["track_id"] for f in frames for p in f["persons"]})
    assert stats["one_frame_tracks"] <= stats["tracks_under_5_frames"] <= stats["track_ids"]
    assert report["settings"]["tracking"]["track_max_coast"] >= 0
    synthetic = _bench("tracking", "--synthetic", "1", "--synthetic-frames", "8", "--threads", "1")
    rows = synthetic["synthetic"]["rows"]
    assert set(rows) == {"ground_truth", "detector"} and rows["ground_truth"]["gt_tracks"] >= 1
    truth = rows["ground_truth"]  # HOG may find nobody in 8 small synthetic frames: its row is only there
    assert truth["mota"] <= 100 and truth["objects"] > 0 and truth["track_ids"] >= 1
    assert rows["detector"].keys() == truth.keys() and rows["detector"]["switches"] >= 0


def test_track_statistics_count_ids_lengths_and_static_tracks() -> None:
    from bench.tracking import STATIC_MIN_FRAMES, track_statistics

    def person(track: int, x: float) -> dict:
        return {"track_id": track, "box": [x, 0.0, x + 20.0, 60.0]}

    frames = [
        {"persons": [person(1, 100.0), person(2, 5.0 * i)] + ([person(3, 50.0)] if i == 0 else [])}
        for i in range(STATIC_MIN_FRAMES)
    ]
    stats = track_statistics(frames)
    assert (stats["track_ids"], stats["one_frame_tracks"], stats["longest"]) == (3, 1, STATIC_MIN_FRAMES)
    assert (
        stats["static_tracks"] == 1 and stats["static_track_frames"] == STATIC_MIN_FRAMES
    )  # 1 stood, 2 walked
