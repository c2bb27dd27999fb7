"""Articulated motion of one synthetic person: a schedule of actions and a ground trajectory.

A person follows a schedule of segments (walk, run, stand, wave, jump, squat, jumping jacks,
turn on the spot). Walking and running are gait cycles whose stride frequency follows from the
ground speed and step length, so feet roughly keep pace with the ground; arms swing against the
legs. Speed, heading, facing and gait phase are integrated once on a fine time grid (speed
ramps, turns are rate-limited, walkers bounce off the near and far depth limits) and then read
at any time, so motion-blur sub-frames see the same smooth motion as whole frames. Between
segments the two poses blend for ``BLEND_S`` seconds.

World frame: metres, ``x`` to the image right, ``z`` away from the camera, ground at ``y = 0``.
Yaw 0 faces the camera; yaw pi/2 faces the image right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tdmi.model.data.synth.skeleton import BodyShape, neutral_pose, pose_index

__all__ = [
    "ACTIONS",
    "BLEND_S",
    "BodyState",
    "PersonMotion",
    "Segment",
    "action_pose",
    "sample_schedule",
    "simulate",
    "stride_length",
]

ACTIONS = ("stand", "walk", "run", "wave", "jump", "squat", "jacks", "turn")
_LOCOMOTION = ("walk", "run")
BLEND_S = 0.3
GRID_HZ = 200.0
_TURN_RATE = 5.0  # rad/s: how fast a person can swing round
_SPEED_TAU = 0.25  # s: time constant of speeding up and slowing down

_I = {name: pose_index(name) for name in ("lean", "side_lean", "twist", "head_yaw", "head_pitch", "lift")}


@dataclass(frozen=True)
class Segment:
    """One action from ``start`` for ``duration`` seconds.

    ``speed`` (m/s) and ``heading`` (yaw of travel) matter to walk and run; ``facing`` is the
    yaw a standing action turns to (``turn`` swings on by ``spin`` radians); ``rate`` (Hz) paces
    cyclic actions; ``offset`` (radians) desynchronises idle sway between people;
    ``amplitude`` scales the movement; ``style`` picks a variant (which arm waves, how arms
    rest while standing).
    """

    action: str
    start: float
    duration: float
    speed: float = 0.0
    heading: float = 0.0
    facing: float = 0.0
    spin: float = 0.0
    rate: float = 1.0
    offset: float = 0.0
    amplitude: float = 1.0
    style: int = 0

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True)
class BodyState:
    """Where a person is and how they stand at one instant."""

    pose: np.ndarray
    x: float
    z: float
    yaw: float


def _smoothstep(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


def _hip_amplitude(seg: Segment) -> float:
    if seg.action == "run":
        return float(np.clip(0.4 + 0.07 * seg.speed, 0.5, 0.8))
    return float(np.clip(0.22 + 0.14 * seg.speed, 0.25, 0.5))


def stride_length(seg: Segment, shape: BodyShape) -> float:
    """Metres per gait cycle (two steps); running steps add a flight phase."""
    leg = (shape.thigh + shape.shin) * shape.height
    step = 2.0 * leg * math.sin(_hip_amplitude(seg)) * (1.4 if seg.action == "run" else 1.0)
    return 2.0 * step


def _set_sides(pose: np.ndarray, name: str, left: float, right: float) -> None:
    pose[pose_index(f"l_{name}")] = left
    pose[pose_index(f"r_{name}")] = right


def _gait_pose(seg: Segment, phase: float) -> np.ndarray:
    """Walking or running at gait ``phase``: legs in antiphase, arms against the legs."""
    pose = neutral_pose()
    run = seg.action == "run"
    amp = _hip_amplitude(seg)
    knee_swing, knee_rest = (1.5, 0.35) if run else (0.95, 0.08)
    arm_amp = (0.75 if run else 0.35 + 0.1 * seg.speed) * seg.amplitude
    elbow_rest = 1.5 if run else 0.2
    for side, offset in (("l", 0.0), ("r", math.pi)):
        ph = phase + offset
        flex = amp * math.sin(ph) + 0.05
        knee = knee_rest + knee_swing * max(0.0, math.cos(ph + math.pi / 4)) ** 2
        arm = -arm_amp * math.sin(ph)
        pose[pose_index(f"{side}_hip_flex")] = flex
        pose[pose_index(f"{side}_knee")] = knee
        pose[pose_index(f"{side}_sho_flex")] = arm
        pose[pose_index(f"{side}_sho_abd")] = 0.08 + (0.1 if run else 0.0)
        pose[pose_index(f"{side}_elbow")] = elbow_rest + 0.35 * max(0.0, arm)
    pose[_I["lean"]] = (0.2 if run else 0.05) * seg.amplitude
    pose[_I["twist"]] = (0.18 if run else 0.1) * math.sin(phase)
    pose[_I["lift"]] = 0.06 * max(0.0, math.sin(2.0 * phase)) if run else 0.0
    return pose


def _stand_pose(seg: Segment, tau: float) -> np.ndarray:
    """Idle standing: slow sway and head turns; arms hang, rest on the hips or gesture."""
    pose = neutral_pose()
    sway = math.sin(2 * math.pi * 0.4 * tau + seg.offset)
    pose[_I["side_lean"]] = 0.03 * sway
    pose[_I["head_yaw"]] = 0.5 * seg.amplitude * math.sin(2 * math.pi * 0.3 * tau + 2.0 * seg.offset)
    pose[_I["head_pitch"]] = 0.1 * math.sin(2 * math.pi * 0.2 * tau)
    _set_sides(pose, "hip_abd", 0.06, 0.06)
    _set_sides(pose, "hip_flex", 0.03 * sway, -0.03 * sway)
    if seg.style == 1:  # hands on hips
        _set_sides(pose, "sho_abd", 0.75, 0.75)
        _set_sides(pose, "elbow", 0.3, 0.3)
        _set_sides(pose, "fore_abd", -1.95, -1.95)
    elif seg.style == 2:  # talking with one hand
        _set_sides(pose, "sho_abd", 0.15, 0.15)
        _set_sides(pose, "sho_flex", 0.35 + 0.25 * math.sin(2 * math.pi * 1.1 * tau), 0.05)
        _set_sides(pose, "elbow", 1.3 + 0.3 * math.sin(2 * math.pi * 0.9 * tau), 0.15)
    else:
        _set_sides(pose, "sho_abd", 0.12 + 0.03 * sway, 0.12 - 0.03 * sway)
        _set_sides(pose, "elbow", 0.2, 0.25)
    return pose


def _wave_pose(seg: Segment, tau: float) -> np.ndarray:
    """Waving one or both hands above the shoulder; the forearm swings side to side."""
    pose = _stand_pose(Segment("stand", 0.0, 1.0, offset=seg.offset), tau)
    swing = 0.45 * seg.amplitude * math.sin(2 * math.pi * seg.rate * tau)
    arms = ("l", "r") if seg.style == 0 else (("l",) if seg.style == 1 else ("r",))
    for side in arms:
        pose[pose_index(f"{side}_sho_abd")] = 1.9
        pose[pose_index(f"{side}_sho_flex")] = 0.25
        pose[pose_index(f"{side}_elbow")] = 0.15
        pose[pose_index(f"{side}_fore_abd")] = 0.75 + (swing if side == "l" else -swing)
    return pose


_JUMP_KEYS = np.array([0.0, 0.3, 0.42, 0.72, 0.84, 1.0])  # stand, crouch, take-off, land, absorb, stand


def _jump_pose(seg: Segment, tau: float) -> np.ndarray:
    """Counter-movement jumps: crouch with arms back, extend with arms up, fly, land, recover."""
    period = 1.0 / seg.rate
    u = (tau % period) / period
    crouch = float(np.interp(u, _JUMP_KEYS, [0.0, 1.0, 0.0, 0.0, 0.7, 0.0]))
    arms_up = float(np.interp(u, _JUMP_KEYS, [0.0, -0.5, 2.6, 1.2, 0.2, 0.0]))
    pose = neutral_pose()
    _set_sides(pose, "hip_flex", 0.9 * crouch, 0.9 * crouch)
    _set_sides(pose, "knee", 1.5 * crouch, 1.5 * crouch)
    _set_sides(pose, "hip_abd", 0.08, 0.08)
    _set_sides(pose, "sho_flex", arms_up, arms_up)
    _set_sides(pose, "elbow", 0.3, 0.3)
    pose[_I["lean"]] = 0.55 * crouch
    if _JUMP_KEYS[2] < u < _JUMP_KEYS[3]:
        w = (u - _JUMP_KEYS[2]) / (_JUMP_KEYS[3] - _JUMP_KEYS[2])
        pose[_I["lift"]] = 4.0 * w * (1.0 - w) * 0.35 * seg.amplitude
    return pose


def _squat_pose(seg: Segment, tau: float) -> np.ndarray:
    """Squats with the arms reaching forward for balance."""
    depth = seg.amplitude * 0.5 * (1.0 - math.cos(2 * math.pi * seg.rate * tau))
    pose = neutral_pose()
    _set_sides(pose, "hip_flex", 1.35 * depth, 1.35 * depth)
    _set_sides(pose, "knee", 2.0 * depth, 2.0 * depth)
    _set_sides(pose, "hip_abd", 0.12 + 0.1 * depth, 0.12 + 0.1 * depth)
    _set_sides(pose, "sho_flex", 1.45 * depth, 1.45 * depth)
    _set_sides(pose, "elbow", 0.2, 0.2)
    pose[_I["lean"]] = 0.55 * depth
    pose[_I["head_pitch"]] = -0.3 * depth
    return pose


def _jacks_pose(seg: Segment, tau: float) -> np.ndarray:
    """Jumping jacks: arms sweep overhead while the legs spread, with a small hop."""
    open_ = 0.5 * (1.0 - math.cos(2 * math.pi * seg.rate * tau))
    pose = neutral_pose()
    arms = 0.15 + 2.6 * open_ * seg.amplitude
    _set_sides(pose, "sho_abd", arms, arms)
    _set_sides(pose, "fore_abd", 0.3 * open_, 0.3 * open_)
    _set_sides(pose, "hip_abd", 0.05 + 0.3 * open_, 0.05 + 0.3 * open_)
    _set_sides(pose, "knee", 0.15, 0.15)
    pose[_I["lift"]] = 0.05 * abs(math.sin(2 * math.pi * seg.rate * tau))
    return pose


def _turn_pose(seg: Segment, tau: float) -> np.ndarray:
    """Stepping round on the spot: small alternating steps while the yaw track swings."""
    pose = _stand_pose(Segment("stand", 0.0, 1.0, offset=seg.offset), tau)
    step = math.sin(2 * math.pi * 1.6 * tau)
    _set_sides(pose, "hip_flex", 0.25 * max(0.0, step), 0.25 * max(0.0, -step))
    _set_sides(pose, "knee", 0.5 * max(0.0, step), 0.5 * max(0.0, -step))
    return pose


def action_pose(seg: Segment, t: float, phase: float) -> np.ndarray:
    """The pose of ``seg`` at time ``t`` (gait ``phase`` for walk and run)."""
    tau = t - seg.start
    if seg.action in _LOCOMOTION:
        return _gait_pose(seg, phase)
    return {
        "stand": _stand_pose,
        "wave": _wave_pose,
        "jump": _jump_pose,
        "squat": _squat_pose,
        "jacks": _jacks_pose,
        "turn": _turn_pose,
    }[seg.action](seg, tau)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class PersonMotion:
    """A schedule and its integrated trajectory on a regular grid starting at ``t0``."""

    shape: BodyShape
    segments: tuple[Segment, ...]
    t0: float
    x: np.ndarray
    z: np.ndarray
    yaw: np.ndarray
    phase: np.ndarray

    def _grid(self, t: float) -> tuple[int, float]:
        pos = (t - self.t0) * GRID_HZ
        i = int(min(max(math.floor(pos), 0), len(self.x) - 2))
        return i, min(max(pos - i, 0.0), 1.0)

    def shifted(self, dx: float) -> PersonMotion:
        """The same motion moved ``dx`` metres sideways."""
        return PersonMotion(self.shape, self.segments, self.t0, self.x + dx, self.z, self.yaw, self.phase)

    def state(self, t: float) -> BodyState:
        i, w = self._grid(t)
        lerp = lambda a: float(a[i] * (1.0 - w) + a[i + 1] * w)  # noqa: E731
        phase = lerp(self.phase)
        k = max(0, int(np.searchsorted([s.start for s in self.segments], t, side="right")) - 1)
        seg = self.segments[k]
        pose = action_pose(seg, t, phase)
        if k > 0 and t - seg.start < BLEND_S:
            before = action_pose(self.segments[k - 1], t, phase)
            pose = before + (pose - before) * _smoothstep((t - seg.start) / BLEND_S)
        return BodyState(pose=pose, x=lerp(self.x), z=lerp(self.z), yaw=lerp(self.yaw))


def _yaw_target(seg: Segment, t: float, heading: float) -> float:
    if seg.action in _LOCOMOTION:
        return heading
    if seg.action == "turn":
        return seg.facing + seg.spin * _smoothstep((t - seg.start) / seg.duration)
    return seg.facing


def simulate(
    shape: BodyShape, segments: tuple[Segment, ...], z0: float, z_range: tuple[float, float]
) -> PersonMotion:
    """Integrate speed, heading, yaw and gait phase over the schedule, starting at ``x = 0``.

    Travel toward a depth limit in ``z_range`` is mirrored (front and back swap), so people
    stay within the sizes the scene allows; facing follows the mirrored heading.
    """
    t0, t1 = segments[0].start, segments[-1].end
    n = math.ceil((t1 - t0) * GRID_HZ) + 2
    dt = 1.0 / GRID_HZ
    xs, zs, yaws, phases = (np.empty(n) for _ in range(4))
    x, z, speed, phase = 0.0, z0, 0.0, 0.0
    mirror = False
    first = segments[0]
    yaw = first.heading if first.action in _LOCOMOTION else first.facing
    starts = np.array([s.start for s in segments])
    for step in range(n):
        t = t0 + step * dt
        seg = segments[max(0, int(np.searchsorted(starts, t, side="right")) - 1)]
        heading = math.pi - seg.heading if mirror else seg.heading
        speed += (seg.speed - speed) * min(1.0, dt / _SPEED_TAU)
        if seg.action in _LOCOMOTION:
            phase += 2 * math.pi * speed / stride_length(seg, shape) * dt
        vz = -speed * math.cos(heading)
        if (z + vz * dt < z_range[0] and vz < 0) or (z + vz * dt > z_range[1] and vz > 0):
            mirror = not mirror
            heading = math.pi - heading
            vz = -vz
        x += speed * math.sin(heading) * dt
        z += vz * dt
        target = _yaw_target(seg, t, heading)
        yaw += max(-_TURN_RATE * dt, min(_TURN_RATE * dt, _wrap(target - yaw)))
        xs[step], zs[step], yaws[step], phases[step] = x, z, yaw, phase
    return PersonMotion(shape, segments, t0, xs, zs, yaws, phases)


def _sample_facing(rng: np.random.Generator) -> float:
    """Mostly toward the camera, sometimes in profile, now and then turned away."""
    r = rng.random()
    if r < 0.6:
        return float(rng.normal(0.0, 0.5))
    if r < 0.88:
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(1.1, 2.0))
    return float(math.pi + rng.normal(0.0, 0.4))


def _sample_heading(rng: np.random.Generator) -> float:
    """Mostly across the frame, sometimes diagonally or straight toward or away from the camera."""
    if rng.random() < 0.75:
        return float(rng.choice([-1.0, 1.0]) * (math.pi / 2 + rng.normal(0.0, 0.35)))
    return float(rng.choice([0.0, math.pi]) + rng.normal(0.0, 0.45))


def sample_schedule(rng: np.random.Generator, start: float, end: float) -> tuple[Segment, ...]:
    """Segments of 0.7..2.6 s covering [start, end]; each person leans toward moving or acting."""
    mover = rng.random()
    weights = np.array([1.0, 5.0 * mover + 1.0, 2.0 * mover + 0.3, 0.8, 0.6, 0.6, 0.5, 0.6])
    weights /= weights.sum()
    heading = _sample_heading(rng)
    segments: list[Segment] = []
    t = start
    while t < end:
        action = str(rng.choice(ACTIONS, p=weights))
        duration = float(rng.uniform(0.7, 2.6))
        if rng.random() < 0.25:
            heading = _wrap(heading + math.pi)
        amplitude = float(rng.uniform(0.7, 1.2))
        speed = {"walk": rng.uniform(0.6, 1.9), "run": rng.uniform(2.4, 5.0)}.get(action, 0.0)
        rate = {
            "wave": rng.uniform(1.5, 3.0),
            "jump": rng.uniform(0.7, 1.2),
            "squat": rng.uniform(0.4, 0.9),
            "jacks": rng.uniform(0.8, 1.4),
        }.get(action, 1.0)
        segments.append(
            Segment(
                action=action,
                start=t,
                duration=duration,
                speed=float(speed),
                heading=heading + float(rng.normal(0.0, 0.15)),
                facing=_sample_facing(rng),
                spin=float(rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 6.3)),
                rate=float(rate),
                offset=float(rng.uniform(0.0, 2 * math.pi)),
                amplitude=amplitude,
                style=int(rng.integers(0, 3)),
            )
        )
        t += duration
    return tuple(segments)
