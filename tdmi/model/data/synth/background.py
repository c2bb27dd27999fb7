"""Textured backgrounds: a wall above the horizon, often a floor below it, and clutter.

Textures are smooth noise, gradients, stripes, blobs or tiles in random colours; floors may
carry perspective lines that meet at the horizon, so the ground the people walk on reads as a
plane. Limb-like clutter (thick strokes and discs) keeps the network from taking every coloured
bar for an arm.
"""

from __future__ import annotations

import cv2
import numpy as np

from tdmi.model.data.synth.appearance import random_colour

__all__ = ["TEXTURES", "make_background", "texture"]

TEXTURES = ("noise", "gradient", "stripes", "blobs", "tiles")


def _two_tone(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + (b - a) * t[..., None]


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multi-octave value noise in [0, 1]."""
    total = np.zeros((h, w), dtype=np.float32)
    weight = 1.0
    for cell in (64, 24, 8, 3):
        small = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
        total += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        weight *= rng.uniform(0.3, 0.7)
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def texture(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """An (h, w, 3) float32 BGR texture of one of ``TEXTURES``."""
    a, b = np.array(random_colour(rng), np.float32), np.array(random_colour(rng), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0.0, np.pi)
    along = xs * np.cos(angle) + ys * np.sin(angle)
    if kind == "noise":
        return _two_tone(_noise(rng, h, w), a, b)
    if kind == "gradient":
        t = (along - along.min()) / max(float(along.max() - along.min()), 1.0)
        return _two_tone(t, a, b)
    if kind == "stripes":
        period = rng.uniform(6.0, 40.0)
        wave = np.sin(2 * np.pi * along / period)
        t = (wave > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 + 0.5 * wave
        return _two_tone(t, a, b)
    if kind == "blobs":
        image = np.empty((h, w, 3), np.float32)
        image[:] = a
        for _ in range(int(rng.integers(5, 25))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(4, max(5, w // 5))), int(rng.integers(4, max(5, h // 5))))
            cv2.ellipse(image, centre, axes, rng.uniform(0, 180), 0, 360, random_colour(rng), -1, cv2.LINE_AA)
        return image
    if kind == "tiles":
        size = int(rng.integers(8, 40))
        jitter = rng.normal(0.0, 12.0, (h // size + 2, w // size + 2, 3)).astype(np.float32)
        image = a + jitter[(ys // size).astype(int), (xs // size).astype(int)]
        grout = ((ys % size) < 2) | ((xs % size) < 2)
        image[grout] = b
        return image
    raise ValueError(f"unknown texture {kind!r}; known: {', '.join(TEXTURES)}")


def _perspective_lines(rng: np.random.Generator, image: np.ndarray, horizon: int) -> None:
    """Floor lines: rays from the vanishing point and rungs that crowd toward the horizon."""
    h, w = image.shape[:2]
    colour = random_colour(rng)
    vx = w / 2 + rng.normal(0.0, w / 6)
    for k in range(-8, 9):
        end = (int(vx + k * w * rng.uniform(0.2, 0.3)), h)
        cv2.line(image, (int(vx), horizon), end, colour, 1, cv2.LINE_AA)
    for depth in np.geomspace(1.0, 12.0, 8):
        y = int(horizon + (h - horizon) / depth)
        cv2.line(image, (0, y), (w, y), colour, 1, cv2.LINE_AA)


def _clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """Limb-like strokes and head-like discs that are not people."""
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(1, 7))):
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        q = (p[0] + int(rng.integers(-w // 4, w // 4)), p[1] + int(rng.integers(-h // 4, h // 4)))
        thickness = int(rng.integers(2, max(3, w // 25)))
        cv2.line(image, p, q, random_colour(rng), thickness, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(image, centre, int(rng.integers(2, max(3, w // 30))), random_colour(rng), -1, cv2.LINE_AA)


def make_background(rng: np.random.Generator, width: int, height: int, horizon: float) -> np.ndarray:
    """An (height, width, 3) uint8 BGR background for one video, horizon at row ``horizon``."""
    image = texture(rng, str(rng.choice(TEXTURES)), height, width)
    floor_row = int(np.clip(horizon, 0, height))
    if rng.random() < 0.7 and floor_row < height:
        floor = texture(rng, str(rng.choice(TEXTURES)), height - floor_row, width)
        image[floor_row:] = floor
        if rng.random() < 0.4:
            _perspective_lines(rng, image, floor_row)
    if rng.random() < 0.6:
        _clutter(rng, image)
    if rng.random() < 0.3:
        sigma = rng.uniform(0.8, 2.5)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return np.clip(image, 0, 255).astype(np.uint8)
