"""Video files in and out: decoding uploads with their timestamps, writing the overlay MP4."""

from tdmi.service.video.decode import DecodedFrame, VideoInfo, iter_frames, probe_video
from tdmi.service.video.encode import OverlayWriter, overlay_codec

__all__ = ["DecodedFrame", "OverlayWriter", "VideoInfo", "iter_frames", "overlay_codec", "probe_video"]
