"""The seismic chain on a user's own data: SEG-Y attribute volumes with picks, and well-log tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_project, run

pytestmark = pytest.mark.slow

# these chains stop at evaluation: export is the same code as in the shared build (test_seismic_pipeline)
THROUGH_EVALUATION = ("evaluate@rf",)


def _user_segy_survey(root: Path) -> dict:
    """Three SEG-Y attribute volumes (one of them noise), an amplitude volume and picks."""
    from overseer.seismic.data.grid import Grid
    from overseer.seismic.data.segy import write_segy

    rng = np.random.default_rng(0)
    shape = (20, 20, 40)
    grid = Grid.regular(shape, inline_start=500, crossline_start=20, sample_interval_ms=4.0)
    facies = np.zeros(shape, np.int8)
    facies[:, :, 14:28] = 1
    facies[:10, :, 28:] = 2
    survey = root / "data/raw/seismic/survey"
    survey.mkdir(parents=True)
    paths = {}
    for name, gain in (("sweetness", (0.0, 3.0, -3.0)), ("envelope", (0.0, -2.0, 2.5)), ("noise", (0.0, 0.0, 0.0))):
        data = (rng.normal(size=shape) + np.take(gain, facies)).astype(np.float32)
        paths[name] = f"data/raw/seismic/survey/{name}.sgy"
        write_segy(data, grid, root / paths[name])
    write_segy(rng.normal(size=shape).astype(np.float32), grid, survey / "amplitude.sgy")
    il, xl, s = np.meshgrid(np.arange(0, 20), np.arange(0, 20, 3), np.arange(1, 40, 5), indexing="ij")
    il, xl, s = il.ravel(), xl.ravel(), s.ravel()

    pd.DataFrame(
        {"inline": grid.inlines[il], "crossline": grid.crosslines[xl], "time_ms": s * 4.0, "facies": facies[il, xl, s]}
    ).to_csv(survey / "picks.csv", index=False)
    return paths


def test_seismic_chain_on_user_segy(tmp_path: Path) -> None:
    overrides = {
        ("ingest", "seismic", "source"): "volumes",
        ("ingest", "seismic", "facies"): ["shale", "sand", "carbonate"],
        ("ingest", "seismic", "picks"): "data/raw/seismic/survey/picks.csv",
        ("ingest", "seismic", "amplitude"): "data/raw/seismic/survey/amplitude.sgy",
        ("select_attributes", "sem_iter"): 30,
        ("train_rf", "tree_counts"): [10, 20, 30],
    }
    root, env = make_project(tmp_path, overrides)
    paths = _user_segy_survey(root)
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"]["seismic"]["volumes"] = paths
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", *THROUGH_EVALUATION], root, env)

    selection = json.loads((root / "reports/seismic/selection/selection.json").read_text())
    assert "noise" not in selection["best_combination"] and "truth" not in selection
    from overseer.seismic.data.segy import read_segy

    facies, grid = read_segy(root / "models/seismic/facies/facies.sgy")
    assert facies.shape == (20, 20, 40) and int(grid.inlines[0]) == 500 and int(grid.crosslines[0]) == 20
    assert set(np.unique(facies)) <= {0, 1, 2}
    metrics = json.loads((root / "reports/seismic/eval/metrics.json").read_text())
    assert metrics["macro"]["f1"] > 0.8  # two informative attributes separate three facies well


FACIES_CODES = {1: "SS", 2: "CSiS", 3: "FSiS", 4: "SiSh", 5: "MS", 6: "WS"}
# per facies: GR, ILD_log10, DeltaPHI, PHIND, PE (the mean of each log)
LOG_MEANS = {
    1: (55.0, 0.55, 9.0, 16.0, 2.6),
    2: (70.0, 0.60, 6.0, 13.0, 3.0),
    3: (80.0, 0.65, 4.0, 11.0, 3.2),
    4: (95.0, 0.75, 2.0, 9.0, 3.5),
    5: (60.0, 0.85, 0.5, 7.0, 4.0),
    6: (45.0, 1.00, -1.0, 5.0, 4.6),
}


def quirky_well_logs(wells: list[str], seed: int) -> pd.DataFrame:
    """A well-log table as a geoscientist's file comes: a well column named with a space, integer
    facies codes from 1, a text formation column, a binary marine flag, one repeated depth, and
    facies in a vertical succession (each bed's facies is a neighbour of the one below)."""
    rng = np.random.default_rng(seed)
    rows = []
    for well in wells:
        sample, code = int(rng.integers(0, 80)), int(rng.integers(1, 7))  # 0.5 m samples below 2800 m
        while sample < 400:
            bed = int(rng.integers(4, 18))
            means = np.array(LOG_MEANS[code])
            for k in range(sample, sample + bed):
                z, trend = 2800.0 + 0.5 * k, k / 400
                gr, ild, dphi, phind, pe = means + rng.normal(0, [6.0, 0.05, 1.5, 1.5, 0.2]) + [5 * trend, 0, 0, 0, 0]
                rows.append({
                    "Well Name": well, "Depth": z, "Facies": code,
                    "Formation": ["A1 SH", "A1 LM", "B1 SH", "B1 LM"][min(3, int(trend * 4))],
                    "GR": gr, "ILD_log10": ild, "DeltaPHI": dphi, "PHIND": phind, "PE": pe,
                    "NM_M": 2 if code >= 5 else 1,
                })  # fmt: skip
            sample += bed
            code = int(np.clip(code + rng.choice([-1, 1]), 1, 6))
    table = pd.DataFrame(rows)
    return pd.concat([table, table.iloc[[10]]], ignore_index=True)  # one (well, depth) twice


def test_quirky_well_logs_through_the_chain_then_predict_unseen_wells(tmp_path: Path) -> None:
    """A well-log CSV as it comes runs through `dvc repro` with params only (the file is not edited),
    and `overseer predict seismic` classifies wells the model never saw."""
    wells = [f"WELL {i}" for i in range(8)]
    overrides = {
        ("ingest", "seismic", "source"): "volumes",
        ("ingest", "seismic", "well_logs"): "data/raw/seismic/logs/wells.csv",
        ("ingest", "seismic", "columns"): {"well": "well name", "depth": "DEPTH", "facies": "facies"},
        ("ingest", "seismic", "facies"): FACIES_CODES,
        ("ingest", "seismic", "categorical"): ["Formation"],
        ("ingest", "seismic", "duplicates"): "first",
        ("ingest", "seismic", "holdout", "wells"): ["WELL 6", "WELL 7"],
        ("train_rf", "folds"): 3,
        ("train_rf", "tree_counts"): [20, 40],
        ("select_attributes", "sem_iter"): 30,
    }
    root, env = make_project(tmp_path, overrides)
    (root / "data/raw/seismic/logs").mkdir(parents=True)
    quirky_well_logs(wells, seed=0).to_csv(root / "data/raw/seismic/logs/wells.csv", index=False)
    run(["dvc", "repro", "export@rf", *THROUGH_EVALUATION], root, env)

    report = json.loads((root / "reports/seismic/ingest.json").read_text())
    assert report["duplicates"]["rows_removed"] == 1
    holdout = pd.read_parquet(root / "data/prepared/seismic/holdout.parquet")
    train = pd.read_parquet(root / "data/prepared/seismic/train.parquet")
    assert set(holdout["well"]) == {"WELL 6", "WELL 7"} and set(train["well"]).isdisjoint(holdout["well"])
    meta = json.loads((root / "data/prepared/seismic/meta.json").read_text())
    assert any(name.startswith("Formation:") for name in meta["attributes"])
    # code 1 is the first facies, not the second: the mapping, not the position, names the facies
    raw = quirky_well_logs(wells, seed=0).drop_duplicates(["Well Name", "Depth"])
    first = raw[raw["Well Name"] == "WELL 0"].iloc[0]
    row = train[(train["well"] == "WELL 0") & (train["depth"] == first["Depth"])].iloc[0]
    assert meta["facies"][int(row["facies"])] == FACIES_CODES[int(first["Facies"])]
    metrics = json.loads((root / "reports/seismic/eval/metrics.json").read_text())
    assert metrics["n_items"] == len(holdout) and metrics["macro"]["f1"] > 0.6

    # wells the model never saw, columns in another order, no facies column: predicted by name
    unseen = quirky_well_logs(["NEW A", "NEW B"], seed=1)
    truth = unseen.drop_duplicates(["Well Name", "Depth"])["Facies"].map(FACIES_CODES).to_numpy()
    unseen = unseen.drop_duplicates(["Well Name", "Depth"]).drop(columns="Facies").iloc[:, ::-1]
    unseen.to_csv(root / "new_wells.csv", index=False)
    out = root / "new_wells_facies.csv"
    overseer = str(Path(env["PATH"].split(":")[0]) / "overseer")
    run(
        [overseer, "predict", "seismic", "--model", "models/seismic/export", "new_wells.csv", "--out", str(out)],
        root,
        env,
    )
    predicted = pd.read_csv(out)
    assert len(predicted) == len(truth)
    assert set(predicted["facies"]) <= set(FACIES_CODES.values())
    assert {f"p_{name}" for name in predicted["facies"].unique()} <= set(predicted.columns)
    assert (predicted["facies"].to_numpy() == truth).mean() > 0.6
