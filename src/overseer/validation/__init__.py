"""Data validation with Great Expectations (GX 1.x, in code, on an ephemeral context).

``core`` runs any list of expectations on a pandas table and reports failing rows by their id
columns; ``trackbed`` holds the suites for the trackbed TFRecord contract.
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
from overseer.validation.trackbed import validate_trackbed

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
    "validate_trackbed",
    "write_report",
]
