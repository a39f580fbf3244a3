"""Image folders as cameras and phones write them (issue 16): EXIF orientation, colour modes,
16-bit and very large images, odd file names, broken files and folder droppings.

Cases already in test_trackbed_data.py (RGBA/palette/greyscale/bilevel/16-bit grey PNG, text and
empty files as JPEG, truncated PNG) are not repeated here. Every file is generated in tmp_path.
"""

from __future__ import annotations

import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from overseer.errors import InputError
from overseer.trackbed.data import images
from overseer.trackbed.data.images import (
    MAX_SIDE,
    IgnoredFilesWarning,
    ImageReadWarning,
    list_images,
    read_image,
    scan_image_folder,
)
from overseer.trackbed.data.schema import CLASSES

ORIENTATION = 0x0112
# EXIF orientation -> what a viewer shows, as a numpy transform of the stored H×W×C array
SHOWN = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # 90° clockwise: a portrait phone photo
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _pixels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _blocks(height: int, width: int) -> np.ndarray:
    """Four flat colour quadrants (JPEG keeps flat areas within a few levels)."""
    out = np.zeros((height, width, 3), np.uint8)
    out[: height // 2, : width // 2] = (220, 30, 30)
    out[: height // 2, width // 2 :] = (30, 200, 30)
    out[height // 2 :, : width // 2] = (30, 30, 210)
    out[height // 2 :, width // 2 :] = (240, 240, 240)
    return out


def _jpeg(path: Path, image: Image.Image | np.ndarray, orientation: int | None = None, **kwargs) -> Path:
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    if orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        kwargs["exif"] = exif
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=kwargs.pop("quality", 95), **kwargs)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bytes(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by the channel count), which Pillow cannot write."""
    height, width = values.shape[:2]
    channels = 1 if values.ndim == 2 else values.shape[2]
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))
    path.write_bytes(_png_bytes(width, height, 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], rows))
    return path


def _reject(path: Path, match: str) -> str:
    with pytest.raises(InputError, match=match) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# --- orientation -----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", sorted(SHOWN))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    stored = _blocks(24, 40)
    plain = read_image(_jpeg(tmp_path / "plain.jpg", stored))
    rotated = read_image(_jpeg(tmp_path / "rotated.jpg", stored, orientation))
    np.testing.assert_array_equal(rotated, SHOWN[orientation](plain))  # same scan data, same pixels


def test_portrait_phone_photo_is_upright(tmp_path: Path) -> None:
    stored = _blocks(30, 40)  # landscape sensor data, phone held upright: Orientation 6
    image = read_image(_jpeg(tmp_path / "IMG_0001.JPG", stored, 6))
    assert image.shape == (40, 30, 3)
    # 90° clockwise: the stored bottom-left (blue) is now top-left, the top-left (red) top-right
    assert np.abs(image[5, 5].astype(int) - (30, 30, 210)).max() < 12
    assert np.abs(image[5, 25].astype(int) - (220, 30, 30)).max() < 12
    assert np.abs(image[35, 5].astype(int) - (240, 240, 240)).max() < 12


def test_corrupt_exif_still_reads_and_names_the_file(tmp_path: Path) -> None:
    broken_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\xff\xff"  # IFD cut short
    path = tmp_path / "odd exif.jpg"
    Image.new("RGB", (8, 6), (10, 20, 30)).save(path, "JPEG", exif=broken_exif)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(path)
    assert image.shape == (6, 8, 3)
    assert caught and all(issubclass(w.category, ImageReadWarning) for w in caught), caught
    assert str(caught[0].message).startswith(f"{path}: Corrupt EXIF data")


# --- colour modes ----------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    rgb = _blocks(32, 32)
    path = _jpeg(tmp_path / "print.jpg", Image.fromarray(rgb).convert("CMYK"))
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - rgb)[4:-4, 4:-4].max() < 10  # away from the quadrant edges


def test_alpha_is_dropped_never_composited(tmp_path: Path) -> None:
    """Fully transparent pixels keep their stored colour (not white) in every mode with alpha."""
    rgb = _pixels((6, 7, 3), 1)
    rgba = np.dstack([rgb, np.zeros((6, 7), np.uint8)])  # all transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)

    grey = _pixels((6, 7), 2)
    Image.fromarray(np.dstack([grey, np.zeros_like(grey)]), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), grey)  # greyscale stays H×W

    palette = Image.fromarray(rgb).quantize(colors=8)
    colours = np.asarray(palette.convert("RGB"))
    palette.save(tmp_path / "p_index.png", transparency=0)
    palette.save(tmp_path / "p_bytes.png", transparency=bytes([0, 64, 128] + [255] * 5))
    for name in ("p_index.png", "p_bytes.png"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "convert to RGBA" advice from Pillow either
            np.testing.assert_array_equal(read_image(tmp_path / name), colours, err_msg=name)


@pytest.mark.parametrize("channels", [2, 3, 4], ids=["grey-alpha", "rgb", "rgba"])
def test_16_bit_colour_pngs_keep_the_high_byte(tmp_path: Path, channels: int) -> None:
    wide = np.random.default_rng(channels).integers(0, 65536, (5, 9, channels)).astype(np.uint16)
    image = read_image(_png16(tmp_path / "wide.png", wide))
    high = (wide >> 8).astype(np.uint8)
    np.testing.assert_array_equal(image, high[:, :, 0] if channels == 2 else high[:, :, :3])


# --- very large images -----------------------------------------------------------------------


def test_huge_jpeg_is_downscaled_on_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    big = Image.new("RGB", (12000, 9000), (200, 30, 30))
    big.paste((30, 30, 200), (6000, 0, 12000, 9000))  # right half blue
    _jpeg(path, big, orientation=6, quality=50)
    del big
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning: 108 MP is under MAX_PIXELS
        image = read_image(path)
    assert time.perf_counter() - start < 5  # decoded at 1/8 scale, not 324 MB of pixels
    assert image.shape == (MAX_SIDE, MAX_SIDE * 3 // 4, 3)  # upright portrait, aspect kept
    assert np.abs(image[50, 300].astype(int) - (200, 30, 30)).max() < 12  # left half is now on top
    assert np.abs(image[-50, 300].astype(int) - (30, 30, 200)).max() < 12


def test_large_png_and_max_side(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (40, 12))).save(path)  # 3072×40 grey
    assert read_image(path).shape == (13, MAX_SIDE)
    assert read_image(path, max_side=512).shape == (7, 512)
    assert read_image(path, max_side=None).shape == (40, 3072)
    small = _pixels((30, 20, 3), 3)
    Image.fromarray(small).save(tmp_path / "small.png")
    np.testing.assert_array_equal(read_image(tmp_path / "small.png"), small)  # never upscaled


@pytest.mark.parametrize(
    ("width", "height", "match"),
    [
        (14000, 11000, r"14000×11000 \(154,000,000 pixels\) is over the limit of 150,000,000 pixels"),
        (20000, 10000, "over Pillow's decompression-bomb limit"),  # Pillow refuses before we look
    ],
)
def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path, width: int, height: int, match: str) -> None:
    path = tmp_path / "bomb.png"  # claims 150+ MP; the pixel data is a few bytes, never decoded
    path.write_bytes(_png_bytes(width, height, 8, 2, b"\0" * 64))
    _reject(path, "image too large: " + match)


def test_limits_can_be_lowered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(_pixels((100, 100, 3), 4)).save(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    _reject(path, r"100×100 \(10,000 pixels\) is over the limit of 5,000 pixels")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # someone's lower process-wide Pillow limit
    _reject(path, "over Pillow's decompression-bomb limit")


# --- file names ------------------------------------------------------------------------------

NAMES = {
    "BALLAST/Grün Schotter 01.jpg": 1,
    "BALLAST/Schotter (2).JPEG": 1,
    "GRAS/Straße mit Gras.png": 2,
    "GRAS/日本 草.PNG": 2,
    "GRAS/Gru\u0308n.jpg": 2,  # NFD, as macOS writes it: stored as the file system has it
}


def test_non_ascii_names_reach_the_tfrecord_as_utf8(tmp_path: Path) -> None:
    from overseer.trackbed.data.ingest import ingest_trackbed
    from overseer.trackbed.data.schema import decode_fields
    from overseer.trackbed.data.tfrecord import iter_raw_records, read_provenance

    root = tmp_path / "Fotos März"
    for i, rel in enumerate(NAMES):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_pixels((8, 8, 3), i)).save(path, "PNG" if rel.lower().endswith(".png") else "JPEG")
    assert [p.relative_to(root).as_posix() for p, _ in scan_image_folder(root)] == sorted(NAMES)

    out = tmp_path / "out"
    ingest_trackbed({"source": str(root), "eval_fraction": 0.4, "shard_size": 10, "seed": 0}, out)
    stored = {}
    for shard in sorted(out.glob("*/*.tfrecord")):
        for _, raw in iter_raw_records(shard):
            fields = decode_fields(raw)
            stored[fields["image_filename"]] = CLASSES.index(fields["class_name"].decode())
    assert stored == {name.encode("utf-8"): label for name, label in NAMES.items()}
    table = read_provenance(out / "provenance.csv")
    assert sorted(table["image_filename"]) == sorted(NAMES)
    assert all(Path(row.source).is_file() for row in table.itertuples())


def test_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "GRAS").mkdir(parents=True)
    Image.fromarray(_pixels((4, 4), 0)).save(root / "GRAS" / "ok.png")
    latin1 = root / "STONE" / os.fsdecode(b"Gr\xfcn.png")  # from an old Windows zip
    latin1.parent.mkdir()
    try:
        Image.fromarray(_pixels((4, 4), 1)).save(latin1, "PNG")
    except (OSError, UnicodeEncodeError):
        pytest.skip("file system does not take non-UTF-8 names")
    with pytest.raises(InputError, match="file name is not valid UTF-8") as info:
        scan_image_folder(root)
    assert "Gr\\udcfcn.png" in str(info.value)


# --- broken files ----------------------------------------------------------------------------


def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "kaputt Grün 07.jpg", _pixels((64, 64, 3), 5))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = _reject(path, "unreadable image")
    assert "expected a complete JPEG or PNG file" in message


@pytest.mark.parametrize(
    "content",
    [b"", b"%PDF-1.4 not a photo", b"\x89PNG\r\n\x1a\n" + bytes(30), b"PK\x03\x04" + bytes(100)],
    ids=["zero-bytes", "pdf", "png-signature-only", "zip"],
)
def test_broken_or_foreign_files_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "Foto 1.png"
    path.write_bytes(content)
    message = _reject(path, "unreadable image")
    assert "expected a" in message and "JPEG or PNG" in message


def test_content_decides_not_the_suffix(tmp_path: Path) -> None:
    pixels = _pixels((5, 6, 3), 6)
    Image.fromarray(pixels).save(tmp_path / "really a png.jpg", "PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "really a png.jpg"), pixels)


def test_missing_file_names_it(tmp_path: Path) -> None:
    _reject(tmp_path / "weg.jpg", "cannot read the file")


# --- what a folder from a camera or phone holds ----------------------------------------------


def _phone_folder(root: Path) -> list[str]:
    """Class folders with photos among OS droppings and other files; returns the images' paths."""
    _jpeg(root / "GRAS" / "IMG_0001.JPG", _pixels((6, 6, 3), 0))
    _jpeg(root / "GRAS" / "sub" / "IMG_0002.jpeg", _pixels((6, 6, 3), 1))
    (root / "STONE").mkdir()
    Image.fromarray(_pixels((6, 6, 3), 2)).save(root / "STONE" / "IMG_0003.png")
    junk = [
        ".DS_Store",
        "GRAS/.DS_Store",
        "GRAS/Thumbs.db",
        "STONE/desktop.ini",
        "GRAS/._IMG_0001.JPG",  # AppleDouble: not an image despite the suffix
        "GRAS/.thumbnails/IMG_0001.jpg",
        "STONE/@eaDir/IMG_0003.png/SYNOPHOTO_THUMB_M.jpg",
        "__MACOSX/GRAS/._IMG_0001.JPG",
    ]
    for rel in junk:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0\x05\x16\x07 not an image")
    (root / "GRAS" / "folder.jpg").mkdir()  # a folder with an image suffix
    for rel in ("GRAS/IMG_0004.HEIC", "STONE/clip.MOV", "readme.txt"):
        (root / rel).write_bytes(b"something else")
    return ["GRAS/IMG_0001.JPG", "GRAS/sub/IMG_0002.jpeg", "STONE/IMG_0003.png"]


def test_folder_skips_droppings_silently_and_warns_about_other_files(tmp_path: Path) -> None:
    root = tmp_path / "DCIM"
    expected = _phone_folder(root)
    with pytest.warns(IgnoredFilesWarning) as record:
        items = scan_image_folder(root)
    assert [p.relative_to(root).as_posix() for p, _ in items] == expected
    assert [label for _, label in items] == [2, 2, 3]
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{root}: ignored 3 file(s) (.heic: 1, .mov: 1, .txt: 1)")
    for name in ("GRAS/IMG_0004.HEIC", "STONE/clip.MOV", "readme.txt"):
        assert name in message
    assert "Thumbs" not in message and "DS_Store" not in message
    for path, _ in items:
        assert read_image(path).shape == (6, 6, 3)


def test_list_images_for_predict(tmp_path: Path) -> None:
    root = tmp_path / "DCIM"
    expected = _phone_folder(root)
    with pytest.warns(IgnoredFilesWarning, match="ignored 3 file"):
        found = list_images(root)
    assert [p.relative_to(root).as_posix() for p in found] == expected


def test_folder_of_only_unsupported_files_says_what_it_found(tmp_path: Path) -> None:
    root = tmp_path / "iphone"
    for cls in ("GRAS", "STONE"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / f"IMG_{i}.HEIC").write_bytes(b"ftypheic")
    with pytest.raises(
        InputError, match=r"no JPEG/PNG images in class sub-folders .*ignored 4 file\(s\) \(\.heic: 4\)"
    ):
        scan_image_folder(root)
