"""The one error type for bad input: its message names the file, the record and what was expected."""

from __future__ import annotations


class InputError(ValueError):
    """Raised for bad user input; stage and CLI entry points print it without a traceback."""

    def __init__(self, message: str, *, path: object | None = None, record: object | None = None):
        where = []
        if path is not None:
            where.append(str(path))
        if record is not None:
            where.append(f"record {record}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path = path
        self.record = record
