"""What every DVC stage script shares: reading its params and turning bad input into a clean exit."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from overseer.errors import InputError
from overseer.params import check_section, read_params


def load_params(*keys: str, params_file: str | os.PathLike = "params.yaml") -> Any:
    """The params section at ``keys`` (``load_params("train_cnn")``, ``load_params("ingest", "trackbed")``),
    checked against its schema (:mod:`overseer.params`) and returned as YAML gave it.

    A YAML syntax error, a missing section and every problem of the section (unknown keys, wrong
    types, values out of range) are an InputError naming the file, the line or the key path.
    """
    section: Any = read_params(params_file)
    for key in keys:
        if not isinstance(section, dict) or key not in section:
            raise InputError(f"missing params section {'.'.join(keys)!r}", path=params_file)
        section = section[key]
    return check_section(keys, section, source=params_file)


def run(main: Callable[..., Any], *args: Any) -> None:
    """Call a stage's ``main``; bad input ends the stage with its message and exit status 2, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main(*args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
