"""Features along depth for well-log facies classification, and a per-well mode filter of predictions.

The field's best well-log classifiers (e.g. the SEG 2016 facies contest entries on the Hugoton/Panoma
wells) do not classify each sample on its own logs only: they add, per well and along depth, the logs
of the neighbouring samples (a receptive field of ±k samples) and the depth gradient of each log,
and they smooth the predicted facies with a running mode filter per well afterwards. This module
provides both:

* :class:`WellSequenceFeatures`, a scikit-learn transformer for the head of the rfc3d pipeline
  (:func:`overseer.seismic.forest.build_pipeline`): its input is ``[well, depth, log_1 … log_n]``
  and its output the logs, their neighbours and gradients (``well`` and ``depth`` are dropped), so
  training, cross-validation and prediction compute them the same way from the same columns.
* :func:`smooth_per_well`, the post-hoc running mode filter over depth, for prediction
  (:func:`overseer.seismic.predict.predict_table`) and evaluation to call.

Everything is computed per well in depth order whatever the order of the input rows, and
returned in the input's row order. Neighbours and gradients are taken of the numeric logs only:
encoded columns (ingest's one-hot ``<column>:<level>`` features, e.g. ``Formation:A1 SH``,
:func:`encoded_columns`) pass through as they are — the slope of an indicator is zero except at a
formation boundary and its neighbours repeat it, neither of which says more than the column itself.

``auto`` (:data:`AUTO`) for ``neighbours``, ``gradients`` or ``window`` is train_rf's choice by
leave-wells-out CV (:mod:`overseer.seismic.well_choice`); this module sees resolved values only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from overseer.errors import InputError
from overseer.seismic.data.well_logs import LEVEL_SEPARATOR

WELL_COLUMN = "well"
DEPTH_COLUMN = "depth"
KEY_COLUMNS = (WELL_COLUMN, DEPTH_COLUMN)
#: a train_rf.well_features / smooth value that train_rf chooses by leave-wells-out CV (well logs; off elsewhere)
AUTO = "auto"
#: ``train_rf.well_features`` when it is left out: nothing added (the pipeline takes the logs only)
WELL_FEATURE_DEFAULTS: dict[str, Any] = {"neighbours": 0, "gradients": False}
#: ``train_rf.smooth`` when it is left out: window 1, no filter
SMOOTH_DEFAULTS: dict[str, Any] = {"window": 1}


def well_features_enabled(options: Mapping[str, Any] | None) -> bool:
    """True when ``train_rf.well_features`` adds anything (neighbours > 0 or gradients); ``auto``
    values count as off (they are resolved before a pipeline is built)."""
    options = {**WELL_FEATURE_DEFAULTS, **{k: v for k, v in (options or {}).items() if not is_auto(v)}}
    return int(options["neighbours"]) > 0 or bool(options["gradients"])


def is_auto(value: Any) -> bool:
    """True for the param value ``auto`` (:data:`AUTO`)."""
    return isinstance(value, str) and value == AUTO


def encoded_columns(inputs: Sequence[str]) -> list[int]:
    """Positions in ``inputs`` of encoded (one-hot) columns, named ``<column>:<level>`` by ingest
    (:func:`overseer.seismic.data.well_logs.one_hot_name`): :class:`WellSequenceFeatures` passes them through."""
    return [j for j, name in enumerate(inputs) if LEVEL_SEPARATOR in str(name) and str(name) not in KEY_COLUMNS]


def _well_order(wells: np.ndarray, depths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row order by well then depth, well code of each ordered row, start of each well in that order).

    The sort is stable, so rows of one well at the same depth keep their input order."""
    codes, _ = pd.factorize(pd.Series(wells, dtype=object), sort=True)
    order = np.lexsort((np.arange(codes.size), depths, codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) if codes.size else np.array([], int)
    return order, sorted_codes, starts


class WellSequenceFeatures(TransformerMixin, BaseEstimator):
    """Logs of the ±1..``neighbours`` samples above/below in the same well, and each log's depth gradient.

    ``X`` is 2-D: column ``well_column`` names the well (any values: names or codes; only which rows
    share one matters), column ``depth_column`` is the depth, every other column a log. Rows are
    taken per well in increasing depth, whatever their order in ``X``. The output keeps ``X``'s row
    order and has, in this order: the logs (input order); for each log its values ``above1``,
    ``below1`` … ``above{k}``, ``below{k}`` (the samples 1..k shallower/deeper in the same well; past a
    well's end the end value is repeated, as ``np.pad(mode="edge")``); then, with ``gradients``, each
    log's ``np.gradient`` over depth within its well (second-order central differences inside,
    one-sided at the ends; 0 in a one-sample well). Column names: :meth:`get_feature_names_out`.

    ``passthrough``: input columns (positions) that are not logs but encoded values (one-hot
    formation columns, :func:`encoded_columns`): they stay in the first block, in input order, and get
    no neighbours or gradients.

    Stateless: ``fit`` only records the input's width (and names). A well with a depth twice is an
    ``InputError`` when ``gradients`` is on (the gradient would divide by zero).
    """

    def __init__(
        self,
        neighbours: int = 0,
        gradients: bool = False,
        well_column: int = 0,
        depth_column: int = 1,
        passthrough: Sequence[int] = (),
    ):
        self.neighbours = neighbours
        self.gradients = gradients
        self.well_column = well_column
        self.depth_column = depth_column
        self.passthrough = passthrough

    def _check_params(self) -> None:
        if (
            isinstance(self.neighbours, bool)
            or not isinstance(self.neighbours, int | np.integer)
            or self.neighbours < 0
        ):
            raise ValueError(f"neighbours must be a whole number >= 0, got {self.neighbours!r}")
        if self.well_column == self.depth_column:
            raise ValueError("well_column and depth_column must be different columns")

    def _log_columns(self, n_features: int) -> list[int]:
        """Every column but well and depth: logs and pass-through columns, input order."""
        return [j for j in range(n_features) if j not in (self.well_column, self.depth_column)]

    def _sequence_columns(self, n_features: int) -> list[int]:
        """Positions within :meth:`_log_columns` of the logs that get neighbours and gradients."""
        kept = {int(j) for j in self.passthrough}
        return [i for i, j in enumerate(self._log_columns(n_features)) if j not in kept]

    def fit(self, X: Any, y: Any = None) -> WellSequenceFeatures:  # noqa: N803 (scikit-learn naming)
        """Check the parameters and record ``n_features_in_`` (and ``feature_names_in_`` of a DataFrame)."""
        self._check_params()
        x = validate_data(self, X, dtype=None, ensure_min_features=2)
        for j in (self.well_column, self.depth_column):
            if not 0 <= j < x.shape[1]:
                raise ValueError(f"column {j} is outside the {x.shape[1]} input columns")
        for j in self.passthrough:
            if not 0 <= int(j) < x.shape[1] or int(j) in (self.well_column, self.depth_column):
                raise ValueError(f"passthrough column {j} is not one of the {x.shape[1]} input columns' logs")
        return self

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803 (scikit-learn naming)
        """The logs, their neighbours and gradients (float64), one row per input row in input order."""
        check_is_fitted(self, "n_features_in_")
        x = validate_data(self, X, dtype=None, reset=False)
        wells = x[:, self.well_column]
        depths = np.asarray(x[:, self.depth_column], dtype=np.float64)
        logs = np.asarray(x[:, self._log_columns(x.shape[1])], dtype=np.float64)
        order, codes, starts = _well_order(wells, depths)
        ends = np.r_[starts[1:], codes.size]
        ordered, z = logs[order], depths[order]
        sequence = ordered[:, self._sequence_columns(x.shape[1])]  # numeric logs: no encoded columns
        k = int(self.neighbours)
        blocks = [ordered]
        position = np.arange(codes.size)
        first, last = np.repeat(starts, ends - starts), np.repeat(ends - 1, ends - starts)
        for i in range(1, k + 1):  # rows i above/below in the same well, the end value past its ends
            blocks += [sequence[np.maximum(position - i, first)], sequence[np.minimum(position + i, last)]]
        if k:  # per log: above1, below1, above2, ... (blocks are per offset: reorder to per log)
            stacked = np.stack(blocks[1:], axis=2)  # rows × logs × (2k)
            blocks = [ordered, stacked.reshape(codes.size, -1)]
        if self.gradients:
            blocks.append(self._gradients(sequence, z, starts, ends, wells[order]))
        out = np.empty((codes.size, sum(b.shape[1] for b in blocks)), dtype=np.float64)
        out[order] = np.hstack(blocks)
        return out

    @staticmethod
    def _gradients(
        ordered: np.ndarray, z: np.ndarray, starts: np.ndarray, ends: np.ndarray, wells: np.ndarray
    ) -> np.ndarray:
        grad = np.zeros_like(ordered)
        for a, b in zip(starts, ends, strict=True):
            if b - a < 2:
                continue  # one sample: no slope to measure
            step = np.diff(z[a:b])
            if not (step > 0).all():
                i = a + int(np.flatnonzero(step <= 0)[0])
                raise InputError(
                    f"well {str(wells[i])!r} has depth {z[i]:g} twice; depth gradients (train_rf.well_features."
                    "gradients) need one sample per depth"
                )
            grad[a:b] = np.gradient(ordered[a:b], z[a:b], axis=0)
        return grad

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        """Output column names: every log and pass-through column, then ``<log>_above<i>``, ``<log>_below<i>``,
        ``<log>_gradient`` of the logs (not of the pass-through columns)."""
        check_is_fitted(self, "n_features_in_")
        if input_features is None:
            names = getattr(self, "feature_names_in_", None)
            input_features = list(names) if names is not None else [f"x{j}" for j in range(self.n_features_in_)]
        if len(input_features) != self.n_features_in_:
            raise ValueError(f"input_features has {len(input_features)} names, the input {self.n_features_in_} columns")
        everything = [str(input_features[j]) for j in self._log_columns(self.n_features_in_)]
        logs = [everything[i] for i in self._sequence_columns(self.n_features_in_)]
        k = int(self.neighbours)
        names = list(everything)
        names += [f"{log}_{side}{i}" for log in logs for i in range(1, k + 1) for side in ("above", "below")]
        names += [f"{log}_gradient" for log in logs] if self.gradients else []
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):  # scikit-learn's Tags
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True  # the well column may hold names
        tags.input_tags.allow_nan = False
        return tags


def model_inputs(features: Sequence[str], well_features: Mapping[str, Any] | None) -> list[str]:
    """The columns the pipeline takes (``config.json["features"]``): ``well``, ``depth`` and the
    attributes when ``well_features`` adds anything, else the attributes only."""
    names = [str(f) for f in features if str(f) not in KEY_COLUMNS]
    return [*KEY_COLUMNS, *names] if well_features_enabled(well_features) else names


def needs_well_and_depth(inputs: Sequence[str]) -> bool:
    """True when a model's input columns (``config.json["features"]``) start with ``well``, ``depth``."""
    return list(inputs[:2]) == list(KEY_COLUMNS)


def model_matrix(table: pd.DataFrame, inputs: Sequence[str]) -> np.ndarray:
    """The pipeline's input matrix of ``table``: columns ``inputs`` in order.

    Attributes only: float32, as rfc3d always took them. With ``well`` and ``depth`` first: float64,
    ``well`` replaced by a code per distinct well name (only which rows share a well matters), so
    training, evaluation and :func:`overseer.seismic.predict.predict_table` build it the same way.
    """
    if not needs_well_and_depth(inputs):
        return table[list(inputs)].to_numpy(dtype=np.float32)
    codes, _ = pd.factorize(table[WELL_COLUMN].astype(str), sort=True)
    out = np.empty((len(table), len(inputs)), dtype=np.float64)
    out[:, 0] = codes
    out[:, 1:] = table[list(inputs[1:])].to_numpy(dtype=np.float64)
    return out


# ---------------------------------------------------------------------------- post-hoc filter
def check_window(window: Any) -> int:
    """``window`` as an int: odd and >= 1 (1: no filter), else an ``InputError`` naming the param
    (``auto`` is resolved by train_rf before anything checks the window)."""
    ok = isinstance(window, int | np.integer) and not isinstance(window, bool) and window >= 1 and window % 2 == 1
    if not ok:
        raise InputError(f"train_rf.smooth.window must be an odd whole number >= 1 (1: off), got {window!r}")
    return int(window)


def smooth_per_well(wells: Any, depths: Any, facies: Any, window: int) -> np.ndarray:
    """Running mode filter of predicted ``facies`` over depth, per well (``window`` samples, odd; 1: unchanged).

    Each sample gets the most frequent facies among the ``window`` samples centred on it in its own
    well (in depth order, whatever the order of the rows; near a well's ends the window is cut at
    the end). A tie goes to the sample's own facies when it is among the most frequent, else to the
    smallest facies (sorted by value). Returns an array like ``facies`` in the input row order.
    """
    window = check_window(window)
    facies = np.asarray(facies)
    if window == 1 or facies.size == 0:
        return facies.copy()
    wells, depths = np.asarray(wells, dtype=object), np.asarray(depths, dtype=np.float64)
    if not (wells.shape == depths.shape == facies.shape and facies.ndim == 1):
        raise InputError(
            f"wells, depths and facies must be 1-D of one length, got {wells.shape}, {depths.shape}, {facies.shape}"
        )
    levels, codes = np.unique(facies, return_inverse=True)
    order, well_codes, starts = _well_order(wells, depths)
    ends = np.r_[starts[1:], well_codes.size]
    first, last = np.repeat(starts, ends - starts), np.repeat(ends - 1, ends - starts)
    ordered = codes.reshape(-1)[order]
    position = np.arange(ordered.size)
    counts = np.zeros((ordered.size, levels.size), dtype=np.float64)
    half = window // 2
    for offset in range(-half, half + 1):
        at = position + offset
        inside = (at >= first) & (at <= last)
        np.add.at(counts, (position[inside], ordered[at[inside]]), 1.0)
    counts[position, ordered] += 0.5  # ties: the sample's own facies, then the smallest (argmax takes the first)
    out = np.empty_like(ordered)
    out[order] = counts.argmax(axis=1)
    return levels[out]
