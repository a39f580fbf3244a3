"""Image folders: one sub-folder per class, photos as cameras and phones write them.

What :func:`read_image` does with a file (every failure is an ``InputError`` naming the file):

- EXIF orientation is applied, so the array is upright as a viewer shows it.
- Greyscale (1-bit, L, LA, 16-bit) comes back H×W uint8 (the pipeline expands it to RGB);
  everything else (RGB, RGBA, palette with or without transparency, CMYK) H×W×3 RGB.
  Alpha and transparency are always *dropped* (the stored colour under a transparent pixel is
  kept), never composited. 16-bit samples keep their high byte.
- An image whose longer side exceeds ``max_side`` (default :data:`MAX_SIDE`) is downscaled on
  read, aspect kept (JPEG: decoded at 1/2–1/8 scale first, then Lanczos), so a batch of
  camera photos never sits in memory at full resolution.
- More than :data:`MAX_PIXELS` pixels (Pillow's decompression-bomb check) is refused.
- Empty, truncated, corrupt or non-image files are refused; the content decides, not the suffix.
  Decoder warnings (e.g. corrupt EXIF) come as :class:`ImageReadWarning` naming the file.

What :func:`list_images` / :func:`scan_image_folder` take: ``.jpg``/``.jpeg``/``.png`` in any
case, any file name (spaces, non-ASCII). Hidden files and folders and OS droppings
(``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX``, ``@eaDir``) are skipped silently;
any other file (``.HEIC``, ``.txt``, ...) is skipped with one :class:`IgnoredFilesWarning` that
lists them. A file name that is not valid UTF-8 is an ``InputError`` (it could not be stored as
``image_filename``).
"""

from __future__ import annotations

import os
import struct
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from overseer.errors import InputError
from overseer.trackbed.data.schema import CLASSES

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: longer side of an image after reading; larger images are downscaled (4.6× the 224 model input)
MAX_SIDE = 1024
#: images with more pixels are refused (150 MP: above any phone or 100 MP medium-format camera)
MAX_PIXELS = 150_000_000
#: skipped without a word: OS and photo-manager droppings (hidden names, starting with ".", too)
JUNK_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r", "__macosx", "@eadir"})

# what Pillow raises on a broken file, beyond OSError (incl. UnidentifiedImageError) and ValueError
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, KeyError, IndexError, TypeError)


class IgnoredFilesWarning(UserWarning):
    """Files in an image folder that are not JPEG/PNG images were skipped."""


class ImageReadWarning(UserWarning):
    """An image was read, but its decoder complained (e.g. corrupt EXIF data); the file is named."""


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """(images, other files) under ``folder``, recursively, sorted; junk left out of both."""
    images: list[Path] = []
    others: list[Path] = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_junk(d))
        for name in files:
            if _is_junk(name):
                continue
            path = Path(parent) / name
            if not path.is_file():  # broken link, socket, ...
                continue
            (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    for path in images:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("file name is not valid UTF-8; rename the file", path=repr(str(path))) from None
    return sorted(images), sorted(others)


def _describe(others: list[Path], base: Path) -> str:
    """'3 file(s) (.heic: 2, .txt: 1), e.g. GRAS/a.HEIC, ...' for messages."""
    kinds = Counter(p.suffix.lower() or "no suffix" for p in others)
    listed = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
    shown = ", ".join(p.relative_to(base).as_posix() for p in others[:5])
    more = ", ..." if len(others) > 5 else ""
    return f"{len(others)} file(s) ({listed}), e.g. {shown}{more}"


def _warn_ignored(others: list[Path], base: Path, where: str = "") -> None:
    if others:
        read = "/".join(IMAGE_SUFFIXES)
        message = f"{base}: ignored {_describe(others, base)}: only {read} files{where} are read"
        warnings.warn(message, IgnoredFilesWarning, stacklevel=3)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """JPEG/PNG files under ``folder`` (recursively, sorted); warns about other files it skips."""
    base = Path(folder)
    images, others = _walk(base)
    _warn_ignored(others, base)
    return images


def scan_image_folder(root: str | os.PathLike, classes: tuple[str, ...] = CLASSES) -> list[tuple[Path, int]]:
    """(image path, label) for every image under ``root/<CLASS>/``, sorted for reproducibility.

    Class folder names match ``classes`` case-insensitively. An unknown class folder, an empty
    folder or a folder with fewer than two classes is an ``InputError``; files that are not
    images, or not in a class folder, are skipped with one ``IgnoredFilesWarning``.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError("image folder not found (expected one sub-folder per class)", path=base)
    lookup = {name.upper(): i for i, name in enumerate(classes)}
    items: list[tuple[Path, int]] = []
    ignored = [p for p in base.iterdir() if p.is_file() and not _is_junk(p.name)]
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and not _is_junk(p.name)):
        if sub.name.upper() not in lookup:
            raise InputError(f"unknown class folder {sub.name!r}; expected one of {list(classes)}", path=sub)
        images, others = _walk(sub)
        items.extend((path, lookup[sub.name.upper()]) for path in images)
        ignored.extend(others)
    if not items:
        skipped = f" (ignored {_describe(sorted(ignored), base)})" if ignored else ""
        raise InputError(f"no JPEG/PNG images in class sub-folders {list(classes)}{skipped}", path=base)
    _warn_ignored(sorted(ignored), base, " in class sub-folders")
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


def _to_l_or_rgb(img: PILImage) -> PILImage:
    """Greyscale modes to L, all others to RGB; alpha and transparency dropped."""
    from PIL import Image

    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_wide_grey_to_uint8(np.asarray(img)))
    if mode in ("1", "LA", "La"):
        return img.convert("L")
    if mode in ("P", "PA"):
        img.info.pop("transparency", None)  # dropped: the palette colour is kept
        return img.convert("RGB")
    return img.convert("RGB")  # RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV, ...


def read_image(path: str | os.PathLike, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """Decode one image file to upright uint8 H×W (greyscale) or H×W×3 (RGB), longer side at
    most ``max_side`` (None: full resolution). See the module notes for what is accepted."""
    from PIL import Image

    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror})", path=path) from None
    if size == 0:
        raise InputError("unreadable image: empty file (0 bytes); expected a JPEG or PNG image", path=path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS decides
        try:
            array = decode_image(path, max_side)
        except Image.DecompressionBombError as exc:
            raise InputError(f"image too large: over Pillow's decompression-bomb limit ({exc})", path=path) from None
        except InputError:
            raise
        except DECODE_ERRORS as exc:
            raise InputError(f"unreadable image ({exc}); expected a complete JPEG or PNG file", path=path) from None
    for warning in caught:  # Pillow's "Corrupt EXIF data" and the like, with the file named
        warnings.warn(f"{path}: {warning.message}", ImageReadWarning, stacklevel=2)
    if array.size == 0:
        raise InputError("image has no pixels", path=path)
    return array


def decode_image(path: str | os.PathLike | BinaryIO, max_side: int | None) -> np.ndarray:
    """The pixels of one JPEG/PNG file or stream (uint8 H×W or H×W×3, EXIF-oriented, at most
    ``max_side`` per side), with no checks around it: Pillow's errors (:data:`DECODE_ERRORS`) pass
    through for the caller to name its own input; over :data:`MAX_PIXELS` is an InputError."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise InputError(
                f"image too large: {width}×{height} ({width * height:,} pixels) is over the limit of "
                f"{MAX_PIXELS:,} pixels; downscale it first",
                path=path,
            )
        # 16-bit grey+alpha PNGs open as RGBA: bring them back to greyscale
        grey_alpha = img.format == "PNG" and bool(img.tile) and str(img.tile[0][3]).startswith("LA")
        if max_side and img.format in ("JPEG", "MPO"):
            img.draft(img.mode, (max_side, max_side))  # DCT-domain 1/2..1/8 scaling, before decoding
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        out = img.convert("L") if grey_alpha else _to_l_or_rgb(img)
        if max_side and max(out.size) > max_side:
            out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return np.asarray(out, dtype=np.uint8)
