"""Bad seismic input: every message names the user's file and the voxel or record, nothing half-written stays.

A NaN/inf in a user's attribute volume (SEG-Y or .npy) is named by the user's file, its first
non-finite voxel in the survey's inline/crossline numbers and sample time, and the count of
non-finite voxels: at ingest when a pick (or the Kuwahara filter) needs it, else by validation
(``validate.seismic.max_nonfinite_fraction`` decides). Surveys are 12×10×20 voxels.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from overseer.errors import InputError
from overseer.seismic.data import volumes as volumes_module
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.ingest import ingest_seismic
from overseer.seismic.data.segy import write_segy
from overseer.seismic.data.volumes import describe_voxel, nonfinite_report
from overseer.validation.core import ValidationFailed, validate_and_report
from overseer.validation.seismic import validate_seismic

SHAPE = (12, 10, 20)
GRID = Grid.regular(SHAPE, inline_start=500, crossline_start=20, sample_start_ms=100.0, sample_interval_ms=4.0)
BASE = {
    "source": "volumes",
    "amplitude": None,
    "iline_byte": 189,
    "xline_byte": 193,
    "facies": ["shale", "sand"],
    "well_logs": None,
    "missing_logs": "error",
    "kuwahara": {"enabled": False, "radius": 1},
    "holdout": {"block_size": 4, "fraction": 0.25, "seed": 0},
}
# picks: every inline, crosslines 0, 3, 6, 9, samples 2, 6, ..., 18 (0-based)
PICKED = np.meshgrid(np.arange(12), np.arange(0, 10, 3), np.arange(2, 20, 4), indexing="ij")


def _volume(seed: int) -> np.ndarray:
    facies = (np.arange(SHAPE[2]) >= 10).astype(np.float32)
    return (np.random.default_rng(seed).normal(size=SHAPE) + 3.0 * seed * facies).astype(np.float32)


def _write(path: Path, data: np.ndarray) -> str:
    if path.suffix == ".npy":
        np.save(path, data)
    else:
        write_segy(data, GRID, path)
    return str(path)


def _survey(folder: Path, kind: str, bad: dict | None = None) -> dict:
    """Two attributes ("informative", "noise") as ``kind`` files and a picks CSV; ``bad`` sets voxels
    (0-based index → value) of "noise"."""
    folder.mkdir(parents=True, exist_ok=True)
    volumes = {}
    for seed, name in enumerate(("noise", "informative")):
        data = _volume(seed)
        if name == "noise":
            for index, value in (bad or {}).items():
                data[index] = value
        volumes[name] = _write(folder / f"{name}.{kind}", data)
    il, xl, s = (a.ravel() for a in PICKED)
    grid = GRID if kind == "sgy" else Grid.regular(SHAPE)
    picks = pd.DataFrame(
        {"inline": grid.inlines[il], "crossline": grid.crosslines[xl], "sample": s, "facies": (s >= 10).astype(int)}
    )
    picks.to_csv(folder / "picks.csv", index=False)
    return {**BASE, "volumes": volumes, "picks": str(folder / "picks.csv")}


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _reject(tmp_path: Path, cfg: dict) -> InputError:
    """Ingest ``cfg`` into ``tmp_path/parent/out``: it must raise and leave the parent empty."""
    parent = tmp_path / "parent"
    parent.mkdir()
    with pytest.raises(InputError) as info:
        ingest_seismic(cfg, parent / "out")
    assert _entries(parent) == [], "neither the output nor a temporary folder"
    return info.value


def _validate(prepared: Path, report_dir: Path, allowed: float = 0.0) -> str:
    with pytest.raises(ValidationFailed) as info:
        validate_and_report(validate_seismic(prepared, 5, allowed), report_dir)
    assert _entries(report_dir) == ["validation.json", "validation.md"]
    return str(info.value)


# --- non-finite voxels ------------------------------------------------------------------------------

OFF_PICKS = {(3, 1, 5): np.nan, (4, 2, 6): np.inf, (7, 4, 0): -np.inf}  # no pick at crossline 1, 2 or 4


def test_nonfinite_segy_named_by_file_voxel_time_and_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _survey(tmp_path / "raw", "sgy", OFF_PICKS)
    source = cfg["volumes"]["noise"]
    voxel = "inline 503, crossline 21, sample 5 at 120 ms"
    with caplog.at_level(logging.WARNING, logger="overseer.seismic.data.volumes"):
        ingest_seismic(cfg, tmp_path / "prepared")  # allowed up to validate's max_nonfinite_fraction
    assert f"{source}: 3 non-finite voxels of 2400 (NaN 1, +inf 1, -inf 1), the first at {voxel}" in caplog.text

    message = _validate(tmp_path / "prepared", tmp_path / "report")
    stored = tmp_path / "prepared" / "volumes" / "noise.npy"
    location = f"{source}, {voxel} (first of 3 non-finite voxels of 2400; stored as {stored})"
    expectation = "expect_column_values_to_be_between(nonfinite_fraction, min_value=0, max_value=0)"
    assert f"{location}: {expectation} failed (nonfinite_fraction=0.00125)" in message.splitlines()
    assert "informative" not in message
    assert f"  - {location}: nonfinite_fraction=0.00125" in (tmp_path / "report" / "validation.md").read_text()
    manifest = json.loads((tmp_path / "prepared" / "volumes" / "manifest.json").read_text())
    entry = next(e for e in manifest["volumes"] if e["name"] == "noise")
    assert entry["source"] == source and entry["nonfinite"]["first"] == [3, 1, 5]

    # a fraction of undefined voxels may be allowed
    validate_and_report(validate_seismic(tmp_path / "prepared", 5, 0.01), tmp_path / "report")


def test_nonfinite_npy_named_by_file_array_index_and_count(tmp_path: Path) -> None:
    cfg = _survey(tmp_path / "raw", "npy", {(4, 2, 6): np.inf})
    ingest_seismic(cfg, tmp_path / "prepared")
    message = _validate(tmp_path / "prepared", tmp_path / "report")
    voxel = "inline index 4, crossline index 2, sample 6"  # an .npy alone has no survey geometry
    assert f"{cfg['volumes']['noise']}, {voxel} (first of 1 non-finite voxels of 2400; stored as " in message


def test_nan_at_a_picked_voxel_fails_ingest(tmp_path: Path) -> None:
    cfg = _survey(tmp_path / "raw", "sgy", {**OFF_PICKS, (5, 3, 14): np.nan})  # (5, 3, 14) is picked
    error = _reject(tmp_path, cfg)
    assert error.path == cfg["volumes"]["noise"]
    assert str(error) == (
        f"{cfg['volumes']['noise']}: attribute 'noise' is nan at the picked voxel inline 505, crossline 23, "
        "sample 14 at 156 ms; 1 of 240 picked voxels are not finite, and the volume has 4 non-finite voxels of "
        "2400 (NaN 2, +inf 1, -inf 1), the first at inline 503, crossline 21, sample 5 at 120 ms. "
        "Fill or mask those voxels, or pick elsewhere"
    )


def test_nonfinite_volume_with_kuwahara_fails_ingest(tmp_path: Path) -> None:
    cfg = _survey(tmp_path / "raw", "npy", {(2, 2, 2): np.inf})
    cfg["kuwahara"] = {"enabled": True, "radius": 1}
    message = str(_reject(tmp_path, cfg))
    assert message.startswith(
        f"{cfg['volumes']['noise']}: attribute 'noise': 1 non-finite voxels of 2400 (+inf 1), the first at "
        "inline index 2, crossline index 2, sample 2; the Kuwahara filter"
    )


def test_nonfinite_report_is_chunked_and_finds_the_first_voxel(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.npy"
    data = np.zeros(SHAPE, np.float32)
    data[9, 0, 3], data[10, 7, 1], data[11, 9, 19] = np.inf, np.nan, -np.inf
    np.save(path, data)
    monkeypatch.setattr(volumes_module, "_SLAB_BYTES", 4 * SHAPE[1] * SHAPE[2] * 2)  # two inlines a slab
    mapped = np.load(path, mmap_mode="r")
    report = nonfinite_report(mapped)
    assert report == {"nan": 1, "posinf": 1, "neginf": 1, "nonfinite": 3, "voxels": 2400, "first": [9, 0, 3]}
    assert nonfinite_report(np.zeros((2, 2, 2), np.float32))["first"] is None
    assert describe_voxel(GRID, report["first"]) == "inline 509, crossline 20, sample 3 at 112 ms"


# --- geometry ---------------------------------------------------------------------------------------


def test_segy_attributes_with_different_geometry(tmp_path: Path) -> None:
    cfg = _survey(tmp_path / "raw", "sgy")
    shifted = Grid.regular(SHAPE, inline_start=501, crossline_start=20, sample_start_ms=100.0, sample_interval_ms=4.0)
    write_segy(_volume(0), shifted, Path(cfg["volumes"]["noise"]))
    message = str(_reject(tmp_path, cfg))
    informative, noise = cfg["volumes"]["informative"], cfg["volumes"]["noise"]
    assert f"volumes must share one grid, but {noise} and {informative} differ: inlines 12 (501..512) vs" in message


def test_npy_beside_segy_takes_its_geometry(tmp_path: Path) -> None:
    cfg = _survey(tmp_path / "raw", "sgy")
    noise = _volume(0)
    noise[4, 2, 6] = np.nan
    cfg["volumes"]["noise"] = _write(tmp_path / "raw" / "noise.npy", noise)  # same grid, no geometry of its own
    ingest_seismic(cfg, tmp_path / "prepared")
    meta = json.loads((tmp_path / "prepared" / "meta.json").read_text())
    assert meta["grid"]["inlines"][0] == 500 and meta["grid"]["sample_interval_ms"] == 4.0
    message = _validate(tmp_path / "prepared", tmp_path / "report")
    assert f"{cfg['volumes']['noise']}, inline 504, crossline 22, sample 6 at 124 ms (first of 1 " in message


def test_npy_of_another_shape_beside_segy(tmp_path: Path) -> None:
    cfg = _survey(tmp_path / "raw", "sgy")
    cfg["volumes"]["noise"] = _write(tmp_path / "raw" / "noise.npy", np.zeros((12, 10, 19), np.float32))
    message = str(_reject(tmp_path, cfg))
    assert message.startswith(f"{cfg['volumes']['noise']}: array shape (12, 10, 19) does not match the given grid")


def test_truncated_segy(tmp_path: Path) -> None:
    cfg = _survey(tmp_path / "raw", "sgy")
    path = Path(cfg["volumes"]["noise"])
    path.write_bytes(path.read_bytes()[:5000])
    message = str(_reject(tmp_path, cfg))
    assert message.startswith(f"{path}: not a readable SEG-Y file")


# --- picks and names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("inline", 499, "inline 499 is outside the grid (expected inlines 500..511)"),
        ("crossline", 5, "crossline 5 is outside the grid (expected crosslines 20..29)"),
        ("sample", 20, "sample 20 is outside the grid (expected sample 0..19)"),
    ],
)
def test_picks_outside_the_grid(tmp_path: Path, column: str, value: int, expected: str) -> None:
    cfg = _survey(tmp_path / "raw", "sgy")
    picks = pd.read_csv(cfg["picks"])
    picks.loc[6, column] = value  # CSV line 8: a header, then rows 0..6
    picks.to_csv(cfg["picks"], index=False)
    message = str(_reject(tmp_path, cfg))
    assert message == f"{cfg['picks']}, record line 8: {expected}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("my attr", "must be letters, digits"), ("inline", "is reserved"), ("amplitude", "is reserved")],
)
def test_attribute_names_that_cannot_be_stored(tmp_path: Path, name: str, expected: str) -> None:
    cfg = _survey(tmp_path / "raw", "npy")
    cfg["volumes"] = {name: cfg["volumes"]["noise"], "informative": cfg["volumes"]["informative"]}
    error = _reject(tmp_path, cfg)
    assert error.path == cfg["volumes"][name]
    assert f"ingest.seismic.volumes: attribute name {name!r} {expected}" in str(error)


def test_manifest_names_sources_relative_to_the_repository(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    cfg = _survey(repo / "data" / "raw", "npy")
    (repo / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(repo)
    ingest_seismic(cfg, repo / "prepared")
    manifest = json.loads((repo / "prepared" / "volumes" / "manifest.json").read_text())
    assert {e["name"]: e["source"] for e in manifest["volumes"]} == {
        "noise": "data/raw/noise.npy",
        "informative": "data/raw/informative.npy",
    }
