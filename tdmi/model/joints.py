"""Joint layouts: names, skeleton edges for drawing, and the left/right pairs for flipping."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COCO_17", "LAYOUTS", "POSETRACK_15_ORDER", "POSETRACK_17", "JointLayout", "get_layout"]

_LIMBS = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip


@dataclass(frozen=True)
class JointLayout:
    """A keypoint layout. ``evaluated`` lists the joints that carry annotations."""

    name: str
    joints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    evaluated: tuple[int, ...]

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def flip_index(self) -> list[int]:
        """Permutation that maps each joint to its mirror image (itself when unpaired)."""
        index = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return index


# Limb and torso edges shared by both layouts (indices 5..16 are the same joints in both).
_BODY_EDGES = (
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip
_BODY_PAIRS = ((5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

COCO_17 = JointLayout(
    name="coco-17",
    joints=("nose", "left_eye", "right_eye", "left_ear", "right_ear") + _LIMBS,
    skeleton=((0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)) + _BODY_EDGES,
    flip_pairs=((1, 2), (3, 4)) + _BODY_PAIRS,
    evaluated=tuple(range(17)),
)

# PoseTrack 2017/2018/21: slots 1 and 2 hold head_bottom and head_top; the ear slots are kept
# for COCO compatibility but are never annotated, so they are not evaluated.
POSETRACK_17 = JointLayout(
    name="posetrack-17",
    joints=("nose", "head_bottom", "head_top", "left_ear", "right_ear") + _LIMBS,
    skeleton=((2, 0), (0, 1), (1, 5), (1, 6)) + _BODY_EDGES,
    flip_pairs=((3, 4),) + _BODY_PAIRS,
    evaluated=(0, 1, 2) + tuple(range(5, 17)),
)

# The 15 annotated PoseTrack joints in the order of PoseTrack 2017's annotation ids, which the
# official evaluator (poseval) keeps as its joint order (it calls head_bottom "neck").
POSETRACK_15_ORDER = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "head_bottom", "nose", "head_top",
)  # fmt: skip

LAYOUTS = {layout.name: layout for layout in (COCO_17, POSETRACK_17)}


def get_layout(name: str) -> JointLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise KeyError(f"unknown joint layout {name!r}; known: {', '.join(LAYOUTS)}") from None
