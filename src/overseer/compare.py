"""A static comparison report of tracked runs, for people who do not run an MLflow server.

``overseer compare`` reads the tracking store (see ``overseer.tracking``), selects the last N
finished runs per family of one stage (by default the ``evaluate@<model>`` runs, which carry the
held-out metrics) and writes one self-contained HTML file: the runs, the params (and input digests)
that differ between them, every metric with its delta against a baseline run, a bar chart of the
main metrics and the runs' confusion matrices side by side, each with the evaluation figures a
person looks at next (trackbed's most confident misclassifications, the seismic reliability diagram). Figures are
embedded as base64 PNG.

Runs are labelled by the pipeline execution they belong to (their parent run, see
``overseer.lineage``): a "pipeline" column and one line per pipeline listing its runs.
``--stage pipeline`` compares the parent runs themselves: training params beside held-out metrics.
``--stage all`` means every stage run, parent runs left out.

The logic is in pure functions (``select_runs``, ``params_that_differ``, ``metric_deltas``,
``render_html``) that take MLflow ``Run`` objects; ``compare`` wires them to a store and a file.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from overseer.errors import InputError
from overseer.io import atomic_file
from overseer.lineage import PARENT_TAG, PIPELINE_STAGE, PIPELINE_TAG
from overseer.tracking import FAMILIES, open_store

if TYPE_CHECKING:
    from overseer.tracking import MlflowClient, Run

DEFAULT_STAGE = "evaluate"
DEFAULT_LAST = 5
ALL_STAGES = "all"
CONFUSION_ARTIFACT = "confusion_matrix.csv"
# Figures an evaluate run logs that a person looks at beside the confusion matrix, with captions.
EVAL_FIGURES = {
    "misclassified.png": "most confident misclassifications",  # trackbed
    "reliability.png": "reliability of the probabilities",  # seismic forest/GTM held-out picks
}
# Metric names (or their ``<prefix>_`` endings) plotted as "main metrics", in this order.
MAIN_METRICS = (
    "accuracy", "macro_f1", "weighted_f1", "categorical_accuracy", "macro_precision", "macro_recall",
    "voice_f1", "chord_f1", "acc_staff", "acc_spelling", "acc_duration",  # engraving (paper Table 1)
)  # fmt: skip
MAX_PLOTTED = 8
# Tags whose differences explain a change as much as params do (evaluate runs carry only the
# evaluate params: a retrained model shows up as a different input digest).
EXPLAINING_TAGS = ("git.commit", "dvc.experiment")
INPUT_TAG_PREFIX = "input.md5."
_STAGE_PATTERN = re.compile(r"^[\w@.\-]+$")


@dataclass
class FamilyComparison:
    """The selected runs of one family (oldest first), the baseline and each run's confusion matrix.

    ``confusions`` maps run id to the logged matrix, or to a short reason why there is none.
    """

    family: str
    runs: list[Run]
    baseline_id: str
    confusions: dict[str, pd.DataFrame | str] = field(default_factory=dict)
    figures: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> EVAL_FIGURES name -> data URI
    pipelines: dict[str, str] = field(default_factory=dict)  # pipeline run id -> its run name


def stage_matches(tag: str | None, stage: str | None) -> bool:
    """Whether a run's ``overseer.stage`` tag is ``stage``: ``evaluate`` matches ``evaluate@cnn``,
    ``evaluate@cnn`` matches only itself; a None stage matches every run."""
    if stage is None:
        return True
    if tag is None:
        return False
    return tag == stage or tag.split("@", 1)[0] == stage


def run_family(run: Run) -> str:
    """The family tag ``stage_run`` sets (empty when a run was not logged by a stage)."""
    return run.data.tags.get("overseer.family", "")


def pipeline_of(run: Run) -> str | None:
    """The run id of the pipeline execution ``run`` belongs to: its parent's, its own for a parent
    (pipeline) run, None for a run outside any pipeline."""
    tags = run.data.tags
    if tags.get("overseer.stage") == PIPELINE_STAGE:
        return run.info.run_id
    return tags.get(PARENT_TAG) if tags.get(PIPELINE_TAG) else None


def pipeline_names(client: MlflowClient, runs: Iterable[Run]) -> dict[str, str]:
    """Pipeline run id -> its run name, for the pipelines of ``runs`` (the short id where the parent
    run cannot be read, e.g. deleted)."""
    names: dict[str, str] = {}
    by_id = {r.info.run_id: r for r in runs}
    for pipeline in dict.fromkeys(p for p in map(pipeline_of, by_id.values()) if p):
        try:
            parent = by_id.get(pipeline) or client.get_run(pipeline)
            names[pipeline] = parent.info.run_name or pipeline[:8]
        except Exception:  # noqa: BLE001 - a missing parent only loses its name
            names[pipeline] = pipeline[:8]
    return names


def select_runs(
    client: MlflowClient,
    families: Iterable[str] | None = None,
    last: int = DEFAULT_LAST,
    stage: str | None = DEFAULT_STAGE,
) -> dict[str, list[Run]]:
    """The last ``last`` FINISHED runs of ``stage`` per family, oldest first, keyed by family.

    ``families`` defaults to all of ``overseer.tracking.FAMILIES``; families without matching runs
    are left out. ``stage`` None selects runs of every stage (not the pipeline parent runs; ``stage``
    ``"pipeline"`` selects those). Raises ``InputError`` for an unknown
    family, a bad ``last``/``stage``, or when no run matches at all.
    """
    wanted = list(families) if families else list(FAMILIES)
    for family in wanted:
        if family not in FAMILIES:
            raise InputError(f"unknown family {family!r} (families: {', '.join(FAMILIES)})")
    if last < 1:
        raise InputError(f"--last must be at least 1, not {last}")
    if stage is not None and not _STAGE_PATTERN.match(stage):
        raise InputError(f"bad stage name {stage!r} (e.g. evaluate, evaluate@cnn, train_rf)")
    selected: dict[str, list[Run]] = {}
    for family in wanted:
        experiment = client.get_experiment_by_name(family)
        if experiment is None:
            continue
        runs = _latest_runs(client, experiment.experiment_id, stage, last)
        if runs:
            selected[family] = sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))
    if not selected:
        what = "runs of any stage" if stage is None else f"{stage!r} runs"
        raise InputError(f"no finished {what} of {', '.join(wanted)} in the tracking store")
    return selected


def _latest_runs(client: MlflowClient, experiment_id: str, stage: str | None, last: int) -> list[Run]:
    """Newest first, up to ``last`` finished runs whose stage tag matches (page by page)."""
    filters = ["attributes.status = 'FINISHED'"]
    if stage is not None:
        # LIKE narrows the search on the server; stage_matches decides ('_' is a LIKE wildcard)
        filters.append(f"tags.`overseer.stage` LIKE '{stage.split('@', 1)[0]}%'")
    found: list[Run] = []
    token = None
    while len(found) < last:
        page = client.search_runs(
            [experiment_id],
            filter_string=" and ".join(filters),
            order_by=["attributes.start_time DESC"],
            max_results=max(50, last),
            page_token=token,
        )
        found.extend(
            r
            for r in page
            if stage_matches(r.data.tags.get("overseer.stage"), stage)
            and (stage is not None or r.data.tags.get("overseer.stage") != PIPELINE_STAGE)
        )
        token = page.token
        if not token:
            break
    return found[:last]


def _artifact_paths(client: MlflowClient, run_id: str, names: Iterable[str]) -> dict[str, str]:
    """Artifact path of each of ``names`` the run logged at its root or one folder down (e.g. ``eval/``)."""
    wanted, found = set(names), {}
    entries = client.list_artifacts(run_id)
    files = [e.path for e in entries if not e.is_dir]
    for entry in (e for e in entries if e.is_dir):
        files.extend(e.path for e in client.list_artifacts(run_id, entry.path) if not e.is_dir)
    for path in sorted(files):
        if Path(path).name in wanted:
            found.setdefault(Path(path).name, path)
    return found


def _listed(client: MlflowClient, run_id: str) -> dict[str, str] | None:
    """The run's confusion matrix and evaluation figures, listed once; None when listing fails (each
    fetch then says why for itself)."""
    try:
        return _artifact_paths(client, run_id, [CONFUSION_ARTIFACT, *EVAL_FIGURES])
    except Exception:  # noqa: BLE001 - the fetches report an unreadable store per run
        return None


def fetch_confusion(
    client: MlflowClient, run: Run, workdir: str | os.PathLike, paths: Mapping[str, str] | None = None
) -> pd.DataFrame | str:
    """The run's logged ``confusion_matrix.csv`` (at the artifact root or one folder down, e.g.
    ``eval/``) as a frame (rows true, columns predicted), or the reason there is none. ``paths``:
    the run's artifacts already listed (:func:`_artifact_paths`)."""
    run_id = run.info.run_id
    try:
        paths = _artifact_paths(client, run_id, [CONFUSION_ARTIFACT]) if paths is None else paths
        path = paths.get(CONFUSION_ARTIFACT)
        if path is None:
            return "not logged"
        local = client.download_artifacts(run_id, path, dst_path=str(Path(workdir) / run_id))
        return pd.read_csv(local, index_col=0)
    except Exception as exc:  # noqa: BLE001 - one unreadable artifact must not stop the report
        return f"could not be read ({type(exc).__name__}: {exc})"


def fetch_figures(
    client: MlflowClient, run: Run, workdir: str | os.PathLike, paths: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The run's logged :data:`EVAL_FIGURES` as ``data:`` URIs (those it has; none when unreadable)."""
    run_id = run.info.run_id
    try:
        paths = _artifact_paths(client, run_id, EVAL_FIGURES) if paths is None else paths
        out = {}
        for name, path in ((n, p) for n, p in paths.items() if n in EVAL_FIGURES):
            local = client.download_artifacts(run_id, path, dst_path=str(Path(workdir) / run_id))
            out[name] = "data:image/png;base64," + base64.b64encode(Path(local).read_bytes()).decode("ascii")
        return out
    except Exception:  # noqa: BLE001 - a figure is an extra: the report goes on without it
        return {}


def build_comparisons(
    client: MlflowClient, selected: Mapping[str, Sequence[Run]], baseline: str | None = None
) -> list[FamilyComparison]:
    """One ``FamilyComparison`` per selected family, with confusion matrices fetched.

    ``baseline`` is a run id (or a unique prefix of a selected run's id); its family compares
    against it (it is added to that family's runs when not selected), the others against their
    oldest run.
    """
    groups = {family: list(runs) for family, runs in selected.items()}
    baseline_ids = {family: runs[0].info.run_id for family, runs in groups.items()}
    if baseline:
        run = _find_baseline(client, groups, baseline)
        family = run_family(run) or client.get_experiment(run.info.experiment_id).name
        if family not in groups:
            raise InputError(
                f"baseline run {baseline} is a {family or 'untagged'} run, not among the compared families"
            )
        if all(r.info.run_id != run.info.run_id for r in groups[family]):
            groups[family].insert(0, run)
        baseline_ids[family] = run.info.run_id
    comparisons = []
    with tempfile.TemporaryDirectory(prefix="overseer-compare-") as work, _no_progress_bars():
        for family, runs in groups.items():
            listed = {r.info.run_id: _listed(client, r.info.run_id) for r in runs}  # one listing per run
            confusions = {r.info.run_id: fetch_confusion(client, r, work, listed[r.info.run_id]) for r in runs}
            figures = {r.info.run_id: fetch_figures(client, r, work, listed[r.info.run_id]) for r in runs}
            pipelines = pipeline_names(client, runs)
            comparisons.append(FamilyComparison(family, runs, baseline_ids[family], confusions, figures, pipelines))
    return comparisons


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar per artifact download; a report of many runs does not need them."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _find_baseline(client: MlflowClient, groups: Mapping[str, Sequence[Run]], baseline: str) -> Run:
    matches = [r for runs in groups.values() for r in runs if r.info.run_id.startswith(baseline)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InputError(f"baseline {baseline!r} matches several runs: give more of the run id")
    try:
        return client.get_run(baseline)
    except Exception as exc:  # MlflowException: unknown id
        raise InputError(f"no run {baseline!r} in the tracking store to use as baseline") from exc


# -- tables -------------------------------------------------------------------------------------


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Column labels that tell runs apart: ``#1 1a2b3c4d`` (position, then the run id's start)."""
    return [f"#{i} {run.info.run_id[:8]}" for i, run in enumerate(runs, start=1)]


def _split_values(mappings: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    names = sorted(set().union(*mappings)) if mappings else []
    differ, same = [], {}
    for name in names:
        values = [m.get(name) for m in mappings]
        if all(v == values[0] for v in values) and values[0] is not None:
            same[name] = values[0]
        else:
            differ.append(pd.Series(values, index=list(labels), name=name, dtype=object))
    frame = pd.DataFrame(differ, columns=list(labels), dtype=object)
    frame.index.name = "param"
    return frame, same


def params_that_differ(runs: Sequence[Run]) -> pd.DataFrame:
    """Params whose values are not the same in every run: one row per param, one column per run
    (``run_labels``), None where a run did not log the param."""
    return _split_values([r.data.params for r in runs], run_labels(runs))[0]


def identical_params(runs: Sequence[Run]) -> dict[str, str]:
    """Params every run logged with the same value, name -> value."""
    return _split_values([r.data.params for r in runs], run_labels(runs))[1]


def tags_that_differ(runs: Sequence[Run]) -> pd.DataFrame:
    """Like ``params_that_differ`` for the git commit, DVC experiment and input digests."""
    wanted = [
        {k: v for k, v in r.data.tags.items() if k in EXPLAINING_TAGS or k.startswith(INPUT_TAG_PREFIX)} for r in runs
    ]
    return _split_values(wanted, run_labels(runs))[0]


def main_metrics(names: Iterable[str]) -> list[str]:
    """The headline metrics among ``names``: ``accuracy``, ``macro_f1``, ... and prefixed forms
    (``eval_accuracy``, ``cv_macro_f1``, ``volume_accuracy``), in ``MAIN_METRICS`` order."""
    names = list(dict.fromkeys(names))
    out = []
    for base in MAIN_METRICS:
        out.extend(n for n in sorted(names) if (n == base or n.endswith(f"_{base}")) and n not in out)
    return out


def metric_deltas(runs: Sequence[Run], baseline: Run | str) -> pd.DataFrame:
    """Every metric of every run and its difference from the baseline run's value.

    Rows: metric names, the ``main_metrics`` first, then the rest sorted. Columns: a MultiIndex of
    (run label, ``"value"`` | ``"delta"``), labels from ``run_labels``; NaN where a run (or the
    baseline) lacks the metric; the baseline's own deltas are 0.
    """
    baseline_id = baseline if isinstance(baseline, str) else baseline.info.run_id
    ids = [r.info.run_id for r in runs]
    if baseline_id not in ids:
        raise InputError(f"baseline run {baseline_id} is not among the compared runs")
    names = sorted(set().union(*(r.data.metrics for r in runs))) if runs else []
    main = main_metrics(names)
    order = main + [n for n in names if n not in main]
    base = runs[ids.index(baseline_id)].data.metrics
    columns = {}
    for label, run in zip(run_labels(runs), runs, strict=True):
        values = np.array([run.data.metrics.get(n, np.nan) for n in order], dtype=float)
        reference = np.array([base.get(n, np.nan) for n in order], dtype=float)
        columns[(label, "value")] = values
        columns[(label, "delta")] = values - reference
    frame = pd.DataFrame(columns, index=pd.Index(order, name="metric"))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["run", "kind"])
    return frame


# -- figures ------------------------------------------------------------------------------------


def _png(fig: plt.Figure, dpi: int = 100) -> str:
    """The figure as a ``data:`` URI, closed afterwards."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def metrics_figure(deltas: pd.DataFrame, metrics: Sequence[str]) -> str | None:
    """Grouped bars: one group per run, one bar per metric; None when there is nothing to plot."""
    metrics = [m for m in metrics if m in deltas.index][:MAX_PLOTTED]
    if not metrics:
        return None
    labels = list(dict.fromkeys(deltas.columns.get_level_values("run")))
    width = 0.8 / len(metrics)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels) + 3), 4))
    for i, metric in enumerate(metrics):
        values = [deltas.loc[metric, (label, "value")] for label in labels]
        ax.bar(x + (i - (len(metrics) - 1) / 2) * width, values, width=width, label=metric)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set(title="Main metrics per run", ylabel="value")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)


def confusion_figure(frame: pd.DataFrame, title: str) -> str:
    """Heatmap of one confusion matrix (counts, rows true, columns predicted) as a data URI."""
    counts = frame.to_numpy(dtype=float)
    rows, cols = [str(i) for i in frame.index], [str(c) for c in frame.columns]
    fig, ax = plt.subplots(figsize=(0.42 * len(cols) + 1.9, 0.4 * len(rows) + 1.7))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(len(rows)), rows, fontsize="small")
    ax.set(title=title, xlabel="Predicted", ylabel="True")
    threshold = np.nanmax(counts) / 2 if counts.size else 0
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            value = counts[i, j]
            text = "" if math.isnan(value) else f"{value:g}"
            ax.text(j, i, text, ha="center", va="center", fontsize="small",
                    color="white" if value > threshold else "black")  # fmt: skip
    return _png(fig, dpi=90)


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem 2rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2.2rem; border-bottom: 2px solid #ddd; } h3 { margin-top: 1.4rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.main td, tr.main th { font-weight: 600; } tr.baseline td { background: #fffbe6; }
.better { color: #137333; } .worse { color: #b3261e; } .muted { color: #888; }
.meta { color: #555; font-size: 0.9rem; }
.matrices { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.matrices figure { margin: 0; text-align: center; }
.matrices .missing { border: 1px dashed #bbb; padding: 2rem 1.5rem; color: #888; min-width: 10rem; }
figcaption { font-size: 0.8rem; color: #444; }
code { font-size: 0.85em; }
"""

LOWER_IS_BETTER = ("loss", "error", "seconds")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer() and abs(number) < 1e12:
            return str(int(number))
        return f"{number:.4f}" if abs(number) < 1000 else f"{number:.4g}"
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], row_classes: Sequence[str] = ()) -> str:
    """An HTML table from already-escaped cell HTML."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for i, cells in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _time(ms: int | None) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(run: Run) -> str:
    if not run.info.start_time or not run.info.end_time:
        return "—"
    seconds = (run.info.end_time - run.info.start_time) / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _pipeline_cell(comparison: FamilyComparison, run: Run) -> str:
    pipeline = pipeline_of(run)
    if pipeline is None:
        return "<td class='muted'>—</td>"
    name = comparison.pipelines.get(pipeline, pipeline[:8])
    return f"<td title='{_e(pipeline)}'>{_e(name)}</td>"


def _pipelines_line(comparison: FamilyComparison) -> str:
    """One entry per pipeline execution: its name and the runs (by ``#``) of this table in it."""
    groups: dict[str, list[str]] = {}
    for label, run in zip(run_labels(comparison.runs), comparison.runs, strict=True):
        pipeline = pipeline_of(run)
        if pipeline is not None:
            groups.setdefault(pipeline, []).append(label.split()[0])
    if not groups:
        return ""
    items = "".join(
        f"<li><code>{_e(comparison.pipelines.get(p, p[:8]))}</code> ({_e(p[:8])}): {_e(', '.join(members))}</li>"
        for p, members in groups.items()
    )
    noun = "pipeline execution" if len(groups) == 1 else "pipeline executions"
    return f"<p class='meta'>{len(groups)} {noun} (parent runs):</p><ul class='meta'>{items}</ul>"


def _runs_section(comparison: FamilyComparison) -> str:
    headers = [
        "#", "run name", "pipeline", "run id", "stage", "start", "duration", "git commit", "dvc experiment", "status",
    ]  # fmt: skip
    rows, classes = [], []
    for label, run in zip(run_labels(comparison.runs), comparison.runs, strict=True):
        tags = run.data.tags
        is_base = run.info.run_id == comparison.baseline_id
        rows.append(
            [
                f"<td>{_e(label.split()[0])}{' (baseline)' if is_base else ''}</td>",
                f"<td>{_e(run.info.run_name)}</td>",
                _pipeline_cell(comparison, run),
                f"<td><code>{_e(run.info.run_id)}</code></td>",
                f"<td>{_e(tags.get('overseer.stage', '—'))}</td>",
                f"<td>{_e(_time(run.info.start_time))}</td>",
                f"<td class='num'>{_e(_duration(run))}</td>",
                f"<td><code>{_e(tags.get('git.commit', '—')[:8])}</code></td>",
                f"<td>{_e(tags.get('dvc.experiment', '—'))}</td>",
                f"<td>{_e(run.info.status)}</td>",
            ]
        )
        classes.append("baseline" if is_base else "")
    return "<h3>Runs</h3>" + _table(headers, rows, classes) + _pipelines_line(comparison)


def _values_table(frame: pd.DataFrame, first_header: str, shorten: int = 0) -> str:
    """Name rows against run columns; ``shorten`` cuts long values (digests) to that many
    characters, the whole value in the cell's tooltip."""

    def cell(value: object) -> str:
        text = _fmt(value)
        if shorten and len(text) > shorten:
            return f"<td title='{_e(text)}'><code>{_e(text[:shorten])}…</code></td>"
        return f"<td>{_e(text)}</td>"

    headers = [_e(first_header), *(_e(c) for c in frame.columns)]
    rows = [
        [f"<th>{_e(name)}</th>", *(cell(v) for v in row)]
        for name, row in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]
    return _table(headers, rows)


def _params_section(runs: Sequence[Run]) -> str:
    differ, same = _split_values([r.data.params for r in runs], run_labels(runs))
    parts = ["<h3>Params that differ</h3>"]
    if differ.empty:
        parts.append("<p class='muted'>All runs logged the same params.</p>")
    else:
        parts.append(_values_table(differ, "param"))
    items = "".join(f"<li><code>{_e(k)}</code> = {_e(v)}</li>" for k, v in same.items())
    noun = "param" if len(same) == 1 else "params"
    parts.append(f"<details><summary>{len(same)} {noun} identical in every run</summary><ul>{items}</ul></details>")
    tags = tags_that_differ(runs)
    if not tags.empty:
        parts.append("<h3>Commit, experiment and input data that differ</h3>")
        parts.append(_values_table(tags, "tag", shorten=12))
    return "".join(parts)


def _delta_cell(metric: str, delta: float, is_base: bool) -> str:
    if is_base:
        return "<td class='num muted'>baseline</td>"
    if math.isnan(delta):
        return "<td class='num muted'>—</td>"
    lower_better = any(word in metric for word in LOWER_IS_BETTER)
    cls = "" if delta == 0 else ("better" if (delta > 0) != lower_better else "worse")
    return f"<td class='num {cls}'>{delta:+.4f}</td>"


def _metrics_section(comparison: FamilyComparison) -> str:
    runs = comparison.runs
    deltas = metric_deltas(runs, comparison.baseline_id)
    if deltas.empty:
        return "<h3>Metrics</h3><p class='muted'>No metrics logged.</p>"
    labels = run_labels(runs)
    base_label = labels[[r.info.run_id for r in runs].index(comparison.baseline_id)]
    main = set(main_metrics(deltas.index))
    headers = ["metric"]
    for label in labels:
        headers += [_e(label), f"Δ {_e(label)}" if label != base_label else "Δ"]
    rows, classes = [], []
    for metric in deltas.index:
        cells = [f"<th>{_e(metric)}</th>"]
        for label in labels:
            cells.append(f"<td class='num'>{_e(_fmt(deltas.loc[metric, (label, 'value')]))}</td>")
            cells.append(_delta_cell(metric, deltas.loc[metric, (label, "delta")], label == base_label))
        rows.append(cells)
        classes.append("main" if metric in main else "")
    parts = [
        f"<h3>Metrics (Δ against the baseline {_e(base_label)})</h3>",
        _table(headers, rows, classes),
    ]
    figure = metrics_figure(deltas, main_metrics(deltas.index))
    if figure:
        parts.append(f"<h3>Main metrics</h3><img alt='main metrics per run' src='{figure}'>")
    return "".join(parts)


def _confusion_section(comparison: FamilyComparison) -> str:
    logged = any(isinstance(c, pd.DataFrame) for c in comparison.confusions.values())
    if not logged and not any(comparison.figures.values()):
        return "<h3>Confusion matrices</h3><p class='muted'>No run logged a confusion matrix.</p>"
    figures = []
    for label, run in zip(run_labels(comparison.runs), comparison.runs, strict=True):
        found = comparison.confusions.get(run.info.run_id, "not logged")
        if isinstance(found, pd.DataFrame):
            src = confusion_figure(found, label)
            figures.append(f"<figure><img alt='confusion matrix {_e(label)}' src='{src}'>"
                           f"<figcaption>{_e(label)}</figcaption></figure>")  # fmt: skip
        else:
            figures.append(f"<figure><div class='missing'>{_e(found)}</div>"
                           f"<figcaption>{_e(label)}: confusion matrix {_e(found)}</figcaption></figure>")  # fmt: skip
        for name, caption in EVAL_FIGURES.items():
            if name in comparison.figures.get(run.info.run_id, {}):
                src = comparison.figures[run.info.run_id][name]
                figures.append(f"<figure><img alt='{_e(caption)} {_e(label)}' src='{src}'>"
                               f"<figcaption>{_e(label)}: {_e(caption)}</figcaption></figure>")  # fmt: skip
    return "<h3>Confusion matrices</h3><div class='matrices'>" + "".join(figures) + "</div>"


def render_html(
    comparisons: Sequence[FamilyComparison],
    *,
    source: str = "",
    stage: str | None = DEFAULT_STAGE,
    last: int | None = None,
    generated: datetime | None = None,
) -> str:
    """The whole report as one self-contained HTML page (figures inlined, every value escaped)."""
    when = (generated or datetime.now(tz=UTC)).strftime("%Y-%m-%d %H:%M UTC")
    selection = f"stage {stage!r}" if stage else "all stages"
    if last:
        selection = f"last {last} finished runs per family, {selection}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Overseer run comparison</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Overseer run comparison</h1>",
        f"<p class='meta'>Store <code>{_e(source)}</code> · {_e(selection)} · generated {_e(when)}</p>",
    ]
    if comparisons:
        links = " · ".join(f"<a href='#{_e(c.family)}'>{_e(c.family)}</a> ({len(c.runs)} runs)" for c in comparisons)
        parts.append(f"<p>{links}</p>")
    for comparison in comparisons:
        parts.append(f"<section id='{_e(comparison.family)}'><h2>{_e(comparison.family)}</h2>")
        parts.append(_runs_section(comparison))
        parts.append(_params_section(comparison.runs))
        parts.append(_metrics_section(comparison))
        parts.append(_confusion_section(comparison))
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(text: str, out: str | os.PathLike) -> Path:
    """Write the page atomically (a reader never sees half a file)."""
    with atomic_file(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)


def compare(
    out: str | os.PathLike = "reports/compare/index.html",
    *,
    tracking_uri: str | None = None,
    families: Iterable[str] | None = None,
    last: int = DEFAULT_LAST,
    stage: str | None = DEFAULT_STAGE,
    baseline: str | None = None,
) -> Path:
    """Select runs from the store, build the comparison and write it to ``out``; return the path."""
    client, uri = open_store(tracking_uri)
    selected = select_runs(client, families, last, stage)
    comparisons = build_comparisons(client, selected, baseline)
    return write_html(render_html(comparisons, source=uri, stage=stage, last=last), out)
