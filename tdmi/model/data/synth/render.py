"""Drawing a scene: figures of filled limbs, torso and head, occluders, depth order, motion blur.

Every object is painted back to front twice: in colour into the frame and as a code into an
id map (``1 + slot * 8 + material``). After painting, the id map says which object is in front
at each pixel, which is how a labelled joint is known to be hidden behind another person or
an occluder, and where cloth patterns go. Within a figure, parts are sorted by depth too, so a
far arm passes behind the torso and a near one in front. Motion blur averages ``BLUR_SUBFRAMES``
renders spread over the shutter time; its strength is the longest path a labelled joint travels
while the shutter is open (``streak_px``). Defocus is a Gaussian blur of the scene's per-frame
sigma (``defocus_px``), applied after motion blur and before sensor noise, as in a camera.
A frame counts as blurred when ``streak_px >= BLUR_FLAG_PX`` or ``defocus_px >= DEFOCUS_FLAG_PX``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from tdmi.model.data.synth.appearance import Appearance, Colour
from tdmi.model.data.synth.scene import Camera, Occluder, Person, Scene, person_points
from tdmi.model.data.synth.skeleton import (
    HEAD_CENTER,
    L_EYE,
    L_HAND,
    L_TOE,
    NECK,
    R_EYE,
    R_HAND,
    R_TOE,
    TORSO_OUTLINE,
)

__all__ = [
    "BLUR_FLAG_PX",
    "BLUR_SUBFRAMES",
    "DEFOCUS_FLAG_PX",
    "NUM_JOINTS",
    "FrameRender",
    "PersonView",
    "draw_person",
    "render_frame",
    "view_person",
]

NUM_JOINTS = 17
BLUR_SUBFRAMES = 5
BLUR_FLAG_PX = 3.0
DEFOCUS_FLAG_PX = 1.0  # Gaussian sigma: a 1 px sigma visibly softens a 2-3 px wide limb edge
SKIN, SHIRT, PANTS, SHOES, HAIR, SOLID, EDGE = range(7)  # materials (patterns go by material)
_MATERIALS = 8
_SHIFT = 4  # fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT

# (first point, second point, radius at each end as a fraction of body height, material)
_LIMBS = (
    (11, 13, 0.062, 0.047, PANTS), (13, 15, 0.045, 0.034, "shin"), (15, L_TOE, 0.03, 0.024, SHOES),
    (12, 14, 0.062, 0.047, PANTS), (14, 16, 0.045, 0.034, "shin"), (16, R_TOE, 0.03, 0.024, SHOES),
    (5, 7, 0.038, 0.031, SHIRT), (7, 9, 0.031, 0.025, "forearm"), (9, L_HAND, 0.026, 0.024, SKIN),
    (6, 8, 0.038, 0.031, SHIRT), (8, 10, 0.031, 0.025, "forearm"), (10, R_HAND, 0.026, 0.024, SKIN),
    (NECK, 1, 0.032, 0.03, SKIN),
)  # fmt: skip
_TORSO, _HEAD = len(_LIMBS), len(_LIMBS) + 1  # draw-order ties: limbs, then torso, then head
_BUSH = ((0.0, 0.1, 0.55), (-0.25, 0.0, 0.4), (0.25, -0.05, 0.42), (0.05, -0.25, 0.35))  # x, y, radius


@dataclass(frozen=True)
class PersonView:
    """A person projected at one instant: pixels and depths of all body points."""

    uv: np.ndarray  # (NUM_POINTS, 2)
    depth: np.ndarray  # (NUM_POINTS,)
    px_per_m: np.ndarray  # (NUM_POINTS,)
    height_m: float
    head_radius_m: float
    build: float


@dataclass(frozen=True)
class FrameRender:
    """One finished frame and what the annotations need from it."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    keypoints: np.ndarray  # (P, 17, 2) at the frame's instant (mid-exposure)
    in_frame: np.ndarray  # (P, 17) bool
    occluded: np.ndarray  # (P, 17) bool: hidden behind another person or an occluder
    head_boxes: np.ndarray  # (P, 4) x, y, w, h
    streak_px: float  # longest labelled-joint path while the shutter was open (0 if no blur)
    defocus_px: float = 0.0  # Gaussian defocus sigma of this frame (0: in focus)

    @property
    def blurred(self) -> bool:
        """Motion blur or defocus strong enough to count (the evaluation's blurred subset)."""
        return self.streak_px >= BLUR_FLAG_PX or self.defocus_px >= DEFOCUS_FLAG_PX


def view_person(person: Person, camera: Camera, t: float) -> PersonView:
    uv, depth = camera.project(person_points(person, t), t)
    shape = person.motion.shape
    return PersonView(
        uv, depth, camera.focal / depth, shape.height, shape.head_radius * shape.height, shape.build
    )


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * _ONE).astype(np.int32)


def _fx(v: float) -> int:
    return round(v * _ONE)


def _scaled(colour: Colour, factor: float) -> Colour:
    return (min(colour[0] * factor, 255.0), min(colour[1] * factor, 255.0), min(colour[2] * factor, 255.0))


Point = tuple[float, float]


class _Painter:
    """Paints shapes into the frame (anti-aliased) and the id map (hard edges) together.

    Points are plain float pairs: a figure is dozens of tiny shapes, where numpy's per-call
    overhead would cost more than the drawing.
    """

    def __init__(self, image: np.ndarray, ids: np.ndarray, code: int) -> None:
        self.image, self.ids, self.code = image, ids, code

    def capsule(self, p: Point, q: Point, r1: float, r2: float, colour: Colour, material: int) -> None:
        """A limb: a tapered bar with round ends."""
        dx, dy = q[0] - p[0], q[1] - p[1]
        length = math.hypot(dx, dy)
        if length > 1e-3:
            nx, ny = -dy / length, dx / length
            poly = np.array(
                [
                    [_fx(p[0] + nx * r1), _fx(p[1] + ny * r1)],
                    [_fx(q[0] + nx * r2), _fx(q[1] + ny * r2)],
                    [_fx(q[0] - nx * r2), _fx(q[1] - ny * r2)],
                    [_fx(p[0] - nx * r1), _fx(p[1] - ny * r1)],
                ],
                dtype=np.int32,
            )
            cv2.fillConvexPoly(self.image, poly, colour, cv2.LINE_AA, _SHIFT)
            cv2.fillConvexPoly(self.ids, poly, self.code + material, cv2.LINE_8, _SHIFT)
        self.disc(p, r1, colour, material)
        self.disc(q, r2, colour, material)

    def disc(self, c: Point, r: float, colour: Colour, material: int) -> None:
        centre, radius = (_fx(c[0]), _fx(c[1])), max(_fx(r), _ONE // 2)
        cv2.circle(self.image, centre, radius, colour, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(self.ids, centre, radius, self.code + material, -1, cv2.LINE_8, _SHIFT)

    def polygon(self, points: np.ndarray, colour: Colour, material: int) -> None:
        poly = _fixed(points)
        cv2.fillConvexPoly(self.image, poly, colour, cv2.LINE_AA, _SHIFT)
        cv2.fillConvexPoly(self.ids, poly, self.code + material, cv2.LINE_8, _SHIFT)


def _limb_material(material: int | str, look: Appearance) -> int:
    if material == "shin":
        return PANTS if look.long_pants else SKIN
    if material == "forearm":
        return SHIRT if look.long_sleeves else SKIN
    return int(material)


def _material_colour(look: Appearance, material: int) -> Colour:
    return {SKIN: look.skin, SHIRT: look.shirt, PANTS: look.pants, SHOES: look.shoes, HAIR: look.hair}[
        material
    ]


_ARMPIT = 0.4
_RING = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


def _torso_outline(view: PersonView, radius: float) -> np.ndarray:
    """Convex hull of the chest, belly, hips and armpits, rounded by ``radius``.

    The armpits sit 40% of the way from the shoulder joints to the neck, so arms hanging at
    the sides stay outside the trunk, as shoulder joints lie at its edge in a real body.
    """
    centres = view.uv[list(TORSO_OUTLINE)]
    centres[:2] += _ARMPIT * (view.uv[NECK] - centres[:2])
    cloud = (centres[:, None, :] + _RING[None] * radius).reshape(-1, 2).astype(np.float32)
    return cv2.convexHull(cloud).reshape(-1, 2)


def _draw_head(paint: _Painter, uv: list[list[float]], view: PersonView, look: Appearance) -> None:
    """Hair behind the face when facing the camera, over it when turned away; eyes when seen."""
    cx, cy = uv[HEAD_CENTER]
    r = view.head_radius_m * float(view.px_per_m[HEAD_CENTER])
    nx, ny = uv[0][0] - cx, uv[0][1] - cy  # toward the nose
    hair = (cx - 0.22 * nx, cy - 0.22 * ny - 0.1 * r)
    face = (cx + 0.1 * nx, cy + 0.1 * ny)
    if view.depth[0] < view.depth[HEAD_CENTER]:
        paint.disc(hair, 1.02 * r, look.hair, HAIR)
        paint.disc(face, 0.86 * r, look.skin, SKIN)
        if r >= 4.0:
            eye = _scaled(look.skin, 0.3)
            for index in (L_EYE, R_EYE):
                if view.depth[index] < view.depth[HEAD_CENTER]:
                    paint.disc((uv[index][0], uv[index][1]), max(0.6, 0.12 * r), eye, SKIN)
    else:
        paint.disc(face, 0.9 * r, look.skin, SKIN)
        paint.disc(hair, 1.0 * r, look.hair, HAIR)
    if look.hat is not None:
        centre, axes = (_fx(cx), _fx(cy - 0.35 * r)), (_fx(1.08 * r), _fx(0.75 * r))
        cv2.ellipse(paint.image, centre, axes, 0.0, 180.0, 360.0, look.hat, -1, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(paint.ids, centre, axes, 0.0, 180.0, 360.0, paint.code + HAIR, -1, cv2.LINE_8, _SHIFT)


def _apply_pattern(
    image: np.ndarray,
    ids: np.ndarray,
    code: int,
    pattern: np.ndarray,
    box: tuple[int, int, int, int],
    anchor: np.ndarray,
) -> None:
    """Multiply the cloth pixels of one material by a tile that moves with the body."""
    x0, y0, x1, y1 = box
    ys, xs = np.nonzero(ids[y0:y1, x0:x1] == code)
    if ys.size == 0:
        return
    ys += y0
    xs += x0
    th, tw = pattern.shape[:2]
    factors = pattern[(ys - int(anchor[1])) % th, (xs - int(anchor[0])) % tw]
    image[ys, xs] = np.minimum(image[ys, xs] * factors, 255.0).astype(np.uint8)


def draw_person(
    image: np.ndarray, ids: np.ndarray, slot: int, look: Appearance, view: PersonView, light: Point
) -> None:
    """Paint one figure, its parts back to front; ``light`` is a unit 2D direction for highlights."""
    paint = _Painter(image, ids, 1 + slot * _MATERIALS)
    uv = view.uv.tolist()
    depth = view.depth.tolist()
    px = (view.px_per_m * view.height_m * view.build).tolist()
    centre_depth = sum(depth[k] for k in TORSO_OUTLINE[:4]) / 4
    parts: list[tuple[float, int]] = [((depth[a] + depth[b]) / 2, k) for k, (a, b, *_) in enumerate(_LIMBS)]
    # the trunk goes a little behind its own centre, so arms level with it are drawn over it
    parts += [(centre_depth + 0.03, _TORSO), (depth[HEAD_CENTER] - 0.05, _HEAD)]
    reach = 0.15 * view.height_m
    for part_depth, part in sorted(parts, key=lambda item: (-item[0], item[1])):
        shade = 1.0 - look.shade * min(max((part_depth - centre_depth) / reach, -1.0), 1.0)
        if part == _HEAD:
            _draw_head(paint, uv, view, look)
        elif part == _TORSO:
            rounding = 0.03 * px[NECK]
            edge = _scaled(look.shirt, shade * look.edge)
            paint.polygon(_torso_outline(view, rounding + max(0.7, 0.1 * rounding)), edge, EDGE)
            paint.polygon(_torso_outline(view, rounding), _scaled(look.shirt, shade), SHIRT)
        else:
            a, b, ra, rb, kind = _LIMBS[part]
            material = _limb_material(kind, look)
            p, q, r1, r2 = (uv[a][0], uv[a][1]), (uv[b][0], uv[b][1]), ra * px[a], rb * px[b]
            colour = _scaled(_material_colour(look, material), shade)
            grow = max(0.7, 0.08 * r1)  # a darker rim: where limbs of one colour cross, they stay apart
            paint.capsule(p, q, r1 + grow, r2 + grow, _scaled(colour, look.edge), EDGE)
            paint.capsule(p, q, r1, r2, colour, material)
            if look.highlight and min(r1, r2) >= 2.0:
                lx, ly = light[0] * 0.35, light[1] * 0.35
                lit_p, lit_q = (p[0] + lx * r1, p[1] + ly * r1), (q[0] + lx * r2, q[1] + ly * r2)
                paint.capsule(lit_p, lit_q, 0.45 * r1, 0.45 * r2, _scaled(colour, 1.2), material)
    _draw_patterns(image, ids, paint.code, look, view)


def _draw_patterns(image: np.ndarray, ids: np.ndarray, code: int, look: Appearance, view: PersonView) -> None:
    if look.shirt_pattern is None and look.pants_pattern is None:
        return
    h, w = ids.shape
    pad = float(view.px_per_m.max()) * 0.2 * view.height_m
    lo = np.floor(view.uv.min(axis=0) - pad).astype(int)
    hi = np.ceil(view.uv.max(axis=0) + pad).astype(int)
    box = (max(lo[0], 0), max(lo[1], 0), min(hi[0], w), min(hi[1], h))
    if box[0] >= box[2] or box[1] >= box[3]:
        return
    anchor = (view.uv[11] + view.uv[12]) / 2
    for material, pattern in ((SHIRT, look.shirt_pattern), (PANTS, look.pants_pattern)):
        if pattern is not None:
            _apply_pattern(image, ids, code + material, pattern, box, anchor)


def _draw_occluder(
    image: np.ndarray, ids: np.ndarray, slot: int, occ: Occluder, camera: Camera, t: float
) -> None:
    """A box, pole, bush or sign board standing on the ground."""
    (x0, y1), (x1, y0) = camera.project(occ.corners(t), t)[0]
    paint = _Painter(image, ids, 1 + slot * _MATERIALS)
    w, h = x1 - x0, y1 - y0
    if occ.kind == "bush":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        for k, (fx, fy, fr) in enumerate(_BUSH):
            tone = _scaled(occ.colour, 0.8 + 0.1 * k)
            paint.disc((cx + fx * w, cy + fy * h), fr * min(w, 1.6 * h), tone, SOLID)
        return
    if occ.kind == "board":
        leg = max(1.0, 0.06 * w)
        for lx in (x0 + 0.15 * w, x1 - 0.15 * w):
            paint.polygon(
                np.array([[lx - leg, y1], [lx + leg, y1], [lx + leg, y0], [lx - leg, y0]]), occ.detail, SOLID
            )
        y1 = y0 + 0.55 * h
    rect = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    paint.polygon(rect, occ.colour, SOLID)
    if occ.kind == "pole":
        paint.polygon(
            np.array([[x0 + 0.2 * w, y0], [x0 + 0.4 * w, y0], [x0 + 0.4 * w, y1], [x0 + 0.2 * w, y1]]),
            _scaled(occ.colour, 1.3),
            SOLID,
        )
    else:
        edge = max(1, round(0.04 * min(w, h)))
        cv2.rectangle(image, (_fx(x0), _fx(y0)), (_fx(x1), _fx(y1)), occ.detail, edge, cv2.LINE_AA, _SHIFT)


def _paint(scene: Scene, t: float) -> tuple[np.ndarray, np.ndarray, list[PersonView]]:
    """The frame at instant ``t`` (no noise or tone yet), its id map and every person's view."""
    cam, m = scene.camera, scene.margin
    h, w = scene.spec.height, scene.spec.width
    dx, dy = cam.shake(t)
    ox, oy = m - round(dx), m - round(dy)
    image = scene.background[oy : oy + h, ox : ox + w].copy()
    ids = np.zeros((h, w), dtype=np.uint8)
    views = [view_person(p, cam, t) for p in scene.persons]
    items: list[tuple[float, int]] = [(float(v.depth[NECK]), k) for k, v in enumerate(views)]
    items += [(occ.z, len(views) + k) for k, occ in enumerate(scene.occluders)]
    light = (math.cos(scene.light_angle), -abs(math.sin(scene.light_angle)))
    for _, slot in sorted(items, key=lambda item: (-item[0], item[1])):
        if slot < len(views):
            draw_person(image, ids, slot, scene.persons[slot].look, views[slot], light)
        else:
            _draw_occluder(image, ids, slot, scene.occluders[slot - len(views)], cam, t)
    return image, ids, views


def _finish(scene: Scene, image: np.ndarray, index: int) -> np.ndarray:
    """Sensor noise (a shifted crop of one field per video) and the video's tone curve."""
    if scene.noise is not None:
        h, w = image.shape[:2]
        oy, ox = (index * 7) % 16, (index * 11) % 16
        image = np.clip(image.astype(np.int16) + scene.noise[oy : oy + h, ox : ox + w], 0, 255).astype(
            np.uint8
        )
    if scene.tone is not None:
        image = cv2.LUT(image, scene.tone)
    return image


def render_frame(scene: Scene, index: int) -> FrameRender:
    """Frame ``index``: painted (blurred over the shutter when the scene says so) and labelled."""
    t = index / scene.spec.fps
    image, ids, views = _paint(scene, t)
    keypoints = np.stack([v.uv[:NUM_JOINTS] for v in views]) if views else np.zeros((0, NUM_JOINTS, 2))
    h, w = ids.shape
    in_frame = (
        (keypoints[..., 0] >= 0)
        & (keypoints[..., 0] <= w - 1)
        & (keypoints[..., 1] >= 0)
        & (keypoints[..., 1] <= h - 1)
    )
    in_frame[:, 3:5] = False  # ears are never labelled in PoseTrack
    occluded = np.zeros_like(in_frame)
    for k in range(len(views)):
        cols, rows = np.round(keypoints[k, in_frame[k]]).astype(int).T
        owner = (ids[rows, cols].astype(int) - 1) // _MATERIALS
        occluded[k, in_frame[k]] = (ids[rows, cols] > 0) & (owner != k)
    streak = 0.0
    if scene.blur_frames[index]:
        half = 0.5 * scene.exposure / scene.spec.fps
        times = np.linspace(t - half, t + half, BLUR_SUBFRAMES)
        total = np.zeros(image.shape, np.float32)
        for j, sub in enumerate(times):
            total += image if j == BLUR_SUBFRAMES // 2 else _paint(scene, float(sub))[0]
        image = np.round(total / BLUR_SUBFRAMES).astype(np.uint8)
        if views:
            start = np.stack(
                [view_person(p, scene.camera, float(times[0])).uv[:NUM_JOINTS] for p in scene.persons]
            )
            end = np.stack(
                [view_person(p, scene.camera, float(times[-1])).uv[:NUM_JOINTS] for p in scene.persons]
            )
            moved = np.linalg.norm(end - start, axis=-1)[in_frame]
            streak = float(moved.max()) if moved.size else 0.0
    radius = np.array([1.05 * v.head_radius_m * v.px_per_m[HEAD_CENTER] for v in views])
    centres = np.array([v.uv[HEAD_CENTER] for v in views]).reshape(-1, 2)
    head_boxes = (
        np.concatenate([centres - radius[:, None], np.repeat(2 * radius[:, None], 2, 1)], 1)
        if views
        else np.zeros((0, 4))
    )
    defocus = 0.0 if scene.defocus_px is None else float(scene.defocus_px[index])
    if defocus > 0:
        image = cv2.GaussianBlur(image, (0, 0), defocus)
    return FrameRender(
        _finish(scene, image, index), keypoints, in_frame, occluded, head_boxes, streak, defocus
    )
