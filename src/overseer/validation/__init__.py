"""Data validation with Great Expectations (GX 1.x, in code, on an ephemeral context).

``core`` runs any list of expectations on a pandas table and reports failing rows by their id
columns; ``trackbed``, ``seismic`` and ``engraving`` hold each family's suites (import them from
there: this package imports none of them, so validating one family never loads another's code).
"""

from overseer.validation.core import (
    Check,
    Failure,
    SuiteResult,
    ValidationFailed,
    ValidationReport,
    format_failures,
    gx_expectations,
    raise_for_failures,
    run_suite,
    validate_and_report,
    write_report,
)

__all__ = [
    "Check",
    "Failure",
    "SuiteResult",
    "ValidationFailed",
    "ValidationReport",
    "format_failures",
    "gx_expectations",
    "raise_for_failures",
    "run_suite",
    "validate_and_report",
    "write_report",
]
