"""Image grids of the trackbed evaluation: which tiles, which images, the written PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from overseer.metrics import ClassificationReport, classification_report
from overseer.trackbed.data.schema import CLASSES, encode_example
from overseer.trackbed.data.tfrecord import write_records
from overseer.trackbed.peek import (
    MISCLASSIFIED_FILE,
    SAMPLES_FILE,
    misclassified_tiles,
    plot_tiles,
    read_images,
    sample_tiles,
    tile_title,
    write_eval_grids,
)

N = 24  # records, over two files (positions run on across files)


def _image(i: int) -> np.ndarray:
    """A small image whose first pixel is its index; odd records RGB, even greyscale."""
    image = np.full((8, 9, 3 if i % 2 else 1), 40 + 5 * i, dtype=np.uint8)
    image[0, 0, 0] = i
    return image


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("eval")
    raw = [encode_example(f"eval/{CLASSES[i % 5]}/img_{i:03d}.png", _image(i), i % 5) for i in range(N)]
    return [write_records(folder / "a.tfrecord", raw[:10]), write_records(folder / "b.tfrecord", raw[10:])]


def _report(wrong: dict[int, float] | None = None) -> ClassificationReport:
    """Truth ``i % 5``; the items in ``wrong`` predicted as the next class with the given confidence."""
    wrong = wrong or {}
    y_true = np.arange(N) % 5
    y_pred = np.array([(t + 1) % 5 if i in wrong else t for i, t in enumerate(y_true)])
    confidence = [wrong.get(i, 0.5 + i / 100) for i in range(N)]
    names = [f"eval/{CLASSES[i % 5]}/img_{i:03d}.png" for i in range(N)]
    return classification_report(y_true, y_pred, CLASSES, confidence=confidence, item_ids=names)


ERRORS = {3: 0.61, 11: 0.97, 17: 0.40, 20: 0.97, 5: 0.88}


def test_misclassified_most_confident_first_ties_in_record_order() -> None:
    tiles = misclassified_tiles(_report(ERRORS))
    assert [t.index for t in tiles] == [11, 20, 5, 3, 17]
    assert all(t.wrong for t in tiles)
    assert tiles[0].item == "eval/BALLAST/img_011.png"
    assert (tiles[0].actual, tiles[0].predicted, tiles[0].confidence) == ("BALLAST", "GRAS", 0.97)
    assert [t.index for t in misclassified_tiles(_report(ERRORS), n=2)] == [11, 20]
    assert misclassified_tiles(_report()) == []


def test_sample_is_seeded_distinct_and_in_record_order() -> None:
    report = _report(ERRORS)
    first = sample_tiles(report, n=16, seed=0)
    assert first == sample_tiles(report, n=16, seed=0)
    assert [t.index for t in first] != [t.index for t in sample_tiles(report, n=16, seed=1)]
    indices = [t.index for t in first]
    assert len(indices) == 16 and indices == sorted(set(indices))
    assert all(t.item == report.predictions["item"].iat[t.index] for t in first)
    assert [t.index for t in sample_tiles(report, n=100)] == list(range(N))  # fewer items than n: all of them


def test_read_images_returns_the_raw_images_of_the_tiles_only(records: list[Path]) -> None:
    tiles = misclassified_tiles(_report(ERRORS))
    images = read_images(records, tiles)
    assert set(images) == {3, 5, 11, 17, 20}
    for i, image in images.items():
        np.testing.assert_array_equal(image, _image(i))  # raw uint8, greyscale kept H×W×1
    assert images[20].dtype == np.uint8 and images[20].shape == (8, 9, 1)


def test_read_images_refuses_a_report_of_other_records(records: list[Path]) -> None:
    tiles = misclassified_tiles(_report(ERRORS))
    with pytest.raises(ValueError, match=r"record 11 is 'eval/BALLAST/img_011\.png'"):
        read_images(records, [t if t.index != 11 else type(t)(11, "other.png", "A", "B", 0.9) for t in tiles])
    with pytest.raises(ValueError, match=r"hold 10 images.*\[11, 17, 20\]"):
        read_images(records[:1], tiles)


def test_tile_titles_name_the_file_and_are_red_when_wrong(records: list[Path]) -> None:
    report = _report(ERRORS)
    tiles = [*sample_tiles(report, n=4, seed=0), *misclassified_tiles(report, n=2)]
    fig = plot_tiles(tiles, read_images(records, tiles), "t", with_item=True)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == len(tiles)
    for ax, tile in zip(axes, tiles, strict=True):
        assert ax.get_title() == tile_title(tile, with_item=True)
        assert (ax.title.get_color() == "tab:red") == tile.wrong
    plt.close(fig)
    long = type(tiles[0])(0, "a/very/long/folder/name/that/goes/on/img_000.png", "GRAS", "STONE", 0.123)
    assert tile_title(long, with_item=True) == "…/img_000.png\ntrue GRAS\npred STONE (0.12)"
    assert tile_title(long) == "true GRAS\npred STONE (0.12)"


def _png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        return image.size


def test_write_eval_grids_writes_both_pngs(records: list[Path], tmp_path: Path) -> None:
    paths = write_eval_grids(_report(ERRORS), records, tmp_path / "out", n=16, seed=0)
    assert [p.name for p in paths] == [SAMPLES_FILE, MISCLASSIFIED_FILE]
    samples, errors = (_png_size(p) for p in paths)
    assert samples[0] > 600 and samples[1] > 600  # a 4×4 grid of tiles
    assert errors[0] > 600 and errors[1] < samples[1]  # 5 errors: 4 columns, 2 rows
    assert all(p.stat().st_size > 10_000 for p in paths)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([SAMPLES_FILE, MISCLASSIFIED_FILE])


def test_no_misclassifications_writes_a_panel_saying_so(records: list[Path], tmp_path: Path) -> None:
    report = _report()
    fig = plot_tiles(misclassified_tiles(report), {}, "t", empty="no misclassifications")
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["no misclassifications"]
    plt.close(fig)
    paths = write_eval_grids(report, records, tmp_path, n=16, seed=0)
    assert all(p.is_file() and p.stat().st_size > 1_000 for p in paths)
