"""The study's report folder: summary, trial table and Optuna's three standard plots (matplotlib)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna

from overseer.io import atomic_dir, write_json

log = logging.getLogger(__name__)


def _plots() -> dict[str, Callable[[optuna.Study], Any]]:
    from optuna.visualization import matplotlib as vis

    return {
        "optimization_history": vis.plot_optimization_history,
        "param_importances": vis.plot_param_importances,
        "parallel_coordinate": vis.plot_parallel_coordinate,
    }


def write_study_report(study: optuna.Study, out_dir: Path, summary: Mapping[str, Any]) -> list[str]:
    """Write ``summary.json``, ``trials.csv`` and one PNG per plot into ``out_dir`` (atomically).

    Returns the plots that could not be drawn (parameter importances need at least two complete
    trials with differing values) — those are named in ``summary.json`` rather than failing the run.
    """
    skipped = []
    with atomic_dir(out_dir) as tmp:
        study.trials_dataframe().to_csv(tmp / "trials.csv", index=False)
        for name, plot in _plots().items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "experimental" warnings of optuna's matplotlib backend
                    axes = plot(study)
                figure = axes.ravel()[0].figure if hasattr(axes, "ravel") else axes.figure
                figure.set_size_inches(9, 5.5)
                figure.tight_layout()
                figure.savefig(tmp / f"{name}.png", dpi=110)
                plt.close(figure)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                log.warning("tuning report: no %s plot (%s)", name, exc)
                skipped.append(f"{name}: {exc}")
        write_json(tmp / "summary.json", {**summary, "plots_skipped": skipped})
    return skipped
