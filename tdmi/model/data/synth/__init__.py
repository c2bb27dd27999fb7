"""Synthetic multi-person video with PoseTrack 2018 annotations, for training and testing TDMI.

Articulated 3D stick bodies (``skeleton``) walk, run, wave, jump, squat, do jumping jacks and
turn (``motion``) in front of a level pinhole camera, are painted as filled limbs, torso and
head with varied clothes (``appearance``) over textured backgrounds (``background``) among
occluders, with camera shake, motion blur, focus pulls and sensor noise (``scene``, ``render``). The files
match the official PoseTrack 2018 release, so the PoseTrack loaders and evaluator read them
unchanged (``annotations``, ``writer``); ``tdmi synth`` is the command (``cli``).

Layout under the output directory ``DIR``::

    DIR/annotations/<split>/<seq>.json   one PoseTrack 2018 file per video
    DIR/images/<split>/<seq>/000000.jpg  frames, JPEG quality 90
    DIR/videos/<split>/<seq>.mp4         the same frames, H.264 (MPEG-4 Part 2 without libx264)

``<seq>`` is ``synth_<vid_id>`` with ``vid_id = seed * 100000 + index`` in six or more digits
(seed 0: ``synth_000000``, ``synth_000001``...; seed 1: ``synth_100000``...).

Each annotation file holds:

- ``images``: ``id`` = ``frame_id`` = ``int("1" + vid_id + "%04d" % frame)``, ``file_name``
  (relative to ``DIR``), ``vid_id``, ``nframes``, ``is_labeled`` (always true), ``has_no_densepose``,
  ``width``, ``height``, empty ``ignore_regions_x``/``ignore_regions_y``, and
  ``synthetic: {"occluded", "blurred", "motion_blur_px", "defocus_px"}``: ``occluded`` when some
  person has a labelled joint hidden behind another person or an occluder (which joints: each
  person's ``occluded_joints``); ``motion_blur_px`` the longest path a labelled joint travelled
  while the shutter was open (0 without motion blur); ``defocus_px`` the sigma of the frame's
  Gaussian defocus (0 in focus); ``blurred`` when ``motion_blur_px >= render.BLUR_FLAG_PX`` (3)
  or ``defocus_px >= render.DEFOCUS_FLAG_PX`` (1). Frames neither occluded nor blurred are clean.
- ``annotations``: one per person with at least one joint inside the frame: ``id`` =
  ``image_id * 100 + track_id``, ``image_id``, ``track_id`` (stable across the video),
  ``category_id`` 1, ``keypoints`` (17 x (x, y, v) in ``tdmi.model.joints.POSETRACK_17`` order: ears
  always 0,0,0; v = 1 for every other joint inside the frame, hidden or not; 0,0,0 outside),
  ``num_keypoints``, ``bbox`` [x, y, w, h] (labelled joints' extent grown 1.3x), ``bbox_head``,
  ``scores`` [], ``iscrowd`` false and ``occluded_joints`` (indices of hidden labelled joints).
- ``categories``: the official person category (keypoint names and 1-based skeleton).
"""

from tdmi.model.data.synth.cli import add_synth_command
from tdmi.model.data.synth.writer import (
    SynthOptions,
    SynthSummary,
    VideoSummary,
    generate_dataset,
    write_video,
)

__all__ = [
    "SynthOptions",
    "SynthSummary",
    "VideoSummary",
    "add_synth_command",
    "generate_dataset",
    "write_video",
]
