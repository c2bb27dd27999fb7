"""A 3D stick body in the PoseTrack-17 layout: proportions, a pose vector and forward kinematics.

Bodies live in metres in their own frame: ``+x`` is the person's left, ``+y`` up, ``+z`` the way
they face, the ground at ``y = 0``. A pose is a flat vector of joint angles (``POSE_FIELDS``), so
that poses of two actions blend by plain interpolation. Proportions follow the usual
anthropometric fractions of body height (legs ~0.48, torso ~0.29, head ~0.13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "HEAD_CENTER",
    "L_EYE",
    "L_HAND",
    "L_TOE",
    "NECK",
    "NUM_POINTS",
    "POSE_FIELDS",
    "R_EYE",
    "R_HAND",
    "R_TOE",
    "TORSO_OUTLINE",
    "BodyShape",
    "body_points",
    "neutral_pose",
    "pose_index",
    "sample_body_shape",
]

# Indices 0..16 are the POSETRACK_17 joints (tdmi/model/joints.py); drawing also needs these points.
HEAD_CENTER, L_HAND, R_HAND, L_TOE, R_TOE, NECK, L_EYE, R_EYE = 17, 18, 19, 20, 21, 22, 23, 24
# front and back of chest and belly: the torso's outline stays solid when seen from the side
TORSO_OUTLINE = (5, 6, 11, 12, 25, 26, 27, 28)
NUM_POINTS = 29

# Angles in radians; "lift" in metres. l_/r_ are the person's own left and right.
POSE_FIELDS = (
    "l_hip_flex", "r_hip_flex", "l_hip_abd", "r_hip_abd", "l_knee", "r_knee",
    "l_sho_flex", "r_sho_flex", "l_sho_abd", "r_sho_abd", "l_elbow", "r_elbow",
    "l_fore_abd", "r_fore_abd", "lean", "side_lean", "twist", "head_yaw", "head_pitch", "lift",
)  # fmt: skip
_INDEX = {name: i for i, name in enumerate(POSE_FIELDS)}


def pose_index(name: str) -> int:
    """Position of a named angle in the pose vector."""
    return _INDEX[name]


def neutral_pose() -> np.ndarray:
    """Standing straight, arms hanging: every angle zero."""
    return np.zeros(len(POSE_FIELDS), dtype=np.float64)


@dataclass(frozen=True)
class BodyShape:
    """Size and proportions of one person; lengths are fractions of ``height`` (metres)."""

    height: float
    shoulder_half: float = 0.12
    hip_half: float = 0.085
    upper_arm: float = 0.175
    forearm: float = 0.155
    thigh: float = 0.245
    shin: float = 0.235
    torso: float = 0.29
    neck: float = 0.045
    head_radius: float = 0.064
    ankle_height: float = 0.04
    build: float = 1.0  # limb and torso thickness multiplier

    @property
    def hip_height(self) -> float:
        return (self.ankle_height + self.thigh + self.shin) * self.height


def sample_body_shape(rng: np.random.Generator) -> BodyShape:
    """Adults of varied height and build, now and then a child (bigger head, shorter legs)."""
    if rng.random() < 0.12:
        return BodyShape(
            height=float(rng.uniform(1.0, 1.35)),
            head_radius=float(rng.uniform(0.075, 0.085)),
            thigh=0.225,
            shin=0.215,
            torso=0.3,
            shoulder_half=float(rng.uniform(0.1, 0.115)),
            build=float(rng.uniform(0.8, 1.1)),
        )
    jitter = lambda base, spread: float(base * rng.uniform(1 - spread, 1 + spread))  # noqa: E731
    return BodyShape(
        height=float(rng.uniform(1.5, 1.95)),
        shoulder_half=jitter(0.12, 0.12),
        hip_half=jitter(0.085, 0.12),
        upper_arm=jitter(0.175, 0.05),
        forearm=jitter(0.155, 0.05),
        thigh=jitter(0.245, 0.04),
        shin=jitter(0.235, 0.04),
        torso=jitter(0.29, 0.05),
        head_radius=jitter(0.064, 0.08),
        build=float(rng.uniform(0.75, 1.35)),
    )


def _rot_x(a: float) -> np.ndarray:
    """Rotation about the left axis; positive tips ``+y`` toward ``+z`` (bend forward)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    """Rotation about the vertical; positive turns ``+z`` (facing) toward ``+x`` (own left)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    """Rotation about the facing axis; positive tips ``+y`` toward ``+x`` (lean to own left)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def _limb_direction(flex: float, abd: float, side: float) -> np.ndarray:
    """Unit vector of a limb hanging down, raised ``abd`` sideways then swung ``flex`` forward."""
    vx, vy = side * np.sin(abd), -np.cos(abd)
    return np.array([vx, vy * np.cos(flex), -vy * np.sin(flex)])


def body_points(shape: BodyShape, pose: np.ndarray) -> np.ndarray:
    """(NUM_POINTS, 3) body-frame positions in metres; the lower ankle rests at ankle height.

    Legs hang from a pelvis turned by half the torso twist (walkers counter-rotate); the upper
    body leans, tips sideways and twists about the pelvis centre; the head turns on the neck.
    """
    p = pose
    h = shape.height
    pts = np.zeros((NUM_POINTS, 3))
    pelvis = np.array([0.0, shape.hip_height, 0.0])
    twist = p[_INDEX["twist"]]
    pelvis_rot = _rot_y(-0.5 * twist)
    upper_rot = _rot_y(twist) @ _rot_x(p[_INDEX["lean"]]) @ _rot_z(p[_INDEX["side_lean"]])
    for side, sign in (("l", 1.0), ("r", -1.0)):
        hip_i, knee_i, ankle_i, toe_i = (11, 13, 15, L_TOE) if side == "l" else (12, 14, 16, R_TOE)
        sho_i, elb_i, wri_i, hand_i = (5, 7, 9, L_HAND) if side == "l" else (6, 8, 10, R_HAND)
        flex, abd = p[_INDEX[f"{side}_hip_flex"]], p[_INDEX[f"{side}_hip_abd"]]
        pts[hip_i] = pelvis + pelvis_rot @ np.array([sign * shape.hip_half * h, 0.0, 0.0])
        pts[knee_i] = pts[hip_i] + pelvis_rot @ _limb_direction(flex, abd, sign) * shape.thigh * h
        shin = pelvis_rot @ _limb_direction(flex - p[_INDEX[f"{side}_knee"]], abd, sign)
        pts[ankle_i] = pts[knee_i] + shin * shape.shin * h
        pts[toe_i] = pts[ankle_i] + pelvis_rot @ np.array([0.0, -0.6 * shape.ankle_height, 0.14]) * h
        sflex, sabd = p[_INDEX[f"{side}_sho_flex"]], p[_INDEX[f"{side}_sho_abd"]]
        shoulder = np.array([sign * shape.shoulder_half * h, shape.torso * h, 0.0])
        pts[sho_i] = pelvis + upper_rot @ shoulder
        pts[elb_i] = pts[sho_i] + upper_rot @ _limb_direction(sflex, sabd, sign) * shape.upper_arm * h
        fore = upper_rot @ _limb_direction(
            sflex + p[_INDEX[f"{side}_elbow"]], sabd + p[_INDEX[f"{side}_fore_abd"]], sign
        )
        pts[wri_i] = pts[elb_i] + fore * shape.forearm * h
        pts[hand_i] = pts[wri_i] + fore * 0.055 * h
    pts[NECK] = pelvis + upper_rot @ np.array([0.0, shape.torso * h, 0.0])
    chest, belly = 0.07 * shape.build * h, 0.06 * shape.build * h
    pts[25] = pelvis + upper_rot @ np.array([0.0, 0.75 * shape.torso * h, chest])
    pts[26] = pelvis + upper_rot @ np.array([0.0, 0.75 * shape.torso * h, -chest])
    pts[27] = pelvis + pelvis_rot @ np.array([0.0, 0.15 * shape.torso * h, belly])
    pts[28] = pelvis + pelvis_rot @ np.array([0.0, 0.15 * shape.torso * h, -0.8 * belly])
    r = shape.head_radius * h
    head_rot = upper_rot @ _rot_y(p[_INDEX["head_yaw"]]) @ _rot_x(p[_INDEX["head_pitch"]])
    pts[1] = pts[NECK] + upper_rot @ np.array([0.0, shape.neck * h, 0.02 * h])  # head_bottom (chin)
    pts[HEAD_CENTER] = pts[1] + head_rot @ np.array([0.0, 0.95 * r, -0.15 * r])
    pts[0] = pts[HEAD_CENTER] + head_rot @ np.array([0.0, -0.1 * r, 0.85 * r])  # nose, on the face
    pts[2] = pts[HEAD_CENTER] + head_rot @ np.array([0.0, 0.85 * r, 0.0])  # head_top, inside the hair
    pts[L_EYE] = pts[HEAD_CENTER] + head_rot @ np.array([0.35 * r, 0.12 * r, 0.8 * r])
    pts[R_EYE] = pts[HEAD_CENTER] + head_rot @ np.array([-0.35 * r, 0.12 * r, 0.8 * r])
    pts[3] = pts[4] = pts[HEAD_CENTER]  # ears: never annotated in PoseTrack
    lowest = min(pts[15, 1], pts[16, 1])
    pts[:, 1] += shape.ankle_height * h - lowest + p[_INDEX["lift"]]
    return pts
