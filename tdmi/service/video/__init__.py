"""Video files in and out: decoding uploads with their timestamps, writing the overlay MP4."""

from tdmi.service.video.decode import (
    DecodedFrame,
    VideoFrames,
    VideoInfo,
    VideoLimits,
    iter_frames,
    limits_of,
    probe_video,
)
from tdmi.service.video.encode import OverlayWriter, overlay_codec

__all__ = [
    "DecodedFrame",
    "OverlayWriter",
    "VideoFrames",
    "VideoInfo",
    "VideoLimits",
    "iter_frames",
    "limits_of",
    "overlay_codec",
    "probe_video",
]
