"""The survey grid every volume lives on: inline and crossline numbers and a regular time axis.

Volumes are float32 arrays of shape (inline, crossline, sample); a ``Grid`` maps survey numbers
(inline, crossline, time in ms) to 0-based array indices and back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from overseer.errors import InputError

_AXES = ("inline", "crossline", "time")


def _lines(name: str, values: Any) -> np.ndarray:
    """Validated, read-only int32 copy of an inline/crossline number axis."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of line numbers")
    if array.dtype.kind not in "iu":
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)) or np.any(array != np.rint(array)):
            raise ValueError(f"{name} must be whole numbers")
    if array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{name} do not fit in int32")
    lines = array.astype(np.int32)
    if lines.size > 1 and np.any(np.diff(lines.astype(np.int64)) <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    lines.setflags(write=False)
    return lines


def _span(lines: np.ndarray) -> str:
    if lines.size == 1:
        return f"{lines[0]}"
    steps = np.unique(np.diff(lines.astype(np.int64)))
    step = f" step {steps[0]}" if steps.size == 1 and steps[0] != 1 else ("" if steps.size == 1 else " irregular")
    return f"{lines[0]}..{lines[-1]}{step}"


@dataclass(frozen=True, eq=False)
class Grid:
    """Survey geometry: inline and crossline numbers (int32, strictly increasing) and a regular
    time axis (``n_samples`` samples from ``sample_start_ms`` every ``sample_interval_ms``).

    Compare grids with :meth:`same_as` (``==`` is identity: the fields are arrays).
    """

    inlines: np.ndarray
    crosslines: np.ndarray
    sample_start_ms: float
    sample_interval_ms: float
    n_samples: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "inlines", _lines("inlines", self.inlines))
        object.__setattr__(self, "crosslines", _lines("crosslines", self.crosslines))
        start, interval = float(self.sample_start_ms), float(self.sample_interval_ms)
        if not np.isfinite(start):
            raise ValueError(f"sample_start_ms must be finite, got {self.sample_start_ms}")
        if not (np.isfinite(interval) and interval > 0):
            raise ValueError(f"sample_interval_ms must be positive, got {self.sample_interval_ms}")
        if int(self.n_samples) != self.n_samples or int(self.n_samples) < 1:
            raise ValueError(f"n_samples must be a positive integer, got {self.n_samples}")
        object.__setattr__(self, "sample_start_ms", start)
        object.__setattr__(self, "sample_interval_ms", interval)
        object.__setattr__(self, "n_samples", int(self.n_samples))

    # ------------------------------------------------------------------ construction
    @classmethod
    def regular(
        cls,
        shape: Sequence[int],
        *,
        inline_start: int = 0,
        inline_step: int = 1,
        crossline_start: int = 0,
        crossline_step: int = 1,
        sample_start_ms: float = 0.0,
        sample_interval_ms: float = 1.0,
    ) -> Grid:
        """A grid for an array without geometry (an .npy volume): by default inlines and crosslines
        are numbered 0..n-1 and time equals the sample index (start 0 ms, 1 ms interval)."""
        if len(shape) != 3 or any(int(n) < 1 for n in shape):
            raise ValueError(f"a volume shape is (inlines, crosslines, samples), got {tuple(shape)}")
        if inline_step < 1 or crossline_step < 1:
            raise ValueError("inline_step and crossline_step must be positive")
        n_il, n_xl, n_s = (int(n) for n in shape)
        return cls(
            inlines=inline_start + inline_step * np.arange(n_il, dtype=np.int64),
            crosslines=crossline_start + crossline_step * np.arange(n_xl, dtype=np.int64),
            sample_start_ms=sample_start_ms,
            sample_interval_ms=sample_interval_ms,
            n_samples=n_s,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (see :meth:`from_json`)."""
        return {
            "inlines": self.inlines.tolist(),
            "crosslines": self.crosslines.tolist(),
            "sample_start_ms": self.sample_start_ms,
            "sample_interval_ms": self.sample_interval_ms,
            "n_samples": self.n_samples,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str | os.PathLike | None = None) -> Grid:
        """Inverse of :meth:`to_json`; a malformed object is an ``InputError`` naming ``path``."""
        keys = ("inlines", "crosslines", "sample_start_ms", "sample_interval_ms", "n_samples")
        if not isinstance(obj, dict) or any(k not in obj for k in keys):
            raise InputError(f"not a grid description; expected a JSON object with keys {list(keys)}", path=path)
        try:
            return cls(**{k: obj[k] for k in keys})
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid grid description ({exc})", path=path) from None

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int, int]:
        """(inlines, crosslines, samples): the shape of every volume on this grid."""
        return (self.inlines.size, self.crosslines.size, self.n_samples)

    @property
    def times_ms(self) -> np.ndarray:
        """Time of every sample in ms (float64)."""
        return self.sample_start_ms + self.sample_interval_ms * np.arange(self.n_samples, dtype=np.float64)

    def describe(self) -> str:
        """One line for messages: line ranges, sample count and time axis."""
        return (
            f"{self.inlines.size} inlines {_span(self.inlines)}, "
            f"{self.crosslines.size} crosslines {_span(self.crosslines)}, "
            f"{self.n_samples} samples from {self.sample_start_ms:g} ms every {self.sample_interval_ms:g} ms"
        )

    def same_as(self, other: Grid) -> bool:
        """True when both grids have the same lines and time axis."""
        return self.difference(other) is None

    def difference(self, other: Grid) -> str | None:
        """How ``other`` differs from this grid, in words; ``None`` when they are the same."""
        diffs = []
        for name in ("inlines", "crosslines"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if not np.array_equal(mine, theirs):
                diffs.append(f"{name} {mine.size} ({_span(mine)}) vs {theirs.size} ({_span(theirs)})")
        if self.n_samples != other.n_samples:
            diffs.append(f"samples {self.n_samples} vs {other.n_samples}")
        # times are compared to a microsecond: SEG-Y stores the interval in µs
        if not np.isclose(self.sample_start_ms, other.sample_start_ms, rtol=0.0, atol=1e-3):
            diffs.append(f"first sample {self.sample_start_ms:g} ms vs {other.sample_start_ms:g} ms")
        if not np.isclose(self.sample_interval_ms, other.sample_interval_ms, rtol=0.0, atol=1e-3):
            diffs.append(f"sample interval {self.sample_interval_ms:g} ms vs {other.sample_interval_ms:g} ms")
        return "; ".join(diffs) if diffs else None

    # ------------------------------------------------------------------ coordinates
    def extent(self, axis: str) -> tuple[float, float]:
        """(first, last) survey coordinate along ``axis`` ("inline", "crossline" or "time")."""
        if axis == "inline":
            return float(self.inlines[0]), float(self.inlines[-1])
        if axis == "crossline":
            return float(self.crosslines[0]), float(self.crosslines[-1])
        if axis == "time":
            return self.sample_start_ms, self.sample_start_ms + self.sample_interval_ms * (self.n_samples - 1)
        raise ValueError(f"axis must be one of {_AXES}, got {axis!r}")

    def fractional_index(self, axis: str, values: Any) -> np.ndarray:
        """Fractional 0-based index of survey coordinates along ``axis`` (linear between lines;
        clamped outside the extent, so check :meth:`extent` first)."""
        values = np.asarray(values, dtype=np.float64)
        if axis == "time":
            return (values - self.sample_start_ms) / self.sample_interval_ms
        lines = self.inlines if axis == "inline" else self.crosslines if axis == "crossline" else None
        if lines is None:
            raise ValueError(f"axis must be one of {_AXES}, got {axis!r}")
        return np.interp(values, lines, np.arange(lines.size, dtype=np.float64))

    def index_of(
        self,
        inline: Any,
        crossline: Any,
        sample: Any = None,
        time_ms: Any = None,
        *,
        path: str | os.PathLike | None = None,
        rows: Sequence[Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """0-based (inline, crossline, sample) indices of survey positions, vectorised.

        ``sample`` is a 0-based sample index; ``time_ms`` a time, rounded to the nearest sample.
        Give exactly one of them. A position outside the grid (or a line number not in it) is an
        ``InputError`` naming ``path`` and the first offending row (``rows[i]`` when given, else
        the position ``i``) and how many rows are outside.
        """
        if (sample is None) == (time_ms is None):
            raise TypeError("give exactly one of sample and time_ms")
        il_idx, il_bad, il_values = _line_index(self.inlines, inline)
        xl_idx, xl_bad, xl_values = _line_index(self.crosslines, crossline)
        if sample is not None:
            s = np.atleast_1d(np.asarray(sample, dtype=np.float64))
            s_round = np.rint(s)
            s_bad = ~np.isfinite(s) | (s != s_round) | (s_round < 0) | (s_round >= self.n_samples)
            vertical, vertical_values = "sample", s
        else:
            t = np.atleast_1d(np.asarray(time_ms, dtype=np.float64))
            s_round = np.rint((t - self.sample_start_ms) / self.sample_interval_ms)
            s_bad = ~np.isfinite(t) | (s_round < 0) | (s_round >= self.n_samples)
            vertical, vertical_values = "time_ms", t
        if not (il_idx.shape == xl_idx.shape == s_round.shape):
            raise ValueError("inline, crossline and sample/time arrays must have the same length")
        for name, bad, values, allowed in (
            ("inline", il_bad, il_values, f"inlines {_span(self.inlines)}"),
            ("crossline", xl_bad, xl_values, f"crosslines {_span(self.crosslines)}"),
            (vertical, s_bad, vertical_values, _vertical_range(self, vertical)),
        ):
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                more = int(bad.sum()) - 1
                tail = f" ({more} more rows outside the grid)" if more else ""
                raise InputError(
                    f"{name} {values[first]:g} is outside the grid (expected {allowed}){tail}",
                    path=path,
                    record=rows[first] if rows is not None else first,
                )
        return il_idx, xl_idx, s_round.astype(np.intp)


def _line_index(lines: np.ndarray, values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of each value in the sorted ``lines``, a mask of values that are not lines, the values."""
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    pos = np.clip(np.searchsorted(lines, v), 0, lines.size - 1)
    bad = ~np.isfinite(v) | (lines[pos] != v)
    return pos.astype(np.intp), bad, v


def _vertical_range(grid: Grid, vertical: str) -> str:
    if vertical == "sample":
        return f"sample 0..{grid.n_samples - 1}"
    first, last = grid.extent("time")
    return f"time {first:g}..{last:g} ms"
