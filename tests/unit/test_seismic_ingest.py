"""ingest@seismic and validate@seismic: the default survey, user volumes (npy, SEG-Y), well logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from overseer.errors import InputError
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.ingest import holdout_mask, ingest_seismic
from overseer.seismic.data.segy import write_segy
from overseer.validation.core import ValidationFailed, validate_and_report
from overseer.validation.seismic import validate_seismic

BASE = {
    "source": "default",
    "volumes": {},
    "amplitude": None,
    "iline_byte": 189,
    "xline_byte": 193,
    "facies": ["background", "salt", "mtd", "channel"],
    "picks": None,
    "well_logs": None,
    "missing_logs": "error",
    "kuwahara": {"enabled": False, "radius": 1},
    "holdout": {"block_size": 4, "fraction": 0.25, "seed": 0},
    "default": {"shape": [48, 48, 96], "dt_ms": 4.0, "noise": 0.1, "seed": 7},
}


@pytest.fixture(scope="module")
def default_prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seismic") / "prepared"
    ingest_seismic(BASE, out)
    return out


def test_default_survey_holdout_is_spatially_disjoint(default_prepared: Path) -> None:
    train = pd.read_parquet(default_prepared / "train.parquet")
    holdout = pd.read_parquet(default_prepared / "holdout.parquet")
    assert set(train["inline"] // 4).isdisjoint(set(holdout["inline"] // 4))
    assert set(train["facies"]) == set(holdout["facies"]) == {0, 1, 2, 3}
    meta = json.loads((default_prepared / "meta.json").read_text())
    truth = json.loads((default_prepared / "truth.json").read_text())
    assert {"noise_smooth", "noise_white"} <= set(meta["attributes"])
    assert set(truth["informative"]).isdisjoint({"noise_smooth", "noise_white"})
    assert all(train[a].dtype == np.float32 for a in meta["attributes"])


def test_default_survey_passes_validation(default_prepared: Path, tmp_path: Path) -> None:
    report = validate_seismic(default_prepared, 20, 0.0)
    validate_and_report(report, tmp_path)
    assert report.success and all(r.success for r in report.results)
    assert "PASSED" in (tmp_path / "validation.md").read_text()


def _copy(prepared: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "prepared"
    shutil.copytree(prepared, target)
    return target


def test_validation_names_file_row_and_expectation(default_prepared: Path, tmp_path: Path) -> None:
    prepared = _copy(default_prepared, tmp_path)
    table = pd.read_parquet(prepared / "train.parquet")
    table.loc[5, "coherence"] = np.inf
    table = pd.concat([table, table.iloc[[7]]], ignore_index=True)  # a voxel picked twice
    table.to_parquet(prepared / "train.parquet")
    with pytest.raises(ValidationFailed) as failure:
        validate_and_report(validate_seismic(prepared, 20, 0.0), tmp_path / "report")
    message = str(failure.value)
    assert f"{prepared / 'train.parquet'}, row 5" in message and "coherence" in message
    assert "expect_compound_columns_to_be_unique" in message
    assert "FAILED" in (tmp_path / "report" / "validation.md").read_text()


def test_too_few_picks_of_a_facies_fail_validation(default_prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="facies salt"):
        validate_and_report(validate_seismic(default_prepared, 10_000, 0.0), tmp_path)


def _user_survey(tmp_path: Path, kind: str) -> dict:
    rng = np.random.default_rng(0)
    shape = (12, 10, 20)
    facies = np.zeros(shape, np.int8)
    facies[:, :, 10:] = 1
    grid = Grid.regular(shape, inline_start=500, crossline_start=20, sample_interval_ms=4.0)
    volumes = {}
    for name, signal in (("informative", 3.0), ("noise", 0.0)):
        data = (rng.normal(size=shape) + signal * facies).astype(np.float32)
        path = tmp_path / f"{name}.{kind}"
        if kind == "npy":
            np.save(path, data)
        else:
            write_segy(data, grid, path)
        volumes[name] = str(path)
    il, xl, s = np.meshgrid(np.arange(12), np.arange(0, 10, 3), np.arange(2, 20, 4), indexing="ij")
    picks = pd.DataFrame(
        {
            "inline": grid.inlines[il.ravel()] if kind == "sgy" else il.ravel(),
            "crossline": grid.crosslines[xl.ravel()] if kind == "sgy" else xl.ravel(),
            "sample": s.ravel(),
            "facies": facies[il.ravel(), xl.ravel(), s.ravel()],
        }
    )
    picks.to_csv(tmp_path / "picks.csv", index=False)
    return {
        **BASE,
        "source": "volumes",
        "volumes": volumes,
        "facies": ["shale", "sand"],
        "picks": str(tmp_path / "picks.csv"),
    }


@pytest.mark.parametrize("kind", ["npy", "sgy"])
def test_user_volumes_and_picks(tmp_path: Path, kind: str) -> None:
    cfg = _user_survey(tmp_path, kind)
    report = ingest_seismic(cfg, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["attributes"] == ["informative", "noise"] and meta["facies"] == ["shale", "sand"]
    assert (meta["segy_template"] is not None) == (kind == "sgy")
    assert sum(report["rows"]["train"].values()) + sum(report["rows"]["holdout"].values()) == 12 * 4 * 5
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert (
        train.loc[train["facies"] == 1, "informative"].mean() - train.loc[train["facies"] == 0, "informative"].mean()
    ) > 2


def test_picks_outside_the_grid_are_named(tmp_path: Path) -> None:
    cfg = _user_survey(tmp_path, "npy")
    picks = pd.read_csv(cfg["picks"])
    picks.loc[3, "inline"] = 99
    picks.to_csv(cfg["picks"], index=False)
    with pytest.raises(InputError, match=r"picks\.csv"):
        ingest_seismic(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_well_logs_hold_out_whole_wells(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for well in ("A", "B", "C", "D"):
        for depth in np.arange(1000.0, 1060.0, 0.5):
            facies = int(depth >= 1030)
            rows.append(
                {
                    "well": well,
                    "depth": depth,
                    "gr": rng.normal(60 + 30 * facies, 5),
                    "rho": rng.normal(2.4, 0.1),
                    "facies": facies,
                }
            )
    pd.DataFrame(rows).to_csv(tmp_path / "logs.csv", index=False)
    # the file holds integer codes: a mapping code -> name says so (a list of names would refuse them)
    facies = {0: "shale", 1: "sand"}
    cfg = {**BASE, "source": "volumes", "facies": facies, "well_logs": str(tmp_path / "logs.csv")}
    ingest_seismic(cfg, tmp_path / "out")
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    holdout = pd.read_parquet(tmp_path / "out" / "holdout.parquet")
    assert set(train["well"]).isdisjoint(holdout["well"]) and len(set(holdout["well"])) == 1
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["attributes"] == ["gr", "rho"] and not meta["has_volumes"]
    assert meta["facies"] == ["shale", "sand"] and meta["inputs"]["facies"] == {
        "names": ["shale", "sand"],
        "codes": [0, 1],
    }
    with pytest.raises(InputError, match=r"logs\.csv, record line 2: facies '0' in column 'facies' is an integer code"):
        ingest_seismic({**cfg, "facies": ["shale", "sand"]}, tmp_path / "refused")


def test_picks_with_a_facies_mapping_get_ids_in_mapping_order(tmp_path: Path) -> None:
    cfg = _user_survey(tmp_path, "npy")
    picks = pd.read_csv(cfg["picks"])
    picks["facies"] = picks["facies"].map({0: 7, 1: 3})  # the interpreter's own codes
    picks.to_csv(cfg["picks"], index=False)
    ingest_seismic({**cfg, "facies": {7: "shale", 3: "sand"}}, tmp_path / "out")
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert set(train["facies"]) == {0, 1} and json.loads((tmp_path / "out" / "meta.json").read_text())["inputs"] is None
    assert train.loc[train["facies"] == 1, "informative"].mean() > train.loc[train["facies"] == 0, "informative"].mean()


def test_fraction_zero_holds_no_block_out(tmp_path: Path) -> None:
    cfg = _user_survey(tmp_path, "npy")
    report = ingest_seismic({**cfg, "holdout": {**cfg["holdout"], "fraction": 0}}, tmp_path / "out")
    assert pd.read_parquet(tmp_path / "out" / "holdout.parquet").empty and report["rows"]["holdout"] == {}
    assert sum(report["rows"]["train"].values()) == 12 * 4 * 5


def test_holdout_mask_keeps_every_facies_on_both_sides() -> None:
    groups = np.repeat(np.arange(8), 10)
    facies = np.tile(np.arange(2), 40)
    mask = holdout_mask(groups, facies, 0.25, seed=3)
    assert len(np.unique(groups[mask])) == 2
    assert set(facies[mask]) == set(facies[~mask]) == {0, 1}
    with pytest.raises(InputError, match="only one"):
        holdout_mask(np.zeros(10), np.arange(10) % 2, 0.25, 0)
    with pytest.raises(InputError, match="every facies"):
        holdout_mask(np.arange(4), np.arange(4), 0.25, 0)  # each facies lives in one block only


@pytest.mark.parametrize("kuwahara", [False, True])
def test_segy_goes_into_a_zarr_store_block_by_block_with_the_npy_stores_arrays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kuwahara: bool
) -> None:
    from overseer.seismic.data import segy, volumes
    from overseer.seismic.data.volumes import load_volumes
    from overseer.seismic.data.zarr_store import is_zarr_store

    cfg = _user_survey(tmp_path, "sgy")
    amplitude = np.random.default_rng(1).normal(size=(12, 10, 20)).astype(np.float32)
    write_segy(
        amplitude,
        Grid.regular((12, 10, 20), inline_start=500, crossline_start=20, sample_interval_ms=4.0),
        tmp_path / "amp.sgy",
    )
    cfg = {**cfg, "amplitude": str(tmp_path / "amp.sgy"), "kuwahara": {"enabled": kuwahara, "radius": 1}}
    ingest_seismic({**cfg, "store": "npy"}, tmp_path / "npy")

    def whole(*args, **kwargs):
        raise AssertionError("the Zarr path read a whole SEG-Y volume")

    monkeypatch.setattr(volumes, "read_segy", whole)  # read_volume's whole-volume reader
    monkeypatch.setattr(segy, "read_segy", whole)
    ingest_seismic({**cfg, "store": "zarr"}, tmp_path / "zarr")
    assert is_zarr_store(tmp_path / "zarr" / "volumes")
    small, grid = load_volumes(tmp_path / "npy" / "volumes")
    large, zgrid = load_volumes(tmp_path / "zarr" / "volumes")
    assert zgrid.difference(grid) is None and list(large) == list(small) == ["informative", "noise", "amplitude"]
    for name, volume in small.items():
        np.testing.assert_array_equal(large[name][:], volume)
    np.testing.assert_array_equal(small["amplitude"], amplitude)
    for name in ("train.parquet", "holdout.parquet", "meta.json"):
        assert (tmp_path / "npy" / name).read_bytes() == (tmp_path / "zarr" / name).read_bytes()
    with pytest.raises(AssertionError, match="whole SEG-Y"):  # the npy path does read it whole
        ingest_seismic({**cfg, "store": "npy"}, tmp_path / "npy2")
