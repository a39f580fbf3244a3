"""Image folders: one sub-folder per class (JPEG/PNG, any size, greyscale or RGB)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from overseer.errors import InputError
from overseer.trackbed.data.schema import CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def scan_image_folder(root: str | os.PathLike, classes: tuple[str, ...] = CLASSES) -> list[tuple[Path, int]]:
    """(image path, label) for every image under ``root/<CLASS>/``, sorted for reproducibility.

    Class folder names match ``classes`` case-insensitively. An unknown class folder, an empty
    folder or a folder with fewer than two classes is an ``InputError``.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError("image folder not found (expected one sub-folder per class)", path=base)
    lookup = {name.upper(): i for i, name in enumerate(classes)}
    items: list[tuple[Path, int]] = []
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name.upper() not in lookup:
            raise InputError(f"unknown class folder {sub.name!r}; expected one of {list(classes)}", path=sub)
        label = lookup[sub.name.upper()]
        # hidden files (macOS "._x.jpg" resource forks, editor droppings) are not images
        files = sorted(
            p
            for p in sub.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        items.extend((path, label) for path in files)
    if not items:
        raise InputError(f"no JPEG/PNG images in class sub-folders {list(classes)}", path=base)
    present = sorted({classes[label] for _, label in items})
    if len(present) < 2:
        raise InputError(f"images of only one class ({present[0]}); a classifier needs at least two", path=base)
    return items


def _wide_grey_to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit, 32-bit or float greyscale to uint8 by scaling (16-bit: the high byte), never clipping."""
    if values.dtype.kind in "ui" and values.dtype.itemsize == 2:
        return (values.astype(np.uint16) >> 8).astype(np.uint8)
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to uint8 H×W (greyscale) or H×W×3 (RGB; alpha and palettes dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode.startswith("I") or img.mode == "F":
                array = _wide_grey_to_uint8(np.asarray(img))
            else:
                if img.mode in ("L", "1"):
                    img = img.convert("L")
                elif img.mode != "RGB":
                    img = img.convert("RGB")
                array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"unreadable image ({exc})", path=path) from None
    if array.size == 0:
        raise InputError("image has no pixels", path=path)
    return array
