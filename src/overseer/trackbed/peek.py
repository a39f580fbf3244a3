"""Errors a person can look at: image grids of the trackbed evaluation.

``eval_samples.png`` is a seeded sample of evaluation images (the notebook's qualitative peek) and
``misclassified.png`` the most confident misclassifications, each tile titled with true class,
predicted class and confidence (red when wrong). Tiles show the records' raw uint8 images, not the
model's input tensors. Items are matched to records by position: the report's rows are in record
order over the evaluation files (as ``evaluate.predict_tfrecords`` reads them), and each record's
``image_filename`` must agree with the row's item. Only the images of the chosen tiles are decoded
and kept, in one pass over the records.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from overseer.io import write_artifacts
from overseer.trackbed.data.schema import decode_fields, image_from_fields
from overseer.trackbed.data.tfrecord import iter_raw_records

if TYPE_CHECKING:
    from overseer.metrics import ClassificationReport

SAMPLES_FILE = "eval_samples.png"
MISCLASSIFIED_FILE = "misclassified.png"
COLUMNS = 4
TILE_INCHES = 1.6  # ~176 px a tile at write_artifact's 110 dpi: enough to judge a texture, ~0.6 MB a grid in git
NAME_CHARS = 30  # file names longer than this keep their end ("…/stone_0001.png")


@dataclass(frozen=True)
class Tile:
    """One evaluation item to show: its row in the report (= record position) and what was predicted."""

    index: int
    item: str
    actual: str
    predicted: str
    confidence: float

    @property
    def wrong(self) -> bool:
        return self.actual != self.predicted


def _tiles(report: ClassificationReport, indices: Iterable[int]) -> list[Tile]:
    rows = report.predictions
    return [
        Tile(
            index=int(i),
            item=str(rows["item"].iat[i]),
            actual=str(rows["actual"].iat[i]),
            predicted=str(rows["predicted"].iat[i]),
            confidence=float(rows["confidence"].iat[i]),
        )
        for i in indices
    ]


def sample_tiles(report: ClassificationReport, n: int = 16, seed: int = 0) -> list[Tile]:
    """``n`` items drawn without replacement (all when fewer), reproducible for a seed, in record order."""
    total = len(report.predictions)
    chosen = np.random.default_rng(seed).choice(total, size=min(n, total), replace=False)
    return _tiles(report, np.sort(chosen))


def misclassified_tiles(report: ClassificationReport, n: int = 16) -> list[Tile]:
    """The ``n`` most confident misclassifications, most confident first (ties in record order)."""
    rows = report.predictions
    wrong = np.flatnonzero(rows["actual"].to_numpy() != rows["predicted"].to_numpy())
    order = np.argsort(-rows["confidence"].to_numpy()[wrong], kind="stable")
    return _tiles(report, wrong[order][:n])


def read_images(files: Sequence[str | os.PathLike], tiles: Sequence[Tile]) -> dict[int, np.ndarray]:
    """The H×W×D uint8 image of every tile, by tile index, from one pass over ``files``.

    Records outside the tiles are not parsed. Raises ``ValueError`` when a tile's record is missing
    or names another file than the tile's item (the report is not of these records).
    """
    wanted = {t.index: t.item for t in tiles}
    images: dict[int, np.ndarray] = {}
    position = 0
    for path in files:
        if len(images) == len(wanted):
            break
        for _, raw in iter_raw_records(path):
            if position in wanted:
                fields = decode_fields(raw)
                name = (fields["image_filename"] or b"").decode("utf-8", errors="replace")
                if name != wanted[position]:
                    raise ValueError(
                        f"{os.fspath(path)}: record {position} is {name!r}, the report's item there is "
                        f"{wanted[position]!r}: the report is not of these evaluation records"
                    )
                images[position] = image_from_fields(fields).copy()
            position += 1
            if len(images) == len(wanted):
                break
    missing = sorted(set(wanted) - set(images))
    if missing:
        raise ValueError(f"the evaluation records hold {position} images; the report's items {missing} have none")
    return images


def _short(name: str, limit: int = NAME_CHARS) -> str:
    """``name``, or its last path part after ``…/``, or the end of that, to fit ``limit`` characters."""
    if len(name) <= limit:
        return name
    base = "…/" + name.replace("\\", "/").rsplit("/", 1)[-1]
    return base if len(base) <= limit else "…" + name[-(limit - 1) :]


def tile_title(tile: Tile, with_item: bool = False) -> str:
    """``[file name]`` / ``true X`` / ``pred Y (0.93)``."""
    lines = [_short(tile.item)] if with_item else []
    lines += [f"true {tile.actual}", f"pred {tile.predicted} ({tile.confidence:.2f})"]
    return "\n".join(lines)


def plot_tiles(
    tiles: Sequence[Tile], images: dict[int, np.ndarray], title: str, *, with_item: bool = False, empty: str = ""
) -> plt.Figure:
    """A grid of ``COLUMNS`` tiles a row, titles red when wrong; with no tiles, one panel saying ``empty``."""
    if not tiles:
        fig, ax = plt.subplots(figsize=(TILE_INCHES * 2, TILE_INCHES))
        ax.text(0.5, 0.5, empty or "nothing to show", ha="center", va="center", fontsize=12)
        ax.set_axis_off()
        fig.suptitle(title)
        return fig
    cols = min(COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    title_lines = 3 if with_item else 2
    fig, axes = plt.subplots(
        rows, cols, figsize=(TILE_INCHES * cols, (TILE_INCHES + 0.15 * title_lines) * rows + 0.4), squeeze=False
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, tile in zip(axes.ravel(), tiles, strict=False):
        image = images[tile.index]
        if image.shape[-1] == 1:
            ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image)
        ax.set_title(tile_title(tile, with_item), fontsize=8, color="tab:red" if tile.wrong else "black")
    fig.suptitle(title)
    return fig


def write_eval_grids(
    report: ClassificationReport,
    eval_files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    n: int = 16,
    seed: int = 0,
) -> list[Path]:
    """Write ``eval_samples.png`` (``n`` seeded samples) and ``misclassified.png`` (the ``n`` most
    confident errors) into ``out_dir``; return their paths."""
    samples, errors = sample_tiles(report, n, seed), misclassified_tiles(report, n)
    images = read_images(eval_files, [*samples, *errors])
    n_wrong = len(report.false_inferences["misclassified"])
    figures = {
        SAMPLES_FILE: plot_tiles(
            samples,
            images,
            f"Evaluation samples ({len(samples)} of {len(report.predictions)})",
            empty="no evaluation images",
        ),
        MISCLASSIFIED_FILE: plot_tiles(
            errors,
            images,
            f"Most confident misclassifications ({len(errors)} of {n_wrong})",
            with_item=True,
            empty="no misclassifications",
        ),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return list(write_artifacts(out, figures).values())
