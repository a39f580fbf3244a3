"""train_gtm / evaluate@gtm on a small synthetic survey: the fit, the chunked probability volumes,
SEG-Y output, undefined voxels, the held-out report beside the forest's, and the CV of the PDFs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from params_defaults import section

from overseer.errors import InputError
from overseer.io import write_json
from overseer.seismic.data.ingest import ingest_seismic
from overseer.seismic.data.segy import read_segy, write_segy
from overseer.seismic.data.volumes import load_volumes
from overseer.seismic.gtm import log_likelihood_is_monotone
from overseer.seismic.gtm_evaluate import evaluate_gtm
from overseer.seismic.gtm_workflow import (
    gtm_config,
    gtm_features,
    plot_latent_map,
    predict_gtm_survey,
    sample_voxels,
    train_gtm,
)
from overseer.seismic.model_io import load_model, save_model
from overseer.seismic.predict import load_seismic_model

FEATURES = ["spectral_roughness", "glcm_variance", "dip_energy_covariance", "reflector_convergence"]
TRAIN_GTM: dict[str, Any] = section(  # small: 36 nodes, 9 basis functions
    "train_gtm", grid=[6, 6], rbf_grid=[3, 3], max_iter=25, max_voxels=3000
)
EVALUATE_GTM: dict[str, Any] = section("evaluate", "gtm")


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared synthetic survey of 32 × 32 × 48 voxels (every facies picked, some held out)."""
    cfg = section("ingest", "seismic")
    cfg["default"] = {**cfg["default"], "shape": [32, 32, 48]}
    out = tmp_path_factory.mktemp("prepared")
    ingest_seismic(cfg, out)
    return out


@pytest.fixture(scope="module")
def trained(survey: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A model folder as train_gtm writes it: model.skops, config.json, volumes/."""
    meta = json.loads((survey / "meta.json").read_text())
    volumes, _ = load_volumes(survey / "volumes", names=FEATURES)
    result = train_gtm(pd.read_parquet(survey / "train.parquet"), volumes, FEATURES, TRAIN_GTM)
    folder = tmp_path_factory.mktemp("gtm")
    save_model(result.model, folder / "model.skops")
    write_json(folder / "config.json", gtm_config(TRAIN_GTM, result, meta))
    predict_gtm_survey(result.model, volumes, FEATURES, folder / "volumes", meta, chunk_voxels=10_000, progress=False)
    return folder, result


def test_fit_on_a_voxel_sample_plus_every_pick(trained: tuple[Path, Any], survey: Path) -> None:
    _, result = trained
    picks = len(pd.read_parquet(survey / "train.parquet"))
    assert result.rows == {"voxels": 3000, "picks": picks}
    assert result.model.gtm_.n_samples_fit_ == 3000 + picks  # EM saw every sampled row, none dropped
    history = result.history["log_likelihood"]
    assert len(history) == result.model.gtm_.n_iter_ + 1 and log_likelihood_is_monotone(history)
    summary = result.summary(["background", "salt", "mtd", "channel"])
    overlap = summary["pdf_overlap"]
    assert all(abs(overlap[f][f] - 1) < 1e-9 for f in overlap)  # a PDF sums to one: BC with itself is 1
    assert overlap["salt"]["channel"] == overlap["channel"]["salt"] < 0.9
    assert plot_latent_map(result.model, ["background", "salt", "mtd", "channel"]).axes


def test_voxel_sample_is_seeded_and_skips_undefined_voxels() -> None:
    rng = np.random.default_rng(0)
    volumes = {n: rng.normal(size=(6, 7, 8)).astype(np.float32) for n in "ab"}
    volumes["a"][0, 0, :] = np.nan
    first, again = sample_voxels(volumes, ["a", "b"], 300, seed=3), sample_voxels(volumes, ["a", "b"], 300, seed=3)
    np.testing.assert_array_equal(first, again)
    assert np.isfinite(first).all() and len(first) <= 300
    assert not np.array_equal(first, sample_voxels(volumes, ["a", "b"], 300, seed=4))
    assert len(sample_voxels(volumes, ["a", "b"], 10_000, seed=0)) == 6 * 7 * 8 - 8  # all defined voxels


def test_feature_modes() -> None:
    selection = {"best_combination": ["b", "c"]}
    assert gtm_features("selected", selection, ["a", "b", "c"]) == ["b", "c"]
    assert gtm_features("all", selection, ["a", "b", "c"]) == ["a", "b", "c"]
    with pytest.raises(InputError, match=r"train_gtm\.features"):
        gtm_features("validated", selection, ["a", "b", "c"])


def test_probability_volumes_and_the_exported_layout(trained: tuple[Path, Any], survey: Path) -> None:
    folder, result = trained
    facies = np.load(folder / "volumes/facies.npy")
    probs = np.stack([np.load(folder / f"volumes/probabilities/probability_{c}.npy") for c in range(4)])
    assert facies.shape == (32, 32, 48) and facies.dtype == np.int8 and facies.min() >= 0
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(facies, probs.argmax(axis=0))
    # the chunked volume is the model's predict_proba of every voxel at once
    volumes, _ = load_volumes(survey / "volumes", names=FEATURES)
    whole = result.model.predict_proba(np.column_stack([np.asarray(volumes[f]).ravel() for f in FEATURES]))
    np.testing.assert_allclose(probs.reshape(4, -1).T, whole, atol=1e-6)
    # what `overseer predict seismic` loads: the config names features and facies, the model loads back
    model = load_seismic_model(folder)
    assert model.features == FEATURES and model.class_names == ["background", "salt", "mtd", "channel"]


def test_undefined_voxels_get_minus_one_and_nan(trained: tuple[Path, Any], survey: Path, tmp_path: Path) -> None:
    _, result = trained
    meta = json.loads((survey / "meta.json").read_text())
    volumes = {n: np.array(v) for n, v in load_volumes(survey / "volumes", names=FEATURES)[0].items()}
    volumes[FEATURES[1]][3, 4, 5] = np.nan
    volumes[FEATURES[2]][7, 0, :] = np.inf
    predict_gtm_survey(result.model, volumes, FEATURES, tmp_path, meta, chunk_voxels=4000, progress=False)
    facies = np.load(tmp_path / "facies.npy")
    p0 = np.load(tmp_path / "probabilities/probability_0.npy")
    undefined = facies == -1
    assert undefined.sum() == 1 + 48 and undefined[3, 4, 5] and undefined[7, 0].all()
    assert np.isnan(p0[undefined]).all() and np.isfinite(p0[~undefined]).all()


def test_segy_survey_gets_segy_probability_volumes(trained: tuple[Path, Any], survey: Path, tmp_path: Path) -> None:
    _, result = trained
    meta = json.loads((survey / "meta.json").read_text())
    volumes, grid = load_volumes(survey / "volumes", names=FEATURES)
    template = write_segy(np.asarray(volumes[FEATURES[0]]), grid, tmp_path / "template.sgy")
    meta = {**meta, "segy_template": str(template)}
    predict_gtm_survey(result.model, volumes, FEATURES, tmp_path / "out", meta, chunk_voxels=50_000, progress=False)
    facies, _ = read_segy(tmp_path / "out/facies.sgy")
    np.testing.assert_array_equal(facies, np.load(tmp_path / "out/facies.npy"))
    p2, p2_grid = read_segy(tmp_path / "out/probabilities/probability_2.sgy")
    np.testing.assert_array_equal(p2, np.load(tmp_path / "out/probabilities/probability_2.npy"))
    assert p2_grid.shape == grid.shape and list(p2_grid.inlines) == list(grid.inlines)


def test_evaluation_on_held_out_picks_beside_the_forest(
    trained: tuple[Path, Any], survey: Path, tmp_path: Path
) -> None:
    folder, _ = trained
    forest = tmp_path / "forest"
    forest.mkdir()
    write_json(forest / "metrics.json", {"accuracy": 0.5, "macro": {"f1": 0.4}, "probabilities": {"log_loss": 1.2}})
    evaluation = evaluate_gtm(survey, folder, forest, EVALUATE_GTM)
    holdout = pd.read_parquet(survey / "holdout.parquet")
    assert evaluation.evaluation == "held-out picks" and int(evaluation.report.confusion.sum()) == len(holdout)
    assert evaluation.report.accuracy > 0.5  # four facies: chance is 0.25
    versus = evaluation.versus_forest
    assert versus.loc["accuracy", "forest"] == 0.5 and versus.loc["log_loss", "forest"] == 1.2
    assert np.isnan(versus.loc["brier", "forest"]) and versus.loc["accuracy", "gtm"] == evaluation.report.accuracy
    metrics = evaluation.metrics()
    assert metrics["probabilities"]["log_loss"] > 0 and 0 <= metrics["probabilities"]["ece"] <= 1
    assert set(metrics["recovery"]) == {"volume_accuracy", "volume_macro_f1"}  # the synthetic truth
    assert {"reliability.png", "probability_slices.png", "versus_forest.csv"} <= set(evaluation.artifacts)
    json.dumps(metrics, allow_nan=False)  # NaN-free: metrics.json is strict JSON
    # numbers only in metrics.json (DVC tabulates every string); the words in evaluation.json beside it
    assert "evaluation" not in metrics and evaluation.described() == {"evaluation": "held-out picks"}


def test_nothing_held_out_is_a_cross_validation_of_the_pdfs(
    trained: tuple[Path, Any], survey: Path, tmp_path: Path
) -> None:
    folder, result = trained
    prepared = tmp_path / "prepared"
    shutil.copytree(survey, prepared)
    train = pd.read_parquet(survey / "train.parquet")
    pd.read_parquet(survey / "holdout.parquet").iloc[:0].to_parquet(prepared / "holdout.parquet")
    evaluation = evaluate_gtm(prepared, folder, tmp_path / "no-forest", EVALUATE_GTM)
    assert evaluation.evaluation.startswith("blocked CV of the facies PDFs")
    assert int(evaluation.report.confusion.sum()) == len(train)  # every training pick, out of fold
    in_sample = result.model.predict_proba(train[FEATURES].to_numpy(dtype=np.float32))
    out_of_fold = evaluation.report.predictions["confidence"].to_numpy()
    assert not np.allclose(in_sample.max(axis=1), out_of_fold)  # each fold's PDFs left its own picks out
    assert evaluation.versus_forest["forest"].isna().all()


def test_model_round_trips_through_skops(trained: tuple[Path, Any]) -> None:
    folder, result = trained
    loaded = load_model(folder / "model.skops")
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), result.model.predict_proba(x))


def test_messages_name_facies(survey: Path) -> None:
    table = pd.read_parquet(survey / "train.parquet")
    few = pd.concat([table[table["facies"] != 3], table[table["facies"] == 3].head(4)])
    with pytest.raises(InputError, match="facies channel has 4 labelled rows"):
        train_gtm(few, None, FEATURES, TRAIN_GTM, facies=["background", "salt", "mtd", "channel"])
    flat = table.assign(glcm_variance=1.0)
    with pytest.raises(InputError, match=r"attributes \['glcm_variance'\] are constant"):
        train_gtm(flat, None, FEATURES, TRAIN_GTM)


def test_cv_fold_without_a_facies_gives_it_probability_zero(trained: tuple[Path, Any], survey: Path) -> None:
    from overseer.seismic.gtm_evaluate import cross_validated_probabilities

    _, result = trained
    table = pd.read_parquet(survey / "train.parquet")
    channel = table["facies"] == 3
    table.loc[channel, ["inline", "crossline"]] = table.loc[channel, ["inline", "crossline"]].iloc[0].to_numpy()
    proba, cv = cross_validated_probabilities(result.model, table, FEATURES)  # every channel pick in one block
    assert cv["folds"] == 5 and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert (proba[channel.to_numpy(), 3] == 0).all()  # its fold trained on no channel pick
