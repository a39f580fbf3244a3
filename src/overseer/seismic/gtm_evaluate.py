"""evaluate@gtm: the GTM's facies probabilities on the held-out picks, side by side with the forest.

The held-out picks are the forest's (ingest's spatially blocked hold-out, never seen by selection,
EM or the PDFs). The report is the shared one (:mod:`overseer.metrics`: accuracy, macro-F1, the
confusion matrix) of the most likely facies, plus what only probabilities have: log-loss, the Brier
score and a reliability diagram (:func:`overseer.metrics.probability_scores`). On the synthetic
survey the most likely facies of every voxel is also scored against the true facies model.

With nothing held out (``holdout.fraction: 0``) the report is a blocked cross-validation of the
supervised part: the map (EM) never sees a label, so each fold recomputes only the facies PDFs from
the other folds' picks (:meth:`GTMClassifier.with_pdfs_from`) and scores its own — exactly what
refitting would give, at the cost of one projection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from overseer.io import read_json
from overseer.metrics import ClassificationReport, ProbabilityScores, classification_report, probability_scores
from overseer.plots import plot_reliability
from overseer.seismic.data.volumes import load_volumes
from overseer.seismic.evaluate import HELD_OUT, row_ids
from overseer.seismic.forest import make_folds, spatial_groups
from overseer.seismic.model_io import load_model

#: the numbers shown side by side with the forest's (metrics.json keys: report, probabilities, recovery)
COMPARED = ("accuracy", "macro_f1", "log_loss", "brier", "ece", "volume_accuracy", "volume_macro_f1")
CV_FOLDS, CV_BLOCK_SIZE, CV_SEED = (
    5,
    8,
    0,
)  # as train_rf's defaults: 5 folds of 8 × 8 inline/crossline blocks (or wells)


@dataclass
class GtmEvaluation:
    """What :func:`evaluate_gtm` returns: the report of the most likely facies, the probabilities'
    scores, the truth recovery (synthetic survey), the comparison with the forest and the other files."""

    report: ClassificationReport
    scores: ProbabilityScores
    recovery: dict[str, float]
    versus_forest: pd.DataFrame  # index: COMPARED, columns gtm, forest
    evaluation: str
    undefined: int  # held-out rows with an undefined attribute (no probability; left out of the report)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """``metrics.json``, numbers only: the report's summary, the probabilities' scores, the recovery
        and the comparison with the forest."""
        versus = {m: {k: _number(v) for k, v in row.items()} for m, row in self.versus_forest.iterrows()}
        return {
            **self.report.summary(), "probabilities": self.scores.summary(), "undefined_rows": self.undefined,
            **({"recovery": self.recovery} if self.recovery else {}), "versus_forest": versus,
        }  # fmt: skip

    def described(self) -> dict[str, Any]:
        """``evaluation.json``, beside ``metrics.json``: what was evaluated, in words."""
        return {"evaluation": self.evaluation}

    def summary_files(self) -> dict[str, dict[str, Any]]:
        """The evaluation folder's summaries by file name: ``metrics.json`` (numbers) and ``evaluation.json``."""
        return {"metrics.json": self.metrics(), "evaluation.json": self.described()}

    def flat_metrics(self) -> dict[str, float]:
        """MLflow metrics under the names every family's evaluate run uses (``eval_*``)."""
        out = self.report.flat_metrics("eval_")
        out.update({f"eval_{k}": v for k, v in {**self.scores.summary(), **self.recovery}.items()})
        return out


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def score_probabilities(
    proba: np.ndarray, table: pd.DataFrame, classes: np.ndarray, facies: Sequence[str], bins: int
) -> tuple[ClassificationReport, ProbabilityScores, int]:
    """(report, probability scores, undefined rows) of ``proba`` (rows of ``table``, columns ``classes``)."""
    defined = np.isfinite(proba).all(axis=1)
    proba, rows = proba[defined], table[defined]
    truth = rows["facies"].to_numpy(dtype=np.int64)
    predicted = classes[proba.argmax(axis=1)]
    report = classification_report(truth, predicted, facies, proba.max(axis=1), row_ids(rows))
    # columns for every facies (a facies without picks has probability 0), so labels are facies ids
    full = np.zeros((len(proba), len(facies)))
    full[:, classes] = proba
    return report, probability_scores(truth, full, bins), int((~defined).sum())


def cross_validated_probabilities(
    model: Any, table: pd.DataFrame, features: Sequence[str]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-fold probabilities of every training pick: per fold of inline × crossline blocks, the
    facies PDFs from the other folds' picks, the map unchanged (it was fitted without labels)."""
    x = table[list(features)].to_numpy(dtype=np.float64)
    y = table["facies"].to_numpy(dtype=np.int64)
    groups = spatial_groups(table, CV_BLOCK_SIZE)
    folds = make_folds(y, groups, CV_FOLDS, "blocked", CV_SEED)
    out = np.full((len(table), len(model.classes_)), np.nan)
    for train, test in folds:
        fold = model.with_pdfs_from(x[train], y[train])
        # a facies absent from a fold's training picks has no PDF there: probability 0 in that fold
        out[test] = 0.0
        out[np.ix_(test, np.searchsorted(model.classes_, fold.classes_))] = fold.predict_proba(x[test])
    by = "wells" if "well" in table.columns else f"{CV_BLOCK_SIZE} × {CV_BLOCK_SIZE} inline/crossline blocks"
    return out, {"grouped_by": by, "folds": len(folds), "seed": CV_SEED}


def evaluate_gtm(prepared: Path, model_dir: Path, forest_report: Path, cfg: Mapping[str, Any]) -> GtmEvaluation:
    """Score the trained GTM (``model_dir``: model.skops, config.json, volumes/) on the held-out picks
    (or, with none, by blocked CV of its PDFs), compare with the forest's report in ``forest_report``,
    and draw the reliability diagram and the probability slices."""
    meta, config = read_json(prepared / "meta.json"), read_json(model_dir / "config.json")
    model, features, facies = load_model(model_dir / "model.skops"), config["features"], meta["facies"]
    classes = np.asarray(model.classes_, dtype=np.int64)
    holdout = pd.read_parquet(prepared / "holdout.parquet")
    if holdout.empty:
        table = pd.read_parquet(prepared / "train.parquet")
        proba, cv = cross_validated_probabilities(model, table, features)
        label = f"blocked CV of the facies PDFs ({cv['folds']} folds of {cv['grouped_by']}; nothing held out)"
    else:
        table = holdout
        proba = model.predict_proba(holdout[list(features)].to_numpy(dtype=np.float32))
        label = HELD_OUT["wells" if "well" in holdout.columns else "picks"]
    report, scores, undefined = score_probabilities(proba, table, classes, facies, int(cfg["calibration_bins"]))
    artifacts: dict[str, Any] = {
        "reliability.png": plot_reliability(scores.reliability, "GTM: reliability of the most likely facies"),
        "reliability.csv": scores.reliability.to_csv(index=False),
    }
    recovery = (
        _volume_figures(prepared, model_dir / "volumes", meta, classes, cfg, artifacts) if meta["has_volumes"] else {}
    )
    ours = {"accuracy": report.accuracy, "macro_f1": report.macro["f1"], **scores.summary(), **recovery}
    versus = versus_forest(ours, forest_report)
    artifacts["versus_forest.csv"] = versus.to_csv()
    return GtmEvaluation(report, scores, recovery, versus, label, undefined, artifacts)


def versus_forest(ours: Mapping[str, float], forest_report: Path) -> pd.DataFrame:
    """The GTM's numbers beside the forest's (evaluate@rf's ``metrics.json`` and truth recovery)."""
    forest: dict[str, Any] = {}
    if (forest_report / "metrics.json").is_file():
        metrics = read_json(forest_report / "metrics.json")
        forest = {"accuracy": metrics.get("accuracy"), "macro_f1": (metrics.get("macro") or {}).get("f1"),
                  **(metrics.get("probabilities") or {})}  # fmt: skip
    if (forest_report / "facies_model_recovery.json").is_file():
        forest.update(read_json(forest_report / "facies_model_recovery.json"))
    rows = {m: {"gtm": ours.get(m, np.nan), "forest": forest.get(m, np.nan)} for m in COMPARED}
    frame = pd.DataFrame.from_dict(rows, orient="index").astype(float)
    frame.index.name = "metric"
    return frame


def _volume_figures(
    prepared: Path,
    volumes_dir: Path,
    meta: Mapping[str, Any],
    classes: np.ndarray,
    cfg: Mapping[str, Any],
    artifacts: dict[str, Any],
) -> dict[str, float]:
    """Add the probability slices (and, on the synthetic survey, the truth recovery) to ``artifacts``."""
    predicted = np.load(volumes_dir / "facies.npy", mmap_mode="r")
    probabilities = {
        meta["facies"][c]: np.load(volumes_dir / "probabilities" / f"probability_{c}.npy", mmap_mode="r")
        for c in classes
    }
    wanted = ["amplitude"] * meta["has_amplitude"] + ["true_facies"] * (meta["source"] == "synthetic")
    volumes, grid = load_volumes(prepared / "volumes", names=wanted)
    recovery: dict[str, float] = {}
    if "true_facies" in volumes:
        true, guess = np.asarray(volumes["true_facies"]).astype(np.int64).ravel(), np.asarray(predicted).ravel()
        defined = guess >= 0
        whole = classification_report(true[defined], guess[defined], meta["facies"])
        recovery = {"volume_accuracy": whole.accuracy, "volume_macro_f1": whole.macro["f1"]}
        artifacts["facies_model_recovery.json"] = recovery
    picks = pd.concat([pd.read_parquet(prepared / f) for f in ("train.parquet", "holdout.parquet")])
    picks = picks.assign(
        i=np.searchsorted(grid.inlines, picks["inline"]), x=np.searchsorted(grid.crosslines, picks["crossline"])
    )
    # by default the inline and the sample with the most picks: the slices show the picks beside the probabilities
    inline = _busiest(picks["i"], grid.shape[0]) if cfg["slice_inline"] is None else int(
        np.searchsorted(grid.inlines, cfg["slice_inline"])
    )  # fmt: skip
    sample = _busiest(picks["sample"], grid.shape[2]) if cfg["slice_sample"] is None else int(cfg["slice_sample"])
    artifacts["probability_slices.png"] = plot_probability_slices(
        volumes.get("amplitude"), predicted, probabilities, meta["facies"],
        {"inline": picks[picks["i"] == inline], "sample": picks[picks["sample"] == sample]},
        inline, sample, str(grid.inlines[inline]),
    )  # fmt: skip
    return recovery


def _busiest(index: pd.Series, size: int) -> int:
    """The index with the most picks (the middle one when there are none)."""
    return int(index.astype(int).value_counts().idxmax()) if len(index) else size // 2


def plot_probability_slices(
    amplitude: np.ndarray | None,
    facies_volume: np.ndarray,
    probabilities: Mapping[str, np.ndarray],
    facies: Sequence[str],
    picks: Mapping[str, pd.DataFrame],
    inline_index: int,
    sample_index: int,
    inline_label: str = "",
) -> plt.Figure:
    """Inline sections (top) and time slices (bottom) of amplitude with the picks on them (``picks``:
    ``"inline"`` rows with crossline index ``x`` and ``sample``, ``"sample"`` rows with inline index
    ``i`` and ``x``), the most likely facies, and each facies' probability (0..1, NaN undefined)."""
    columns = [("amplitude", amplitude)] * (amplitude is not None) + [("most likely facies", facies_volume)]
    columns += [(f"P({name})", volume) for name, volume in probabilities.items()]
    fig, axes = plt.subplots(2, len(columns), figsize=(3.6 * len(columns), 7.5), squeeze=False)
    cmap = plt.get_cmap("tab10", len(facies))
    for col, (name, volume) in enumerate(columns):
        if name == "amplitude":
            options: dict[str, Any] = {"cmap": "gray"}
        elif name == "most likely facies":
            options = {"cmap": cmap, "vmin": -0.5, "vmax": len(facies) - 0.5}
        else:
            options = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
        section = np.asarray(volume[inline_index], dtype=np.float32).T  # crossline × sample -> sample down
        time_slice = np.asarray(volume[:, :, sample_index], dtype=np.float32)
        if name == "most likely facies":
            section, time_slice = np.ma.masked_less(section, 0), np.ma.masked_less(time_slice, 0)
        axes[0, col].imshow(section, aspect="auto", **options)
        axes[0, col].set(title=f"{name}: inline {inline_label}", xlabel="crossline", ylabel="sample")
        image = axes[1, col].imshow(time_slice, **options)
        axes[1, col].set(title=f"{name}: sample {sample_index}", xlabel="crossline", ylabel="inline")
        if name == "amplitude":
            for ax, rows, (across, down) in ((axes[0, col], picks["inline"], ("x", "sample")),
                                             (axes[1, col], picks["sample"], ("x", "i"))):  # fmt: skip
                ax.scatter(rows[across], rows[down], c=[cmap(int(f)) for f in rows["facies"]], s=10,
                           edgecolors="white", linewidths=0.3)  # fmt: skip
        if name != "amplitude":
            bar = fig.colorbar(image, ax=axes[1, col], shrink=0.8)
            if name == "most likely facies":
                bar.set_ticks(range(len(facies)), labels=list(facies))
    return fig
