"""How a synthetic person looks: skin, hair, clothes and their patterns, fixed for the whole track.

Colours are BGR (OpenCV order). A pattern is a small tile of per-channel factors that multiplies
the shaded cloth colour, so stripes and checks keep the shading of the limb underneath.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

__all__ = ["Appearance", "Colour", "random_colour", "sample_appearance"]

Colour = tuple[float, float, float]

_SKIN_LIGHT = np.array([178.0, 205.0, 240.0])
_SKIN_DARK = np.array([45.0, 62.0, 98.0])
_HAIR = ((20, 20, 25), (25, 45, 80), (40, 70, 120), (90, 160, 210), (160, 165, 170), (30, 60, 150))
_PANTS = ((120, 70, 40), (40, 40, 45), (90, 140, 170), (110, 110, 115), (60, 45, 30))


@dataclass(frozen=True)
class Appearance:
    """Colours and clothing of one person; ``shade`` darkens the far side of the body."""

    skin: Colour
    hair: Colour
    shirt: Colour
    pants: Colour
    shoes: Colour
    hat: Colour | None
    long_sleeves: bool
    long_pants: bool
    shirt_pattern: np.ndarray | None
    pants_pattern: np.ndarray | None
    shade: float
    highlight: bool
    edge: float  # colour factor of the rim round limbs and trunk: 0.3 a dark outline, 0.85 faint


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.0, 1.0)) -> Colour:
    """Any hue, with saturation and value drawn so that greys, pastels and deep colours all occur."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(0.15, 1.0))
    return (b * 255.0, g * 255.0, r * 255.0)


def _jitter(rng: np.random.Generator, colour: tuple[int, ...] | np.ndarray, spread: float) -> Colour:
    c = np.clip(np.asarray(colour, dtype=np.float64) + rng.normal(0.0, spread, 3), 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _pattern(rng: np.random.Generator, base: Colour, scale: float) -> np.ndarray:
    """A tile of colour factors: stripes, checks, dots or a denim-like weave."""
    kind = rng.choice(["hstripes", "vstripes", "checks", "dots", "weave"])
    period = max(3, round(rng.uniform(4.0, 11.0) * scale))
    second = np.array(random_colour(rng, (0.2, 1.0))) + 1.0
    ratio = (second / (np.array(base) + 1.0)).clip(0.25, 4.0).astype(np.float32)
    ys, xs = np.mgrid[0 : 2 * period, 0 : 2 * period]
    if kind == "hstripes":
        on = (ys % period) < period // 2
    elif kind == "vstripes":
        on = (xs % period) < period // 2
    elif kind == "checks":
        on = ((ys // period) + (xs // period)) % 2 == 0
    elif kind == "dots":
        c = period / 2.0
        on = ((ys % period) - c + 0.5) ** 2 + ((xs % period) - c + 0.5) ** 2 < (period / 4.0) ** 2
    else:
        factor = 1.0 + rng.normal(0.0, 0.12, (2 * period, 2 * period, 1)).astype(np.float32)
        return np.repeat(factor, 3, axis=2)
    tile = np.ones((2 * period, 2 * period, 3), dtype=np.float32)
    tile[on] = ratio
    return tile


def sample_appearance(rng: np.random.Generator, scale: float) -> Appearance:
    """A person's look; ``scale`` (image width / 320) sizes the patterns."""
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * rng.random()
    shirt = random_colour(rng)
    pants = (
        _jitter(rng, _PANTS[int(rng.integers(len(_PANTS)))], 12.0)
        if rng.random() < 0.6
        else random_colour(rng)
    )
    shoes = _jitter(rng, (30, 30, 30), 15.0) if rng.random() < 0.5 else random_colour(rng)
    return Appearance(
        skin=_jitter(rng, skin, 8.0),
        hair=_jitter(rng, _HAIR[int(rng.integers(len(_HAIR)))], 10.0),
        shirt=shirt,
        pants=pants,
        shoes=shoes,
        hat=random_colour(rng) if rng.random() < 0.15 else None,
        long_sleeves=bool(rng.random() < 0.5),
        long_pants=bool(rng.random() < 0.7),
        shirt_pattern=_pattern(rng, shirt, scale) if rng.random() < 0.4 else None,
        pants_pattern=_pattern(rng, pants, scale) if rng.random() < 0.2 else None,
        shade=float(rng.uniform(0.1, 0.35)),
        highlight=bool(rng.random() < 0.5),
        edge=float(rng.uniform(0.3, 0.85)),
    )
