"""One synthetic video drawn at random: camera, background, people, occluders, blur and noise.

The camera is a pinhole at ``elevation`` metres looking level, so a person's feet sit lower in
the image the nearer they are and the horizon is where the ground meets the far distance;
people's sizes (80..200 px tall at 240 rows) come from their depth. A handheld camera shakes by
a few pixels (a sum of sinusoids, smooth enough to blur). Occluders are boxes, poles, bushes and
sign boards standing on the same ground, some rolling across the frame. Some videos lose focus
for a while (a focus pull): a Gaussian defocus whose width in pixels rises and falls smoothly
over a run of frames, drawn after everything else so the rest of a seed's video is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tdmi.model.data.synth.appearance import Appearance, Colour, random_colour, sample_appearance
from tdmi.model.data.synth.background import make_background
from tdmi.model.data.synth.motion import PersonMotion, sample_schedule, simulate
from tdmi.model.data.synth.skeleton import body_points, sample_body_shape

__all__ = [
    "OCCLUDER_KINDS",
    "Camera",
    "Occluder",
    "Person",
    "Scene",
    "SceneSpec",
    "person_points",
    "sample_scene",
]

OCCLUDER_KINDS = ("box", "pole", "bush", "board")
MAX_OCCLUDERS = 2
_LEAD_S = 0.6  # motion starts this long before the first frame, so nobody begins mid-blend
_ROWS = 240.0  # the reference frame height for person sizes


@dataclass(frozen=True)
class SceneSpec:
    """What the caller fixes; everything else is drawn at random."""

    width: int
    height: int
    fps: float
    num_frames: int
    min_persons: int
    max_persons: int


@dataclass(frozen=True)
class Camera:
    """Level pinhole camera with a smooth handheld shake of up to ``shake_amplitude`` pixels."""

    width: int
    height: int
    focal: float
    horizon: float
    elevation: float
    shake_amplitude: float
    shake_freq: np.ndarray  # (2, 3) Hz
    shake_phase: np.ndarray  # (2, 3) rad
    shake_weight: np.ndarray  # (2, 3), rows sum to 1

    def shake(self, t: float) -> tuple[float, float]:
        waves = np.sin(2 * np.pi * self.shake_freq * t + self.shake_phase) * self.shake_weight
        dx, dy = self.shake_amplitude * waves.sum(axis=1)
        return float(dx), float(dy)

    def project(self, world: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (N, 2) pixels (x right, y down) and (N,) depths in metres."""
        dx, dy = self.shake(t)
        depth = np.maximum(world[:, 2], 0.05)
        u = self.width / 2 + self.focal * world[:, 0] / depth + dx
        v = self.horizon + self.focal * (self.elevation - world[:, 1]) / depth + dy
        return np.stack([u, v], axis=1), depth


@dataclass(frozen=True)
class Person:
    motion: PersonMotion
    look: Appearance


def person_points(person: Person, t: float) -> np.ndarray:
    """(NUM_POINTS, 3) world positions of a person's body points at time ``t``."""
    state = person.motion.state(t)
    body = body_points(person.motion.shape, state.pose)
    c, s = math.cos(state.yaw), math.sin(state.yaw)
    world = np.empty_like(body)
    world[:, 0] = state.x + c * body[:, 0] + s * body[:, 2]
    world[:, 1] = body[:, 1]
    world[:, 2] = state.z + s * body[:, 0] - c * body[:, 2]
    return world


@dataclass(frozen=True)
class Occluder:
    """A flat object facing the camera at depth ``z``: ``x`` is its centre at time 0."""

    kind: str
    x: float
    z: float
    width: float
    height: float
    speed: float
    colour: Colour
    detail: Colour

    def corners(self, t: float) -> np.ndarray:
        """(2, 3) world points: bottom-left and top-right of the front face."""
        x = self.x + self.speed * t
        return np.array([[x - self.width / 2, 0.0, self.z], [x + self.width / 2, self.height, self.z]])


@dataclass(frozen=True)
class Scene:
    """Everything needed to render and label one video."""

    spec: SceneSpec
    camera: Camera
    background: np.ndarray  # (height + 2 margin, width + 2 margin, 3) uint8
    margin: int
    persons: tuple[Person, ...]
    occluders: tuple[Occluder, ...]
    exposure: float  # shutter open time as a fraction of the frame interval; 0: no motion blur
    blur_frames: np.ndarray  # (num_frames,) bool: frames rendered with motion blur
    noise: np.ndarray | None  # (height + 16, width + 16, 3) int16 sensor-noise field, cropped per frame
    tone: np.ndarray | None  # (256,) uint8 look-up table: brightness, contrast, gamma
    light_angle: float  # where highlights on limbs come from (radians in the image plane)
    defocus_px: np.ndarray | None = None  # (num_frames,) Gaussian defocus sigma in pixels; 0: sharp


def _camera(rng: np.random.Generator, spec: SceneSpec) -> Camera:
    w, h = spec.width, spec.height
    horizon = h * rng.uniform(0.02, 0.4)
    mid_person = 140.0 * h / _ROWS
    feet = 0.8 * h * rng.uniform(0.9, 1.1)
    shaky = rng.random() < 0.4
    return Camera(
        width=w,
        height=h,
        focal=w * rng.uniform(0.8, 1.6),
        horizon=horizon,
        elevation=(feet - horizon) / mid_person * 1.7,
        shake_amplitude=rng.uniform(0.5, 4.0) * w / 320.0 if shaky else 0.0,
        shake_freq=rng.uniform(1.0, 7.0, (2, 3)),
        shake_phase=rng.uniform(0.0, 2 * np.pi, (2, 3)),
        shake_weight=rng.dirichlet(np.ones(3), 2),
    )


def _placement(
    rng: np.random.Generator, motion: PersonMotion, others: list[Person], camera: Camera, duration: float
) -> tuple[float, float]:
    """An anchor time and the image column a person's neck should have then.

    Someone who crosses a good part of the frame during the video often starts just outside
    it (walks in) or ends just outside it (walks out); others are mostly well inside, now and
    then at an edge, or at the very spot of someone already placed (so they cross or overlap).
    """
    w = camera.width
    column = lambda state: camera.focal * state.x / state.z  # noqa: E731  (relative to the centre)
    travel = column(motion.state(duration)) - column(motion.state(0.0))
    if abs(travel) > 0.2 * w and rng.random() < 0.7:
        side = -0.15 * w if travel > 0 else 1.15 * w
        return (0.0, side) if rng.random() < 0.5 else (duration, w - side)
    anchor = float(rng.uniform(0.0, duration))
    if others and rng.random() < 0.35:
        other = others[int(rng.integers(len(others)))].motion.state(anchor)
        return anchor, w / 2 + column(other) + rng.normal(0.0, 0.05 * w)
    return anchor, (rng.uniform(0.1, 0.9) if rng.random() < 0.8 else rng.uniform(-0.05, 1.05)) * w


def _persons(rng: np.random.Generator, spec: SceneSpec, camera: Camera) -> tuple[Person, ...]:
    """People of 80..200 px (at 240 rows) placed by ``_placement``."""
    scale = spec.height / _ROWS
    duration = spec.num_frames / spec.fps
    count = int(rng.integers(spec.min_persons, spec.max_persons + 1))
    persons: list[Person] = []
    for _ in range(count):
        shape = sample_body_shape(rng)
        px_height = rng.uniform(80.0, 200.0) * scale
        near, far = (camera.focal * shape.height / (px * scale) for px in (215.0, 72.0))
        z0 = camera.focal * shape.height / px_height
        segments = sample_schedule(rng, -_LEAD_S, duration + _LEAD_S)
        motion = simulate(shape, segments, z0, (near, far))
        anchor, target = _placement(rng, motion, persons, camera, duration)
        state = motion.state(anchor)
        dx = (target - camera.width / 2) * state.z / camera.focal - state.x
        persons.append(Person(motion.shifted(dx), sample_appearance(rng, spec.width / 320.0)))
    return tuple(persons)


def _occluders(rng: np.random.Generator, spec: SceneSpec, camera: Camera) -> tuple[Occluder, ...]:
    if rng.random() < 0.55:
        return ()
    duration = spec.num_frames / spec.fps
    result = []
    for _ in range(int(rng.integers(1, MAX_OCCLUDERS + 1))):
        kind = str(rng.choice(OCCLUDER_KINDS))
        z = camera.focal * 1.7 / (rng.uniform(70.0, 210.0) * spec.height / _ROWS)
        width, height = {
            "box": (rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)),
            "pole": (rng.uniform(0.06, 0.25), rng.uniform(2.5, 6.0)),
            "bush": (rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.0)),
            "board": (rng.uniform(0.4, 0.9), rng.uniform(1.1, 1.8)),
        }[kind]
        speed = (
            rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 3.0) if kind == "box" and rng.random() < 0.4 else 0.0
        )
        half_view = spec.width / 2 * z / camera.focal
        x = rng.uniform(-half_view, half_view) - speed * duration / 2
        result.append(
            Occluder(kind, float(x), float(z), float(width), float(height), float(speed), *_two_colours(rng))
        )
    return tuple(result)


def _two_colours(rng: np.random.Generator) -> tuple[Colour, Colour]:
    return random_colour(rng), random_colour(rng)


def _tone(rng: np.random.Generator) -> np.ndarray | None:
    if rng.random() < 0.5:
        return None
    levels = np.arange(256, dtype=np.float64) / 255.0
    curve = levels ** rng.uniform(0.7, 1.4) * rng.uniform(0.75, 1.2) + rng.uniform(-0.08, 0.08)
    return np.clip(curve * 255.0, 0, 255).astype(np.uint8)


def sample_scene(rng: np.random.Generator, spec: SceneSpec) -> Scene:
    """Draw one video's camera, background, people, occluders, blur and noise from ``rng``."""
    camera = _camera(rng, spec)
    margin = math.ceil(camera.shake_amplitude) + 1
    background = make_background(
        rng, spec.width + 2 * margin, spec.height + 2 * margin, camera.horizon + margin
    )
    persons = _persons(rng, spec, camera)
    occluders = _occluders(rng, spec, camera)
    mode = rng.random()
    exposure = 0.0 if mode < 0.5 else float(rng.uniform(0.4, 1.0))
    share = 1.0 if mode > 0.85 else rng.uniform(0.2, 0.7)
    blur_frames = (rng.random(spec.num_frames) < share) & (exposure > 0)
    noise = None
    if rng.random() < 0.5:
        sigma = rng.uniform(2.0, 7.0)
        field = rng.normal(0.0, sigma, (spec.height + 16, spec.width + 16, 3))
        noise = np.round(field).astype(np.int16)
    tone = _tone(rng)
    light_angle = float(rng.uniform(0.0, 2 * np.pi))
    return Scene(
        spec, camera, background, margin, persons, occluders, exposure, blur_frames, noise, tone,
        light_angle=light_angle, defocus_px=_defocus(rng, spec.num_frames),
    )  # fmt: skip


DEFOCUS_VIDEO_SHARE = 0.4  # videos with focus pulls
DEFOCUS_MAX_PX = (1.5, 4.0)  # range of a focus pull's peak sigma, pixels


def _defocus(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """Per-frame defocus sigma: 0, or one or two focus pulls (a raised-cosine bump of 3-12 frames)."""
    sigma = np.zeros(num_frames)
    if rng.random() >= DEFOCUS_VIDEO_SHARE:
        return sigma
    for _ in range(int(rng.integers(1, 3))):
        length = int(rng.integers(3, 13))
        start = int(rng.integers(-length // 2, max(num_frames - length // 2, 1)))
        peak = rng.uniform(*DEFOCUS_MAX_PX)
        bump = peak * np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 2
        frames = np.arange(start, start + length)
        inside = (frames >= 0) & (frames < num_frames)
        sigma[frames[inside]] = np.maximum(sigma[frames[inside]], bump[inside])
    return sigma
