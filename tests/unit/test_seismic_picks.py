"""Seismic training data: pick CSVs, polygons on slices, the training table, well-log tables."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from overseer.errors import InputError
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.picks import (
    PICK_COLUMNS,
    read_picks_csv,
    read_polygons,
    read_well_logs,
    save_training_table,
    training_table,
)
from overseer.seismic.data.volumes import load_volumes, save_volumes

FACIES = ["background", "salt", "mtd"]


@pytest.fixture
def grid() -> Grid:
    """The F3 crop's geometry: inlines 111..133, crosslines 875..892, 75 samples from 4 ms every 4 ms."""
    return Grid(np.arange(111, 134), np.arange(875, 893), 4.0, 4.0, 75)


def _csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def _polygon(name: str, kind: str, value: float, vertices: list[tuple[float, float]]) -> str:
    return "".join(f"{name},{kind},{value},{x},{y}\n" for x, y in vertices)


HEADER = "polygon,slice,slice_value,x,y\n"


# ---------------------------------------------------------------------------- pick CSV
def test_picks_csv_times_become_samples(tmp_path, grid):
    path = _csv(
        tmp_path / "picks.csv",
        """
Inline, Crossline, time_ms, facies
111,875,4,salt
133,892,300,1

120,880,41.5,Background
""",
    )
    picks = read_picks_csv(path, grid, FACIES)
    assert list(picks.columns) == list(PICK_COLUMNS)
    assert picks["sample"].tolist() == [0, 74, 9]  # (t - 4 ms) / 4 ms, 41.5 ms → nearest sample 9
    assert picks["il_idx"].tolist() == [0, 22, 9] and picks["xl_idx"].tolist() == [0, 17, 5]
    assert picks["facies"].tolist() == [1, 1, 0] and picks["facies"].dtype == np.int32


def test_picks_csv_sample_column_and_aliases(tmp_path, grid):
    path = _csv(tmp_path / "picks.csv", "iline,xline,sample,facies\n112,876,3,2\n")
    picks = read_picks_csv(path, grid, {0: "background", 2: "mtd"})
    assert picks.iloc[0][["inline", "crossline", "sample", "s_idx", "facies"]].tolist() == [112, 876, 3, 3, 2]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("111,875,0,salt\n111,999,0,salt\n", r"picks\.csv, record line 3: crossline 999 is outside the grid"),
        ("111,875,0,salt\n111,875,80,salt\n", r"picks\.csv, record line 3: sample 80 is outside the grid"),
        ("111,875,0,salt\n111,875,1,chalk\n", r"picks\.csv, record line 3: unknown facies 'chalk'; .*0=background"),
        ("111,875,0,salt\n111,875,1,7\n", r"picks\.csv, record line 3: unknown facies '7'"),
        ("111,875,0,salt\n111,x75,1,salt\n", r"picks\.csv, record line 3: column 'crossline': 'x75' is not a"),
        ("111,875,0,salt\n111,,1,salt\n", r"picks\.csv, record line 3: column 'crossline': missing value"),
    ],
)
def test_picks_csv_errors_name_the_line(tmp_path, grid, body, message):
    path = _csv(tmp_path / "picks.csv", "inline,crossline,sample,facies\n" + body)
    with pytest.raises(InputError, match=message):
        read_picks_csv(path, grid, FACIES)


def test_picks_csv_missing_columns(tmp_path, grid):
    path = _csv(tmp_path / "picks.csv", "inline,crossline,facies\n111,875,salt\n")
    with pytest.raises(InputError, match=r"picks\.csv: missing columns \['sample or time_ms'\]"):
        read_picks_csv(path, grid, FACIES)


def test_duplicate_picks(tmp_path, grid, caplog):
    same = _csv(tmp_path / "same.csv", "inline,crossline,sample,facies\n111,875,0,salt\n112,875,0,mtd\n111,875,0,1\n")
    with caplog.at_level(logging.WARNING):
        picks = read_picks_csv(same, grid, FACIES)
    assert len(picks) == 2 and "dropped 1 duplicate picks" in caplog.text
    clash = _csv(
        tmp_path / "clash.csv", "inline,crossline,sample,facies\n111,875,0,salt\n112,875,0,mtd\n111,875,0,mtd\n"
    )
    with pytest.raises(InputError, match=r"picked as facies 1 \(line 2\) and facies 2 \(line 4\)"):
        read_picks_csv(clash, grid, FACIES)


# ---------------------------------------------------------------------------- polygons
def test_polygons_rasterise_hand_checked_rectangles(tmp_path, grid):
    folder = tmp_path / "polygons"
    folder.mkdir()
    # inline 120, crosslines 878..882 (5) × 40..60 ms (samples 9..14, 6): 30 voxels
    inline_rect = _polygon("a", "inline", 120, [(878, 40), (882, 40), (882, 60), (878, 60)])
    # time slice at 100 ms (sample 24), inlines 112..115 (4) × crosslines 880..881 (2): 8 voxels
    time_rect = _polygon("b", "time", 100, [(112, 880), (115, 880), (115, 881), (112, 881)])
    # a second inline-120 polygon overlapping the first on crossline 882: adds 883 × 40..60 ms only
    overlap = _polygon("c", "inline", 120, [(882, 40), (883, 40), (883, 60), (882, 60)])
    _csv(folder / "salt.csv", HEADER + inline_rect + time_rect + overlap)
    # crossline 890, a right triangle with legs of 2 inlines and 2 samples: 3 + 2 + 1 voxels
    _csv(folder / "polygon_mtd.csv", HEADER + _polygon("1", "crossline", 890, [(111, 4), (113, 4), (111, 12)]))
    picks = read_polygons(folder, grid, FACIES)
    salt = picks[picks["facies"] == 1]
    assert len(salt) == 30 + 8 + 6
    on_inline = salt[salt["inline"] == 120]
    assert set(on_inline["crossline"]) == set(range(878, 884)) and set(on_inline["sample"]) == set(range(9, 15))
    on_time = salt[salt["sample"] == 24]
    assert len(on_time) == 8 and set(on_time["inline"]) == {112, 113, 114, 115}
    mtd = picks[picks["facies"] == 2]
    assert sorted(zip(mtd["inline"], mtd["sample"], strict=True)) == [
        (111, 0),
        (111, 1),
        (111, 2),
        (112, 0),
        (112, 1),
        (113, 0),
    ]
    assert (mtd["crossline"] == 890).all()
    assert not picks.duplicated(subset=["il_idx", "xl_idx", "s_idx"]).any()


def test_polygon_errors(tmp_path, grid):
    outside = _csv(tmp_path / "salt.csv", HEADER + _polygon("a", "inline", 120, [(878, 40), (900, 40), (878, 60)]))
    with pytest.raises(InputError, match=r"salt\.csv, record line 3: polygon 'a' vertex crossline 900 is outside"):
        read_polygons(outside, grid, FACIES)
    wrong_slice = _csv(tmp_path / "salt.csv", HEADER + _polygon("a", "inline", 140, [(878, 40), (880, 40), (878, 60)]))
    with pytest.raises(InputError, match=r"salt\.csv, record line 2: inline 140 is outside the grid"):
        read_polygons(wrong_slice, grid, FACIES)
    unknown = _csv(tmp_path / "chalk.csv", HEADER + _polygon("a", "inline", 120, [(878, 40), (880, 40), (878, 60)]))
    with pytest.raises(InputError, match=r"chalk\.csv: polygon file names facies 'chalk'"):
        read_polygons(unknown, grid, FACIES)


def test_polygons_of_two_facies_overlapping(tmp_path, grid):
    rect = [(878, 40), (882, 40), (882, 60), (878, 60)]
    a = _csv(tmp_path / "salt.csv", HEADER + _polygon("a", "inline", 120, rect))
    b = _csv(tmp_path / "mtd.csv", HEADER + _polygon("a", "inline", 120, rect))
    with pytest.raises(InputError, match=r"\(polygon file salt\.csv\) and facies 2 \(polygon file mtd\.csv\)"):
        read_polygons([a, b], grid, FACIES)


# ---------------------------------------------------------------------------- training table
def test_training_table_equals_direct_indexing(tmp_path, grid):
    rng = np.random.default_rng(0)
    save_volumes(tmp_path / "v", {"amp": rng.standard_normal(grid.shape), "env": rng.random(grid.shape)}, grid)
    volumes, _ = load_volumes(tmp_path / "v")
    n = 500
    flat = rng.choice(np.prod(grid.shape), size=n, replace=False)
    il, xl, s = np.unravel_index(flat, grid.shape)
    path = tmp_path / "picks.csv"
    pd.DataFrame(
        {"inline": grid.inlines[il], "crossline": grid.crosslines[xl], "sample": s, "facies": rng.integers(0, 3, n)}
    ).to_csv(path, index=False)
    picks = read_picks_csv(path, grid, FACIES)
    table = training_table(volumes, picks)
    assert list(table.columns) == ["inline", "crossline", "sample", "facies", "amp", "env"]
    assert table["amp"].dtype == np.float32 and table["env"].dtype == np.float32
    for name in ("amp", "env"):
        np.testing.assert_array_equal(table[name].to_numpy(), np.asarray(volumes[name])[il, xl, s])
    np.testing.assert_array_equal(table["facies"], picks["facies"])
    back = pd.read_parquet(save_training_table(table, tmp_path / "train.parquet"))
    pd.testing.assert_frame_equal(back, table)


def test_training_table_nonfinite(grid):
    volume = np.zeros(grid.shape, np.float32)
    volume[0, 0, 1] = np.nan
    picks = pd.DataFrame(
        {
            "inline": [111, 111],
            "crossline": [875, 875],
            "sample": [0, 1],
            "il_idx": [0, 0],
            "xl_idx": [0, 0],
            "s_idx": [0, 1],
            "facies": [0, 1],
        }
    )
    with pytest.raises(InputError, match=r"attribute 'amp' is not finite at 1 picked voxels.*sample 1"):
        training_table({"amp": volume}, picks)
    table = training_table({"amp": volume}, picks, nonfinite="drop")
    assert table["sample"].tolist() == [0]


# ---------------------------------------------------------------------------- well logs
WELLS = """
well,depth,GR,RHOB,facies
A,1000.0,45.5,2.31,1
A,1000.5,,2.30,1
A,1001.0,50.0,-999.25,2
B,2000.0,80.0,2.45,0
"""


def test_well_logs_missing_values(tmp_path, caplog):
    path = _csv(tmp_path / "wells.csv", WELLS)
    with pytest.raises(InputError, match=r"wells\.csv, record line 3: missing value in column 'GR'"):
        read_well_logs(path)
    with caplog.at_level(logging.WARNING):
        table = read_well_logs(path, missing="drop")
    assert "dropped 2 of 4 rows" in caplog.text
    assert list(table.columns) == ["well", "depth", "facies", "GR", "RHOB"]
    assert table["well"].tolist() == ["A", "B"] and table["depth"].tolist() == [1000.0, 2000.0]
    assert table["GR"].dtype == np.float32 and table["GR"].tolist() == [45.5, 80.0]
    assert table["facies"].tolist() == [1, 0]


def test_well_log_errors(tmp_path):
    bad = _csv(tmp_path / "bad.csv", "well,depth,gr,facies\nA,1000,4o,1\n")
    with pytest.raises(InputError, match=r"bad\.csv, record line 2: column 'gr': '4o' is not a finite number"):
        read_well_logs(bad, missing="drop")  # a typo is not a missing value
    repeated = _csv(tmp_path / "rep.csv", "well,depth,gr,facies\nA,1000,40,1\nB,1000,40,1\nA,1000,41,1\n")
    with pytest.raises(InputError, match=r"rep\.csv, record line 4: well 'A' has depth 1000 twice \(line 2\)"):
        read_well_logs(repeated)
    named = _csv(tmp_path / "named.csv", "well,depth,gr,lith\nA,1000,40,salt\nA,1001,41,shale\n")
    with pytest.raises(InputError, match=r"named\.csv, record line 3: unknown facies 'shale'"):
        read_well_logs(named, facies_col="lith", facies_names=FACIES)
    with pytest.raises(InputError, match=r"missing columns \['facies'\]"):
        read_well_logs(named)
