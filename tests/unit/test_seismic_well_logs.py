"""Well logs as they come: a geoscientist's CSV ingested with params only (issue 11)."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pytest
import yaml
from params_defaults import section

from overseer.errors import InputError
from overseer.params import problems
from overseer.params import types as value_types
from overseer.seismic.data.ingest import ingest_seismic
from overseer.seismic.data.picks import read_well_logs as read_well_logs_from_picks
from overseer.seismic.data.well_logs import (
    DUPLICATES,
    MISSING,
    FaciesCodes,
    load_well_logs,
    prepare_log_table,
    read_log_table,
)
from overseer.validation.seismic import validate_seismic

ROOT = Path(__file__).resolve().parents[2]
CODES = {1: "SS", 2: "CSiS", 3: "FSiS", 4: "SiSh"}
WELLS = ["SHRIMPLIN", "NEWBY", "CHURCHMAN BIBLE", "LUKE G U", "CROSS H CATTLE", "NOLAN", "KIMZEY A"]
ZONES = ["A1 SH", "A1 LM", "B1 SH", "B1 LM"]
BASE: dict[str, Any] = section(
    "ingest", "seismic",
    source="volumes", facies=dict(CODES), columns={"well": "well name", "depth": "DEPTH", "facies": " Facies "},
    categorical=["formation"], drop=["RELPOS"], duplicates="mean",
    holdout={"block_size": 4, "fraction": 0.3, "seed": 0},
)  # fmt: skip


def kansas_like(path: Path, *, n_wells: int = 7, samples: int = 64, seed: int = 0) -> pd.DataFrame:
    """A CSV with a real file's quirks: a well column with a space, facies codes 1..4, a text zone
    column, a binary log, a text column to drop, logs that follow depth and facies, and one depth
    of one well given twice (same facies, slightly different logs). Returns the rows written."""
    rng = np.random.default_rng(seed)
    rows = []
    for w, well in enumerate(WELLS[:n_wells]):
        top = 2790.0 + 7.5 * w  # the sequence dips from well to well
        for k in range(samples):
            depth = top + 0.5 * k
            code = 1 + (k * 4) // samples  # four depth bands, one facies each
            rows.append(
                {
                    "Facies": code,
                    "Formation": ZONES[(k * 4) // samples],
                    "Well Name": well,
                    "Depth": depth,
                    "GR": 40 + 15 * code + 0.01 * (depth - 2790) + rng.normal(0, 2),
                    "ILD_log10": 0.9 - 0.1 * code + rng.normal(0, 0.02),
                    "PE": 3.0 + 0.3 * code + rng.normal(0, 0.1),
                    "NM_M": 1 if code <= 2 else 2,  # non-marine / marine indicator
                    "RELPOS": f"{k / samples:.3f}x",  # text: must be dropped
                }
            )
    frame = pd.DataFrame(rows)
    repeat = frame.iloc[[70]].copy()
    repeat["GR"] += 4.0
    frame = pd.concat([frame.iloc[:71], repeat, frame.iloc[71:]], ignore_index=True)  # line 73 repeats line 72
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def logs_csv(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    path = tmp_path_factory.mktemp("logs") / "kansas.csv"
    return path, kansas_like(path)


@pytest.fixture(scope="module")
def prepared(logs_csv, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared") / "seismic"
    report = ingest_seismic({**BASE, "well_logs": str(logs_csv[0])}, out)
    return out, report


def _cfg(path: Path, **changes: Any) -> dict:
    cfg = copy.deepcopy({**BASE, "well_logs": str(path)})
    for key, value in changes.items():
        if key.startswith("holdout_"):
            cfg["holdout"][key.removeprefix("holdout_")] = value
        else:
            cfg[key] = value
    return cfg


def _csv(path: Path, text: str) -> Path:
    path.write_text(text.lstrip())
    return path


# ---------------------------------------------------------------------------- the file as it comes
def test_ingest_reads_the_file_as_it_comes(logs_csv, prepared) -> None:
    _, rows = logs_csv
    out, report = prepared
    train, holdout = (pd.read_parquet(out / f"{split}.parquet") for split in ("train", "holdout"))
    both = pd.concat([train, holdout], ignore_index=True)
    meta = json.loads((out / "meta.json").read_text())
    one_hot = [f"Formation:{zone}" for zone in sorted(ZONES)]
    assert meta["facies"] == list(CODES.values())
    assert meta["attributes"] == ["GR", "ILD_log10", "PE", "NM_M", *one_hot]
    assert list(both.columns) == ["well", "depth", "facies", *meta["attributes"]]
    assert all(both[c].dtype == np.float32 for c in meta["attributes"])
    # one row per (well, depth); facies id = position in the mapping (code 1 -> 0, ...), none shifted
    assert len(both) == len(rows) - 1 and not both.duplicated(["well", "depth"]).any()
    truth = rows.drop_duplicates(["Well Name", "Depth"]).set_index(["Well Name", "Depth"])
    keyed = both.set_index(["well", "depth"]).loc[truth.index]
    assert (keyed["facies"].to_numpy() == truth["Facies"].to_numpy() - 1).all()
    assert (keyed[[f"Formation:{z}" for z in truth["Formation"].unique()]].sum(axis=1) == 1).all()
    for zone in ZONES:
        assert (keyed.loc[(truth["Formation"] == zone).to_numpy(), f"Formation:{zone}"] == 1).all()
    assert set(both["NM_M"]) == {1.0, 2.0} and "RELPOS" not in both
    # the repeated depth (lines 72 and 73) is averaged: GR mean, facies kept
    well, depth = rows.loc[70, "Well Name"], rows.loc[70, "Depth"]
    merged = keyed.loc[(well, depth)]
    assert merged["GR"] == pytest.approx(np.float32((rows.loc[70, "GR"] + rows.loc[71, "GR"]) / 2), rel=1e-6)
    assert merged["facies"] == rows.loc[70, "Facies"] - 1
    assert report["duplicates"] == {"policy": "mean", "repeated_depths": 1, "rows_removed": 1}
    # whole wells held out; the recorded inputs say how to encode a new table
    assert set(train["well"]).isdisjoint(holdout["well"]) and meta["holdout"]["wells"] == sorted(set(holdout["well"]))
    assert meta["inputs"] == {
        "columns": {"well": "Well Name", "depth": "Depth", "facies": "Facies"},
        "drop": ["RELPOS"],
        "categorical": {"Formation": sorted(ZONES)},
        "logs": ["GR", "ILD_log10", "PE", "NM_M"],
        "features": meta["attributes"],
        "facies": {"names": list(CODES.values()), "codes": list(CODES)},
        "missing": "error",
        "na_values": ["-999.25"],
    }
    assert set(report["rows"]["train"]) == set(CODES.values())  # counts by facies name
    assert validate_seismic(out, 20, 0.0).success


def test_misordered_columns_give_the_same_table(logs_csv, prepared, tmp_path) -> None:
    _, rows = logs_csv
    order = ["GR", " Depth ", "NM_M", "RELPOS", "Well Name", "PE", "Facies", "ILD_log10", "Formation"]
    rows.rename(columns={"Depth": " Depth "})[order].to_csv(tmp_path / "shuffled.csv", index=False)
    ingest_seismic(_cfg(tmp_path / "shuffled.csv"), tmp_path / "out")
    for split in ("train", "holdout"):
        a = pd.read_parquet(prepared[0] / f"{split}.parquet")
        b = pd.read_parquet(tmp_path / "out" / f"{split}.parquet")
        pd.testing.assert_frame_equal(a, b[list(a.columns)])


# ---------------------------------------------------------------------------- facies codes
def test_integer_codes_where_names_were_declared_are_an_error(tmp_path) -> None:
    # codes 1..M with M names: 1..M-1 used to be read one place off (silently); now every one is refused
    path = tmp_path / "codes.csv"
    kansas_like(path, n_wells=3)
    with pytest.raises(InputError) as caught:
        ingest_seismic(_cfg(path, facies=list(CODES.values())), tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"{path}, record line 2: facies '1' in column 'Facies' is an integer code")
    assert "declares names only (SS, CSiS, FSiS, SiSh)" in message and "facies: {1: SS, 2: CSiS, ...}" in message
    assert not (tmp_path / "out").exists()
    # the silent case exactly: only codes 1..M-1 in the file
    rows = pd.read_csv(path)
    rows[rows["Facies"] < 4].to_csv(path, index=False)
    with pytest.raises(InputError, match=r"record line 2: facies '1' in column 'Facies' is an integer code"):
        ingest_seismic(_cfg(path, facies=list(CODES.values())), tmp_path / "out")


def test_a_mapping_keeps_every_facies_apart(tmp_path) -> None:
    # a mapping {1: n1, ..., M: nM} used to keep only its keys and merge facies: now code k is facies k-1
    path = tmp_path / "codes.csv"
    rows = kansas_like(path)
    report = ingest_seismic(_cfg(path), tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["facies"] == ["SS", "CSiS", "FSiS", "SiSh"]
    counts = {
        name: report["rows"]["train"].get(name, 0) + report["rows"]["holdout"].get(name, 0) for name in CODES.values()
    }
    expected = rows.drop_duplicates(["Well Name", "Depth"])["Facies"].map(CODES).value_counts().to_dict()
    assert counts == expected and len(set(counts.values())) == 1  # four equal bands, none merged
    # an order other than the codes': ids follow the mapping
    reordered = {3: "FSiS", 1: "SS", 4: "SiSh", 2: "CSiS"}
    table = load_well_logs(path, facies=reordered, columns=BASE["columns"], categorical=["Formation"],
                           drop=["RELPOS"], duplicates="first").table  # fmt: skip
    assert table.groupby("facies")["GR"].mean().idxmin() == 1  # SS: lowest GR, second in the mapping


def test_a_code_outside_the_mapping_names_file_line_and_mapping(tmp_path) -> None:
    path = _csv(tmp_path / "w.csv", "Well Name,Depth,GR,Facies\nA,1,40,1\nA,2,41,9\n")
    with pytest.raises(InputError) as caught:
        load_well_logs(path, facies=CODES, columns=BASE["columns"])
    assert str(caught.value) == (
        f"{path}, record line 3: unknown facies code '9' in column 'Facies'; ingest.seismic.facies maps "
        "1=SS, 2=CSiS, 3=FSiS, 4=SiSh"
    )
    named = _csv(tmp_path / "n.csv", "Well Name,Depth,GR,Facies\nA,1,40,SS\n")
    with pytest.raises(InputError, match=r"line 2: unknown facies code 'SS'.*the file names facies here"):
        load_well_logs(named, facies=CODES, columns=BASE["columns"])
    with pytest.raises(
        InputError,
        match=r"line 2: unknown facies 'chalk' in column 'facies'; ingest\.seismic\.facies declares SS, CSiS",
    ):
        load_well_logs(_csv(tmp_path / "c.csv", "well,depth,gr,facies\nA,1,40,chalk\n"), facies=list(CODES.values()))


def test_facies_codes_recorded_form_round_trips() -> None:
    codes = FaciesCodes.from_param({"SS": "sandstone", 2: "shale"})
    assert FaciesCodes.from_param(json.loads(json.dumps(codes.to_json()))) == codes
    assert codes.resolve("ss") == 0 and codes.resolve("2.0") == 1 and codes.resolve("3") is None
    with pytest.raises(InputError, match="must be unique"):
        FaciesCodes.from_param(["Salt", "salt"])


# ---------------------------------------------------------------------------- text columns
def test_an_undeclared_text_column_is_named_with_both_keys(logs_csv, tmp_path) -> None:
    path, _ = logs_csv
    with pytest.raises(InputError) as caught:
        ingest_seismic(_cfg(path, categorical=[]), tmp_path / "out")
    message = str(caught.value)
    assert f"{path}, record line 2: column 'Formation': 'A1 SH' is not a finite number; it holds text" in message
    assert "ingest.seismic.categorical: [Formation]" in message and "ingest.seismic.drop: [Formation]" in message
    with pytest.raises(InputError, match=r"column 'RELPOS'.*ingest\.seismic\.drop: \[RELPOS\]"):
        ingest_seismic(_cfg(path, drop=[]), tmp_path / "out")
    with pytest.raises(InputError, match=r"ingest\.seismic\.drop: no column 'zone'; found \['Facies'"):
        ingest_seismic(_cfg(path, drop=["zone"]), tmp_path / "out")
    with pytest.raises(InputError, match=r"missing columns \['UWI'\] \(ingest\.seismic\.columns"):
        ingest_seismic(_cfg(path, columns={"well": "UWI"}), tmp_path / "out")


# ---------------------------------------------------------------------------- repeated depths
REPEATED = """
well,depth,gr,zone,facies
A,1000,40,Z1,SS
A,1000.5,50,Z1,SS
B,1000,60,Z2,CSiS
A,1000.5,54,Z1,SS
"""


def test_repeated_depths_follow_the_policy(tmp_path, caplog) -> None:
    path = _csv(tmp_path / "rep.csv", REPEATED)
    options = {"facies": ["SS", "CSiS"], "categorical": ["zone"]}
    with pytest.raises(InputError) as caught:
        load_well_logs(path, **options)
    assert str(caught.value).startswith(f"{path}, record line 5: well 'A' has depth 1000.5 twice (line 3)")
    assert "ingest.seismic.duplicates" in str(caught.value)
    with caplog.at_level(logging.WARNING):
        first = load_well_logs(path, duplicates="first", **options)
    assert first.table["gr"].tolist() == [40, 50, 60] and "1 repeated (well, depth) rows dropped" in caplog.text
    mean = load_well_logs(path, duplicates="mean", **options)
    assert mean.table["gr"].tolist() == [40, 52, 60] and mean.table["zone:Z1"].tolist() == [1, 1, 0]
    assert mean.duplicates == first.duplicates | {"policy": "mean"} == {
        "policy": "mean", "repeated_depths": 1, "rows_removed": 1,
    }  # fmt: skip
    clash = _csv(tmp_path / "clash.csv", REPEATED.replace("A,1000.5,54,Z1,SS", "A,1000.5,54,Z1,CSiS"))
    with pytest.raises(InputError) as caught:
        load_well_logs(clash, duplicates="mean", **options)
    assert str(caught.value) == (
        f"{clash}, record line 5: well 'A' depth 1000.5 is repeated with facies SS (line 3) and CSiS (line 5); "
        "ingest.seismic.duplicates: mean needs them to agree (1 repeated rows disagree)"
    )
    zones = _csv(tmp_path / "zones.csv", REPEATED.replace("A,1000.5,54,Z1,SS", "A,1000.5,54,Z2,SS"))
    with pytest.raises(InputError, match=r"line 5: well 'A' depth 1000.5 is repeated with zone 'Z1' \(line 3\)"):
        load_well_logs(zones, duplicates="mean", **options)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_well_logs(clash, duplicates="first", **options)
    assert "disagree on facies" in caplog.text and "SS (line 3) and CSiS (line 5)" in caplog.text


# ---------------------------------------------------------------------------- source and hold-out
def test_well_logs_with_the_default_source_are_an_error(logs_csv, tmp_path) -> None:
    with pytest.raises(InputError, match=r"ingest\.seismic\.well_logs is .* but source is default"):
        ingest_seismic(_cfg(logs_csv[0], source="default"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_named_wells_are_held_out(logs_csv, tmp_path) -> None:
    path, _ = logs_csv
    ingest_seismic(_cfg(path, holdout_wells=["NEWBY", "kimzey a "]), tmp_path / "out")
    holdout = pd.read_parquet(tmp_path / "out" / "holdout.parquet")
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert set(holdout["well"]) == {"NEWBY", "KIMZEY A"} and set(train["well"]) == set(WELLS) - {"NEWBY", "KIMZEY A"}
    with pytest.raises(InputError, match=r"holdout\.wells: no well 'NEWBIE' in the well logs; wells: \['SHRIMPLIN'"):
        ingest_seismic(_cfg(path, holdout_wells=["NEWBIE"]), tmp_path / "bad")
    with pytest.raises(InputError, match="holds out every well"):
        ingest_seismic(_cfg(path, holdout_wells=WELLS), tmp_path / "bad")


def test_fraction_zero_trains_on_every_well(logs_csv, tmp_path) -> None:
    path, rows = logs_csv
    report = ingest_seismic(_cfg(path, holdout_fraction=0), tmp_path / "out")
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    holdout = pd.read_parquet(tmp_path / "out" / "holdout.parquet")
    assert set(train["well"]) == set(WELLS) and len(train) == len(rows) - 1
    assert holdout.empty and list(holdout.columns) == list(train.columns)
    assert dict(holdout.dtypes) == dict(train.dtypes)
    assert report["rows"]["holdout"] == {} and report["holdout"]["wells"] == []


# ---------------------------------------------------------------------------- new tables
def test_prepare_log_table_repeats_ingests_encoding(logs_csv, prepared, tmp_path) -> None:
    _, rows = logs_csv
    out, _ = prepared
    meta = json.loads((out / "meta.json").read_text())
    train = pd.read_parquet(out / "train.parquet")
    well = train["well"].iloc[0]
    # the same rows as a new table: other column order and case, no facies, no dropped column
    new = rows[rows["Well Name"] == well].drop_duplicates(["Well Name", "Depth"])
    new = new[["PE", "Formation", "Depth", "NM_M", "GR", "Well Name", "ILD_log10"]]
    new = new.rename(columns={"Well Name": "WELL NAME ", "Formation": "formation"}).iloc[::-1]
    new.to_csv(tmp_path / "new.csv", index=False)
    for table in (read_log_table(tmp_path / "new.csv"), pd.read_csv(tmp_path / "new.csv")):
        encoded = prepare_log_table(table, meta["inputs"], path=tmp_path / "new.csv")
        assert list(encoded.columns) == ["well", "depth", *meta["attributes"]]
        expected = train[train["well"] == well].drop(columns="facies").sort_values("depth", ascending=False)
        pd.testing.assert_frame_equal(encoded.reset_index(drop=True), expected.reset_index(drop=True))
    # with the facies column, the ids are ingest's
    labelled = prepare_log_table(rows[rows["Well Name"] == well].iloc[:5], meta["inputs"], path="x.csv")
    assert labelled["facies"].tolist() == (rows["Facies"].iloc[:5] - 1).tolist()


def test_prepare_log_table_refuses_what_training_never_saw(prepared, tmp_path) -> None:
    inputs = json.loads((prepared[0] / "meta.json").read_text())["inputs"]
    unseen = _csv(tmp_path / "unseen.csv", "Well Name,Depth,GR,ILD_log10,PE,NM_M,Formation\nX,1,50,0.7,3,1,A1 SH\n"
                  "X,2,50,0.7,3,1,C1 SS\n")  # fmt: skip
    with pytest.raises(InputError) as caught:
        prepare_log_table(read_log_table(unseen), inputs, path=unseen)
    assert str(caught.value) == (
        f"{unseen}, record line 3: column 'Formation': level 'C1 SS' was not seen in training; known levels "
        "['A1 LM', 'A1 SH', 'B1 LM', 'B1 SH'] (ingest.seismic.categorical)"
    )
    lacking = _csv(tmp_path / "lacking.csv", "Well Name,Depth,GR,Formation\nX,1,50,A1 SH\n")
    with pytest.raises(InputError, match=r"lacking\.csv: missing columns \['ILD_log10', 'PE', 'NM_M'\]"):
        prepare_log_table(read_log_table(lacking), inputs, path=lacking)
    blank = _csv(tmp_path / "blank.csv", "Well Name,Depth,GR,ILD_log10,PE,NM_M,Formation\nX,1,-999.25,0.7,3,1,A1 SH\n")
    with pytest.raises(InputError, match=r"blank\.csv, record line 2: missing value in column 'GR'"):
        prepare_log_table(read_log_table(blank), inputs, path=blank)


# ---------------------------------------------------------------------------- library and params
def test_read_well_logs_stays_importable_from_picks(tmp_path) -> None:
    path = _csv(tmp_path / "w.csv", "well,depth,gr,facies\nA,1,40,1\nA,2,41,0\n")
    assert read_well_logs_from_picks(path)["facies"].tolist() == [1, 0]  # no facies declared: ids as they are


PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())["ingest"]["seismic"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"well_logs": "logs.csv"}, "ingest.seismic.well_logs: given while source: default"),
        ({"holdout": {**PARAMS["holdout"], "wells": ["A"]}}, "ingest.seismic.holdout.wells: names held-out wells, but"),
        ({"source": "volumes", "well_logs": "l.csv", "facies": {1: "SS", 2: "ss"}}, "each facies once: 'SS', 'ss'"),
        ({"facies": {True: "SS"}}, "ingest.seismic.facies: facies code true must be a whole number or text"),
        ({"duplicates": "last"}, "ingest.seismic.duplicates: must be one of error | first | mean, got 'last'"),
        ({"columns": {"wel": "Well Name"}}, "ingest.seismic.columns.wel: unknown key; did you mean well?"),
        ({"categorical": ["Zone"], "drop": ["zone"]}, "ingest.seismic.categorical: columns ['zone'] are in both"),
        ({"holdout": {**PARAMS["holdout"], "fraction": 1}}, "ingest.seismic.holdout.fraction: must be in [0, 1)"),
    ],
)
def test_params_schema_of_well_logs(change: dict, message: str) -> None:
    found = problems(("ingest", "seismic"), {**copy.deepcopy(PARAMS), **change})
    assert any(message in line for line in found), found


def test_params_schema_accepts_the_well_log_keys() -> None:
    cfg = {
        **copy.deepcopy(PARAMS), "source": "volumes", "well_logs": "logs.csv", "facies": {1: "SS", 2: "CSiS"},
        "columns": {"well": "Well Name"}, "categorical": ["Formation"], "drop": ["RELPOS"], "duplicates": "mean",
        "holdout": {**PARAMS["holdout"], "fraction": 0, "wells": ["SHRIMPLIN"]},
    }  # fmt: skip
    assert problems(("ingest", "seismic"), cfg) == []
    assert set(get_args(value_types.Duplicates)) == set(DUPLICATES)
    assert set(get_args(value_types.MissingLogs)) == set(MISSING)
