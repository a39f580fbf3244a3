"""The seismic chain on a user's own data: SEG-Y attribute volumes with picks, and well-log tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    import pandas as pd

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


def test_seismic_chain_on_well_logs(tmp_path: Path) -> None:
    import pandas as pd

    rng = np.random.default_rng(2)
    rows = []
    for well in "ABCDEF":
        for depth in np.arange(1500.0, 1600.0, 0.5):
            facies = int(depth >= 1550)
            rows.append(
                {"well": well, "depth": depth, "gr": rng.normal(50 + 40 * facies, 8), "dt": rng.normal(80, 5),
                 "facies": ["shale", "sand"][facies]}
            )  # fmt: skip
    overrides = {
        ("ingest", "seismic", "source"): "volumes",
        ("ingest", "seismic", "facies"): ["shale", "sand"],
        ("ingest", "seismic", "well_logs"): "data/raw/seismic/logs/wells.csv",
        ("train_rf", "folds"): 3,
        ("train_rf", "tree_counts"): [10, 20, 30],
        ("select_attributes", "sem_iter"): 30,
    }
    root, env = make_project(tmp_path, overrides)
    (root / "data/raw/seismic/logs").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "data/raw/seismic/logs/wells.csv", index=False)
    run(["dvc", "repro", *THROUGH_EVALUATION], root, env)
    holdout = pd.read_parquet(root / "data/prepared/seismic/holdout.parquet")
    train = pd.read_parquet(root / "data/prepared/seismic/train.parquet")
    assert set(holdout["well"]).isdisjoint(train["well"])
    metrics = json.loads((root / "reports/seismic/eval/metrics.json").read_text())
    assert metrics["n_items"] == len(holdout) and metrics["macro"]["f1"] > 0.8
    assert (root / "models/seismic/facies/NO_VOLUME.txt").exists()
