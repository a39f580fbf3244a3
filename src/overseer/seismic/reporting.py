"""What the seismic stages report: the selection summary (checked against a known truth when
there is one) and its figures — best distance vs. number of attributes, importance, slices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from overseer.plots import plt


def selection_summary(selector: Any, truth: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The selector's winners (eq. 8 per n, eq. 9 overall) and, for the synthetic survey, whether the
    winner is the planted informative set."""
    best = selector.best_per_n_
    summary: dict[str, Any] = {
        "best_combination": list(selector.best_combination_),
        "best_score": float(selector.best_score_),
        "n_selected": len(selector.best_combination_),
        "n_candidates": int(selector.n_features_in_),
        "combinations_evaluated": len(selector.scores_),
        "search": selector.search_,
        "best_per_n": [
            {"n": int(n), "combination": list(row["combination"]), "score": float(row["score"])}
            for n, row in best.iterrows()
        ],
        "warnings": list(selector.warnings_),
    }
    if truth and truth.get("informative"):
        informative = set(truth["informative"])
        chosen = set(selector.best_combination_)
        summary["truth"] = {
            "informative": sorted(informative),
            "uninformative": sorted(truth.get("uninformative", [])),
            "winner_is_informative_set": chosen == informative,
            "winner_within_informative": chosen <= informative,
            "uninformative_selected": sorted(chosen & set(truth.get("uninformative", []))),
        }
    return summary


def selection_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics.json`` beside ``selection.json``: the summary's numbers only (and its yes/no checks),
    what ``dvc metrics show`` and ``dvc exp show`` tabulate. The winner's attributes, the search
    kind and the warnings, in words, stay in ``selection.json``, which train_rf and train_gtm read."""
    out: dict[str, Any] = {
        key: summary[key] for key in ("best_score", "n_selected", "n_candidates", "combinations_evaluated")
    }
    out["exhaustive_search"] = summary["search"] == "exhaustive"
    out["n_warnings"] = len(summary["warnings"])
    if "truth" in summary:
        truth = summary["truth"]
        out["truth"] = {
            "winner_is_informative_set": truth["winner_is_informative_set"],
            "winner_within_informative": truth["winner_within_informative"],
            "n_uninformative_selected": len(truth["uninformative_selected"]),
        }
    return out


def plot_best_vs_n(summary: Mapping[str, Any]) -> plt.Figure:
    """Best average cumulative distance (eq. 8) per number of attributes; the eq. 9 winner marked."""
    rows = summary["best_per_n"]
    n = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n, [r["score"] for r in rows], marker="o")
    ax.scatter([summary["n_selected"]], [summary["best_score"]], s=120, facecolors="none", edgecolors="red", zorder=3)
    ax.set(title="Best attribute combination per size", xlabel="attributes n", ylabel="average cumulative distance")
    ax.set_xticks(n)
    return fig


def plot_importance(importance: pd.Series) -> plt.Figure:
    """Normalised Gini importance, largest first."""
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(importance) + 1.5))
    ordered = importance.sort_values()
    ax.barh(list(ordered.index), ordered.to_numpy())
    ax.set(title="Random-forest Gini importance (normalised)", xlabel="importance")
    return fig


def plot_cv(cv_summary: pd.DataFrame, scheme: str) -> plt.Figure:
    """Mean ± std cross-validated macro-F1 per tree count, naming the fold scheme."""
    fig, ax = plt.subplots(figsize=(5, 4))
    x = [str(i) for i in cv_summary.index]
    ax.bar(x, cv_summary["macro_f1_mean"], yerr=cv_summary["macro_f1_std"], capsize=4)
    ax.set(title=f"5-fold CV ({scheme} folds)", xlabel="trees", ylabel="macro F1", ylim=(0, 1))
    return fig


def plot_slices(
    amplitude: np.ndarray | None,
    panels: Mapping[str, np.ndarray],
    facies_names: Sequence[str],
    inline_index: int,
    sample_index: int,
    inline_label: str = "",
) -> plt.Figure:
    """An inline section (top row) and a time slice (bottom row) through amplitude and each facies
    volume of ``panels`` (predicted, and the true model when known), side by side."""
    columns = ([("amplitude", amplitude)] if amplitude is not None else []) + list(panels.items())
    fig, axes = plt.subplots(2, len(columns), figsize=(4 * len(columns), 7.5), squeeze=False)
    cmap = plt.get_cmap("tab10", len(facies_names))
    for col, (name, volume) in enumerate(columns):
        is_facies = name != "amplitude"
        options = {"cmap": cmap, "vmin": -0.5, "vmax": len(facies_names) - 0.5} if is_facies else {"cmap": "gray"}
        section = np.asarray(volume[inline_index]).T  # crossline × sample -> sample down
        axes[0, col].imshow(np.ma.masked_less(section, 0) if is_facies else section, aspect="auto", **options)
        axes[0, col].set(title=f"{name}: inline {inline_label}", xlabel="crossline", ylabel="sample")
        time_slice = np.asarray(volume[:, :, sample_index])
        image = axes[1, col].imshow(np.ma.masked_less(time_slice, 0) if is_facies else time_slice, **options)
        axes[1, col].set(title=f"{name}: sample {sample_index}", xlabel="crossline", ylabel="inline")
        if is_facies:
            bar = fig.colorbar(image, ax=axes[1, col], ticks=range(len(facies_names)))
            bar.ax.set_yticklabels(facies_names)
    return fig
