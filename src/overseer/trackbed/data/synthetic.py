"""The embedded default image set: real photographic textures from scikit-image's wheel.

Classes and their sources (no network, no user data):

- GRAS: crops of ``skimage.data.grass``; BALLAST: crops of ``skimage.data.gravel``;
  STONE: crops of ``skimage.data.brick`` (stone masonry) — real photographs, greyscale, tinted
  with a jittered colour and varied in light (gain, gamma), orientation (rotations, flips) and
  scale (crop side 128–256 px resized to 224).
- ASPHALT: generated: a dark grey base, multi-scale noise, bright aggregate speckles and
  occasional cracks.
- ERROR: what a trackbed camera gets wrong — heavy blur or over/under-exposure of a ground
  crop, and non-ground photographs (astronaut, camera, coffee, cat, rocket, coins, ...).

Train and evaluation crops never share a pixel: every source photograph is cut into quadrants,
the evaluation set draws from one quadrant and the training set from the other three; generated
images use independent random streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import data as skdata
from skimage.transform import resize

from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE

GROUND_SOURCES = {"GRAS": "grass", "BALLAST": "gravel", "STONE": "brick"}
GROUND_TINTS = {"GRAS": (0.78, 1.0, 0.55), "BALLAST": (0.95, 0.93, 0.9), "STONE": (1.0, 0.86, 0.74)}
NON_GROUND_SOURCES = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "clock", "page", "text",
    "hubble_deep_field", "immunohistochemistry", "colorwheel", "moon",
)  # fmt: skip
EVAL_QUADRANT = 3  # bottom-right quadrant of every source photograph is evaluation-only


@dataclass(frozen=True)
class SyntheticImage:
    filename: str
    image: np.ndarray  # H×W×3 uint8
    label: int


def _quadrant(image: np.ndarray, split: str, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[0] // 2, image.shape[1] // 2
    index = EVAL_QUADRANT if split == "eval" else int(rng.choice([q for q in range(4) if q != EVAL_QUADRANT]))
    r, c = divmod(index, 2)
    return image[r * h : (r + 1) * h, c * w : (c + 1) * w]


def _random_crop(region: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A square crop of side 128–256 (bounded by the region), resized to ``size``, rotated/flipped."""
    limit = min(region.shape[0], region.shape[1])
    side = int(rng.integers(min(128, limit), min(256, limit) + 1))
    top = int(rng.integers(0, region.shape[0] - side + 1))
    left = int(rng.integers(0, region.shape[1] - side + 1))
    crop = region[top : top + side, left : left + side].astype(np.float32) / 255.0
    crop = resize(crop, (size, size), anti_aliasing=side > size, preserve_range=True).astype(np.float32)
    crop = np.rot90(crop, k=int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def _light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Varied daylight: gain and gamma, values kept in [0, 1]."""
    gamma = float(rng.uniform(0.75, 1.35))
    gain = float(rng.uniform(0.75, 1.15))
    return np.clip(gain * np.power(np.clip(image, 0.0, 1.0), gamma), 0.0, 1.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _ground(cls: str, split: str, rng: np.random.Generator, size: int, sources: dict) -> np.ndarray:
    crop = _random_crop(_quadrant(sources[GROUND_SOURCES[cls]], split, rng), rng, size)
    tint = np.asarray(GROUND_TINTS[cls]) * rng.uniform(0.92, 1.08, size=3)
    return _light(_as_rgb(crop) * tint, rng)


def _asphalt(rng: np.random.Generator, size: int) -> np.ndarray:
    """Asphalt: dark grey base, noise at three scales, bright aggregate grains, sometimes a crack."""
    base = rng.uniform(0.22, 0.42)
    noise = sum(
        weight * ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
        for sigma, weight in ((0.7, 0.10), (2.0, 0.25), (8.0, 0.9))
    )
    grains = ndimage.gaussian_filter((rng.random((size, size)) < 0.012).astype(np.float32), 0.8) * 2.5
    image = base + noise + grains * rng.uniform(0.15, 0.3)
    if rng.random() < 0.4:  # a crack: a dark random walk
        rows = np.clip(np.cumsum(rng.integers(-1, 2, size)) + rng.integers(0, size), 0, size - 1)
        image[rows, np.arange(size)] *= 0.35
        image = ndimage.grey_erosion(image, size=(2, 2))
    tint = np.array([1.0, 1.0, 1.02]) * rng.uniform(0.95, 1.05, size=3)
    return _light(np.clip(image, 0, 1)[:, :, None] * tint, rng)


def _error(split: str, rng: np.random.Generator, size: int, sources: dict) -> np.ndarray:
    """A frame a classifier must reject: blurred, badly exposed, or not ground at all."""
    kind = rng.choice(["blur", "exposure", "non_ground"], p=[0.3, 0.3, 0.4])
    if kind == "non_ground":
        name = NON_GROUND_SOURCES[int(rng.integers(len(NON_GROUND_SOURCES)))]
        return _light(_as_rgb(_random_crop(_quadrant(sources[name], split, rng), rng, size)), rng)
    ground_cls = ("GRAS", "BALLAST", "STONE", "ASPHALT")[int(rng.integers(4))]
    image = _asphalt(rng, size) if ground_cls == "ASPHALT" else _ground(ground_cls, split, rng, size, sources)
    if kind == "blur":
        return ndimage.gaussian_filter(image, sigma=(rng.uniform(4, 9), rng.uniform(4, 9), 0))
    if rng.random() < 0.5:
        return np.clip(image * rng.uniform(3.0, 6.0) + 0.3, 0, 1)  # over-exposed
    return image * rng.uniform(0.04, 0.12)  # under-exposed


def _load_sources() -> dict[str, np.ndarray]:
    names = set(GROUND_SOURCES.values()) | set(NON_GROUND_SOURCES)
    sources = {}
    for name in names:
        image = getattr(skdata, name)()
        sources[name] = image if image.dtype == np.uint8 else (image * 255).astype(np.uint8)
    return sources


def generate(split: str, per_class: int, seed: int, size: int = IMAGE_SIZE) -> Iterator[SyntheticImage]:
    """``per_class`` images of every class for ``split`` ("train" or "eval"), in shuffled order."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    sources = _load_sources()
    # independent streams per split: the evaluation set never repeats a training draw
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    order = rng.permutation(np.repeat(np.arange(len(CLASSES)), per_class))
    counters = dict.fromkeys(CLASSES, 0)
    for label in order:
        cls = CLASSES[int(label)]
        if cls in GROUND_SOURCES:
            image = _ground(cls, split, rng, size, sources)
        elif cls == "ASPHALT":
            image = _asphalt(rng, size)
        else:
            image = _error(split, rng, size, sources)
        counters[cls] += 1
        yield SyntheticImage(
            f"default/{split}/{cls}/{cls.lower()}_{counters[cls]:04d}.png", _to_uint8(image), int(label)
        )
