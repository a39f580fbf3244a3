"""The repository's params.yaml sections as test fixtures: a test states only what it changes."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@cache
def _params() -> dict[str, Any]:
    return yaml.safe_load(PARAMS.read_text())


def section(*keys: str, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``params.yaml``'s section at ``keys`` with top-level ``changes`` applied."""
    found: Any = _params()
    for key in keys:
        found = found[key]
    return {**copy.deepcopy(found), **changes}
