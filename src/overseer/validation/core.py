"""Family-independent Great Expectations runner: one table, one suite, readable failures.

Everything is built in code on an ephemeral GX context (no ``gx/`` project folder on disk): a
pandas data source, a dataframe asset, a whole-dataframe batch definition and an
``ExpectationSuite`` of the given ``great_expectations.expectations`` objects. Results are
requested as ``COMPLETE`` with ``unexpected_index_column_names`` so that each failing row is named
by its id columns (for TFRecords: ``file`` and ``record``).

GX quirks handled here:

* pandas nullable dtypes (``Int64``, ``string``) are converted to ``object`` columns holding
  ``None`` before validation, because GX's pandas map metrics call ``bool()`` on ``pd.NA``
  (``expect_column_pair_values_to_be_equal`` raises "boolean value of NA is ambiguous");
* GX skips nulls in most column expectations, so callers must add explicit not-null expectations;
* an expectation whose metric raises is reported as failed with the exception message, never
  silently passed;
* GX's "Calculating Metrics" progress bars are switched off through the context config and its
  loggers and warnings are kept quiet; ``great_expectations`` is imported lazily (about 3 s).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overseer.errors import InputError
from overseer.io import write_json, write_text

MAX_ROWS = 20  # unexpected rows kept per failed expectation
# kwargs worth showing in a one-line description of an expectation (besides its columns)
_SHOWN_KWARGS = ("min_value", "max_value", "strict_min", "strict_max", "value_set", "mostly", "value")
_COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
_HIDDEN_KWARGS = ("batch_id", "result_format", "catch_exceptions", "meta", "notes", "rendered_content")


@dataclass
class Check:
    """One expectation of a suite and how it went: a line of the report's summary table."""

    expectation: str
    description: str
    success: bool
    unexpected_count: int | None = None
    exception: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {
            "expectation": self.expectation,
            "description": self.description,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "exception": self.exception,
        }


@dataclass
class Failure:
    """A failed expectation: what was expected, how often it failed and the first failing rows.

    ``rows`` holds up to ``MAX_ROWS`` dicts of the id columns plus the offending column values.
    ``exception`` is set when GX could not evaluate the expectation at all.
    """

    expectation: str
    description: str
    columns: list[str]
    kwargs: dict[str, Any]
    unexpected_count: int | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    observed_value: Any = None
    exception: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {
            "expectation": self.expectation,
            "description": self.description,
            "columns": list(self.columns),
            "kwargs": self.kwargs,
            "unexpected_count": self.unexpected_count,
            "observed_value": self.observed_value,
            "exception": self.exception,
            "rows": self.rows,
        }


@dataclass
class SuiteResult:
    """The outcome of one suite on one table.

    ``details`` is free-form, JSON-ready context the caller attaches (e.g. record counts); the
    report prints it. ``locate`` (optional) turns a failing row's id columns into the words that
    name it in messages and the Markdown report (default: ``<file>, record <n>``, see
    ``_location``); the JSON keeps the id columns as they are.
    """

    suite_name: str
    success: bool
    evaluated: int
    successful: int
    checks: list[Check] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    id_columns: tuple[str, ...] = ("file", "record")
    row_count: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    locate: Callable[[Mapping[str, Any]], str] | None = field(default=None, repr=False, compare=False)

    def where(self, row: Mapping[str, Any]) -> str:
        """The words naming a failing row (its file and record, or what ``locate`` says)."""
        return self.locate(row) if self.locate is not None else _location(row, self.id_columns)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {
            "suite_name": self.suite_name,
            "success": self.success,
            "evaluated_expectations": self.evaluated,
            "successful_expectations": self.successful,
            "row_count": self.row_count,
            "id_columns": list(self.id_columns),
            "checks": [check.to_dict() for check in self.checks],
            "failures": [failure.to_dict() for failure in self.failures],
            "details": _plain(self.details),
        }


class ValidationFailed(InputError):  # noqa: N818 (the name the stages and the docs use)
    """Raised when a validation suite failed; ``results`` holds every suite's outcome."""

    def __init__(self, message: str, results: Sequence[SuiteResult], report: Path | None = None):
        super().__init__(message)
        self.results = list(results)
        self.report = report


# --------------------------------------------------------------------------- running


def run_suite(
    table: pd.DataFrame,
    expectations: list,
    suite_name: str,
    id_columns: Sequence[str] = ("file", "record"),
    locate: Callable[[Mapping[str, Any]], str] | None = None,
) -> SuiteResult:
    """Validate ``table`` against ``expectations`` (GX expectation objects) as suite ``suite_name``.

    Failing rows are identified by ``id_columns``, which must be columns of ``table``; ``locate``
    (optional) words them for messages (see ``SuiteResult``). The given expectation objects are
    copied, so one list can be reused across runs.
    """
    id_columns = tuple(id_columns)
    missing = [col for col in id_columns if col not in table.columns]
    if missing:
        raise ValueError(f"suite {suite_name}: id columns {missing} not in table columns {list(table.columns)}")
    frame = _gx_frame(table)
    with _quiet_gx() as gx:
        context = gx.get_context(mode="ephemeral", project_config=_context_config())
        source = context.data_sources.add_pandas(name=f"{suite_name}_source")
        asset = source.add_dataframe_asset(name=f"{suite_name}_table")
        batch_definition = asset.add_batch_definition_whole_dataframe(name="whole_table")
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
        order: dict[str, int] = {}
        for index, expectation in enumerate(expectations):
            added = suite.add_expectation(expectation.copy(deep=True))
            order[str(added.id)] = index
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch_definition, suite=suite)
        )
        outcome = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": list(id_columns),
                "return_unexpected_index_query": False,
            },
        )
    results = sorted(outcome.results, key=lambda r: order.get(str(r.expectation_config.id), len(order)))
    checks: list[Check] = []
    failures: list[Failure] = []
    for item in results:
        check, failure = _convert(item, id_columns)
        checks.append(check)
        if failure is not None:
            failures.append(failure)
    successful = sum(check.success for check in checks)
    return SuiteResult(
        suite_name=suite_name,
        success=not failures,
        evaluated=len(checks),
        successful=successful,
        checks=checks,
        failures=failures,
        id_columns=id_columns,
        row_count=len(frame),
        locate=locate,
    )


@contextlib.contextmanager
def _quiet_gx() -> Iterator[Any]:
    """Import GX lazily and keep its loggers and warnings out of the user's console."""
    logger = logging.getLogger("great_expectations")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # GX's import chain and metrics raise Deprecation/Future warnings (e.g. ``sre_constants``)
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
        import great_expectations as gx

        yield gx


def gx_expectations() -> Any:
    """``great_expectations.expectations``, imported quietly (the first GX import takes ~3 s)."""
    with _quiet_gx():
        import great_expectations.expectations as gxe

    return gxe


def gx_column(name: str) -> Any:
    """A GX row-condition column (``gx_column("parse_error").is_null()``), imported quietly."""
    with _quiet_gx():
        from great_expectations.expectations.row_conditions import Column

    return Column(name)


def _context_config() -> Any:
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    return DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )


def _gx_frame(table: pd.DataFrame) -> pd.DataFrame:
    """A copy GX's pandas engine handles: nullable extension columns become object + None."""
    frame = table.reset_index(drop=True).copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.api.extensions.ExtensionDtype):
            values = frame[col].astype(object)
            frame[col] = values.where(values.notna(), None)
    return frame


def _convert(item: Any, id_columns: tuple[str, ...]) -> tuple[Check, Failure | None]:
    config = item.expectation_config
    kind = str(config.type)
    kwargs = {k: _plain(v) for k, v in dict(config.kwargs).items() if k not in _HIDDEN_KWARGS and v is not None}
    columns = _columns(kwargs)
    description = describe(kind, kwargs)
    result = dict(item.result or {})
    exception = _exception_message(item.exception_info)
    count = result.get("unexpected_count")
    count = None if count is None else int(count)
    success = bool(item.success) and exception is None
    check = Check(kind, description, success, count, exception)
    if success:
        return check, None
    rows = []
    for raw in (result.get("unexpected_index_list") or [])[:MAX_ROWS]:
        if isinstance(raw, Mapping):
            ordered = {col: raw.get(col) for col in id_columns if col in raw}
            ordered.update({k: v for k, v in raw.items() if k not in ordered})
            rows.append({k: _plain(v) for k, v in ordered.items()})
    failure = Failure(
        expectation=kind,
        description=description,
        columns=columns,
        kwargs=kwargs,
        unexpected_count=count,
        rows=rows,
        observed_value=_plain(result.get("observed_value")),
        exception=exception,
    )
    return check, failure


def _exception_message(info: Any) -> str | None:
    """The first raised exception in GX's ``exception_info`` (flat or keyed by metric id)."""
    if not info:
        return None
    if isinstance(info, Mapping) and "raised_exception" in info:
        candidates = [info]
    elif isinstance(info, Mapping):
        candidates = [v for v in info.values() if isinstance(v, Mapping)]
    else:
        return None
    for candidate in candidates:
        if candidate.get("raised_exception"):
            return str(candidate.get("exception_message") or "exception while computing metric")
    return None


def _columns(kwargs: Mapping[str, Any]) -> list[str]:
    columns: list[str] = []
    for key in _COLUMN_KWARGS:
        value = kwargs.get(key)
        if isinstance(value, str):
            columns.append(value)
        elif isinstance(value, list):
            columns.extend(str(v) for v in value)
    return columns


def describe(expectation: str, kwargs: Mapping[str, Any]) -> str:
    """``expect_x(col_a, col_b, min_value=0)``: an expectation in one line."""
    parts = _columns(kwargs)
    for key in _SHOWN_KWARGS:
        if key not in kwargs or kwargs[key] is None:
            continue
        value = kwargs[key]
        if key in ("strict_min", "strict_max") and not value:
            continue
        if key == "mostly" and value == 1:
            continue
        parts.append(f"{key}={_short(value)}")
    return f"{expectation}({', '.join(parts)})"


# --------------------------------------------------------------------------- formatting


def _short(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "{" + ", ".join(_short(v) for v in value) + "}"
    if isinstance(value, str):
        return value if len(value) <= 120 else value[:117] + "..."
    return repr(value) if value is None else str(value)


def _location(row: Mapping[str, Any], id_columns: Sequence[str]) -> str:
    parts = []
    for col in id_columns:
        if col not in row:
            continue
        value = row[col]
        if col == "file":
            parts.append(str(value))
        else:
            parts.append(f"{col} {_short(value)}")
    return ", ".join(parts)


def _row_values(row: Mapping[str, Any], id_columns: Sequence[str]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in row.items() if k not in id_columns)


def _row_line(failure: Failure, row: Mapping[str, Any], result: SuiteResult) -> str:
    values = _row_values(row, result.id_columns)
    line = f"{result.where(row)}: {failure.description} failed"
    return f"{line} ({values})" if values else line


def _failure_lines(result: SuiteResult) -> list[str]:
    lines: list[str] = []
    for failure in result.failures:
        if failure.exception is not None:
            lines.append(f"{result.suite_name}: {failure.description} could not be evaluated ({failure.exception})")
            continue
        if not failure.rows:
            observed = "" if failure.observed_value is None else f" (observed {_short(failure.observed_value)})"
            lines.append(f"{result.suite_name}: {failure.description} failed{observed}")
            continue
        lines.extend(_row_line(failure, row, result) for row in failure.rows)
        hidden = (failure.unexpected_count or 0) - len(failure.rows)
        if hidden > 0:
            lines.append(f"... and {hidden} more rows failing {failure.description}")
    return lines


def format_failures(result: SuiteResult | Sequence[SuiteResult], limit: int = 10) -> str:
    """Human lines, one per failing row: ``<file>, record <n>: <expectation>(<cols>) failed (<values>)``.

    At most ``limit`` lines, then a count of the rest. Empty string when nothing failed.
    """
    results = [result] if isinstance(result, SuiteResult) else list(result)
    lines = [line for res in results for line in _failure_lines(res)]
    if len(lines) > limit:
        rest = len(lines) - limit
        lines = [*lines[:limit], f"... ({rest} more lines; see the validation report)"]
    return "\n".join(lines)


def raise_for_failures(results: Sequence[SuiteResult], report: Path | None = None, limit: int = 10) -> None:
    """Raise ``ValidationFailed`` listing file, record and expectation of the failures, if any."""
    failed = [res for res in results if not res.success]
    if not failed:
        return
    n_failed = sum(len(res.failures) for res in failed)
    names = ", ".join(res.suite_name for res in failed)
    message = f"data validation failed: {n_failed} expectation(s) failed in suite(s) {names}\n"
    message += format_failures(failed, limit=limit)
    if report is not None:
        message += f"\nfull report: {os.fspath(report)}"
    raise ValidationFailed(message, results, report)


# --------------------------------------------------------------------------- report


def _md(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    else:
        text = value if isinstance(value, str) else _short(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _details_markdown(details: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for key, value in details.items():
        if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) for v in value.values()):
            cols: list[str] = []
            for inner in value.values():
                cols.extend(c for c in inner if c not in cols)
            lines += [f"**{key}**", "", "| | " + " | ".join(_md(c) for c in cols) + " |"]
            lines.append("|---" * (len(cols) + 1) + "|")
            for row_key, inner in value.items():
                lines.append(f"| {_md(row_key)} | " + " | ".join(_md(inner.get(c, "")) for c in cols) + " |")
            lines.append("")
        elif isinstance(value, Mapping):
            lines += [f"**{key}**", "", "| | value |", "|---|---|"]
            lines += [f"| {_md(k)} | {_md(v)} |" for k, v in value.items()]
            lines.append("")
        else:
            lines += [f"**{key}**: {_md(value)}", ""]
    return lines


def report_markdown(
    results: Sequence[SuiteResult],
    title: str,
    notes: Sequence[str] = (),
    summary: Mapping[str, Any] | None = None,
) -> str:
    """The Markdown report: overall summary, then per suite a table, the failing rows and details."""
    passed = all(res.success for res in results) and not notes
    total = sum(res.evaluated for res in results)
    ok = sum(res.successful for res in results)
    lines = [
        f"# {title}",
        "",
        f"**Result: {'PASSED' if passed else 'FAILED'}** ({ok} of {total} expectations passed)",
        "",
    ]
    for note in notes:
        lines += [f"> {note}", ""]
    if summary:
        lines += ["## Summary", "", *_details_markdown(summary)]
    for res in results:
        status = "passed" if res.success else "FAILED"
        lines += [f"## Suite `{res.suite_name}`: {status}", ""]
        lines += [f"{res.row_count} rows; {res.successful} of {res.evaluated} expectations passed.", ""]
        lines += ["| Expectation | Status | Unexpected |", "|---|---|---|"]
        for check in res.checks:
            state = "passed" if check.success else ("ERROR" if check.exception else "FAILED")
            count = "" if check.unexpected_count is None else str(check.unexpected_count)
            lines.append(f"| `{_md(check.description)}` | {state} | {count} |")
        lines.append("")
        if res.failures:
            lines += ["### Failing rows", ""]
            for failure in res.failures:
                lines.append(f"- `{_md(failure.description)}`: {failure.unexpected_count or 0} unexpected")
                if failure.exception:
                    lines.append(f"  - could not be evaluated: {_md(failure.exception)}")
                for row in failure.rows:
                    where = res.where(row)
                    lines.append(f"  - {_md(where)}: {_md(_row_values(row, res.id_columns))}")
                hidden = (failure.unexpected_count or 0) - len(failure.rows)
                if hidden > 0:
                    lines.append(f"  - ... and {hidden} more")
            lines.append("")
        if res.details:
            lines += ["### Details", "", *_details_markdown(res.details)]
    return "\n".join(lines).rstrip() + "\n"


@dataclass
class ValidationReport:
    """Every suite's outcome for one family: what a validate function returns and a stage writes.

    ``notes`` are problems found before any suite could run (e.g. an unreadable file); they make
    the report a failure. ``summary`` (JSON-ready, e.g. record counts) heads both renderings.
    """

    title: str
    results: list[SuiteResult]
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return all(res.success for res in self.results) and not self.notes

    @property
    def n_failed(self) -> int:
        """Failed expectations, plus one per note (a suite that could not run)."""
        return sum(len(res.failures) for res in self.results) + len(self.notes)

    def markdown(self) -> str:
        return report_markdown(self.results, self.title, self.notes, self.summary)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "success": self.success,
            "notes": list(self.notes),
            "summary": _plain(dict(self.summary)),
            "suites": [res.to_dict() for res in self.results],
        }

    def raise_for_failures(self, report: Path | None = None, limit: int = 10) -> None:
        """Raise ``ValidationFailed`` naming file, record and expectation (or the note) of the failures."""
        if self.notes:
            message = "data validation could not run: " + "; ".join(self.notes)
            if report is not None:
                message += f"\nfull report: {os.fspath(report)}"
            raise ValidationFailed(message, self.results, report)
        raise_for_failures(self.results, report=report, limit=limit)


def write_report(report: ValidationReport, out_dir: str | os.PathLike, stem: str = "validation") -> dict[str, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` of ``report`` into ``out_dir`` atomically; return their paths."""
    out = Path(out_dir)
    md_path = write_text(out / f"{stem}.md", report.markdown())
    json_path = write_json(out / f"{stem}.json", report.to_dict())
    return {"markdown": md_path, "json": json_path}


def validate_and_report(report: ValidationReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report`` into ``out_dir``, then raise ``ValidationFailed`` if it failed: the order every
    validate stage follows, so that a failure always leaves its readable report behind."""
    paths = write_report(report, out_dir)
    report.raise_for_failures(paths["markdown"])
    return paths


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, NA/NaN to None, bytes decoded, other objects as str."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
