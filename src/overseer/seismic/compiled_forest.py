"""The facies forest compiled for ONNX Runtime's tree ensemble, with scikit-learn's labels on every voxel.

:func:`compile_forest` turns a fitted rfc3d model (``[scaler +] RandomForestClassifier`` or
``ExtraTreesClassifier``, as :func:`overseer.seismic.forest.build_pipeline` makes it) into a
:class:`CompiledForest`, whose ``predict_proba`` gives the probabilities of scikit-learn's
``predict_proba`` to ~1e-7 and **the same most probable class on every row**. The ONNX graph is
built here from the trees' own arrays (one ``ai.onnx.ml`` ``TreeEnsembleRegressor``, one target per
class, no converter package); the steps before the forest run as scikit-learn runs them.

Why the labels are the same, not just nearly:

* **Paths.** scikit-learn casts the forest's input to float32 and sends a row left when
  ``float64(x) <= threshold`` (float64 thresholds). ONNX Runtime compares float32 inputs with float32
  thresholds, and a threshold rounded to the *nearest* float32 (what converters do) can move a row
  that sits on it to the other side. Here each threshold is rounded *down* to the largest float32
  ``t32 <= t``; for every float32 ``x``, ``x <= t`` exactly when ``x <= t32``, so every row takes
  scikit-learn's path through every tree (``float32_floor``).
* **Sums.** ONNX Runtime adds the trees' leaf probabilities in float32, scikit-learn in float64.
  The float32 sum of n terms in [0, 1] (any order, weights rounded) is within ``(n² + n)·2⁻²⁴`` of
  the exact one; a row whose two highest class sums lie within twice that (ties, near-ties) is
  recomputed with scikit-learn's ``predict_proba`` (``refine_tolerance``; a few rows per million).
  Every other row's most probable class is scikit-learn's.
* Rows with NaN or infinite inputs are left to scikit-learn entirely (it raises or routes them as it
  was trained to).

Speed: a tree traversal is branchy, and on random-looking rows (noisy attributes) both engines
spend most of their time in mispredicted branches; ONNX Runtime alone is about as fast as
scikit-learn's Cython. What makes the compiled path faster is that ``predict_proba`` first
**reorders the rows** along a Morton (Z-order) curve of a coarse grid over the features that the
trees split on nearest their roots, runs the trees over rows in that order (neighbours then take
nearly the same branches) and puts the results back in the input order. The order changes no
result. The rows go to ONNX Runtime in batches, ``n_threads`` batches at a time (one intra-op
thread each; ``InferenceSession.run`` may be called concurrently).

:func:`check_against_sklearn` compares the two engines on a sample and on copies of its rows put
exactly on (and just past) split thresholds along their own decision paths;
:func:`verified_predictor` compiles, checks, and falls back to the scikit-learn model with a
:class:`CompiledForestWarning` when the engines disagree or onnxruntime/onnx is missing.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BACKEND = "onnxruntime"
ENGINES = ("auto", "compiled", "sklearn")  # predict_volume's engine argument
BATCH_ROWS = 1 << 16  # rows per ONNX Runtime call
REORDER_MIN_ROWS = 1 << 14  # fewer rows are predicted in the order given
KEY_BITS = 16  # Morton key: 16 bits over at most KEY_FEATURES features (a radix argsort)
KEY_FEATURES = 4
PROBA_ATOL = 1e-6  # the check's tolerance on probabilities (labels must be identical)
_U = 2.0**-24  # float32 unit roundoff


class CompileError(Exception):
    """The model cannot be compiled (not a fitted single-output forest classifier, or ONNX Runtime refused it)."""


class UnsupportedModelError(CompileError):
    """The model's classifier is not a forest this module compiles (e.g. gradient boosting)."""


class CompiledForestWarning(UserWarning):
    """The compiled path was asked for (or is the default) but scikit-learn's is used instead."""


# ---------------------------------------------------------------------------- compilation


def split_model(model: Any) -> tuple[Any | None, Any]:
    """(the steps before the forest as a Pipeline or None, the forest) of a fitted model.

    Raises UnsupportedModelError when the last step is not a RandomForestClassifier or ExtraTreesClassifier,
    CompileError when it is not fitted or has several outputs."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.pipeline import Pipeline

    preprocess, forest = None, model
    if isinstance(model, Pipeline):
        forest = model.steps[-1][1]
        if len(model.steps) > 1:
            preprocess = model[:-1]
    if not isinstance(forest, RandomForestClassifier | ExtraTreesClassifier):
        raise UnsupportedModelError(
            f"only random-forest / extra-trees classifiers compile, not {type(forest).__name__}"
        )
    if not hasattr(forest, "estimators_"):
        raise CompileError("the forest is not fitted")
    if getattr(forest, "n_outputs_", 1) != 1:
        raise CompileError(f"only single-output forests compile, this one has {forest.n_outputs_} outputs")
    return preprocess, forest


def float32_floor(values: np.ndarray) -> np.ndarray:
    """The largest float32 ``<=`` each float64 value: for float32 ``x``, ``x <= t`` exactly when
    ``x <= float32_floor(t)`` (values above the float32 range give its largest finite value)."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        t32 = values.astype(np.float32)
    above = t32.astype(np.float64) > values
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def leaf_probabilities(tree: Any) -> np.ndarray:
    """(node_count, n_classes) class probabilities of every node, normalised as scikit-learn's
    ``DecisionTreeClassifier.predict_proba`` normalises its leaves."""
    value = np.array(tree.value[:, 0, :], dtype=np.float64)
    total = value.sum(axis=1)[:, None]
    total[total == 0.0] = 1.0
    return value / total


def onnx_forest(forest: Any) -> bytes:
    """The forest as an ONNX model: input ``X`` (N, n_features) float32, output ``Y`` (N, n_classes)
    float32, the **sum** over trees of each tree's leaf probabilities (divide by the tree count).
    Thresholds are rounded down to float32 (``float32_floor``), so paths are scikit-learn's."""
    from onnx import TensorProto, helper

    n_classes = int(forest.n_classes_)
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("tree", "node", "feature", "value", "true", "false")}
    targets: dict[str, list[np.ndarray]] = {k: [] for k in ("tree", "node", "id", "weight")}
    modes: list[str] = []
    for t, estimator in enumerate(forest.estimators_):
        tree = estimator.tree_
        n = int(tree.node_count)
        leaf = tree.children_left == -1
        columns["tree"].append(np.full(n, t, dtype=np.int64))
        columns["node"].append(np.arange(n, dtype=np.int64))
        columns["feature"].append(np.where(leaf, 0, tree.feature).astype(np.int64))
        columns["value"].append(np.where(leaf, np.float32(0), float32_floor(np.where(leaf, 0.0, tree.threshold))))
        columns["true"].append(np.where(leaf, 0, tree.children_left).astype(np.int64))  # x <= t: left, as sklearn
        columns["false"].append(np.where(leaf, 0, tree.children_right).astype(np.int64))
        modes.extend(np.where(leaf, "LEAF", "BRANCH_LEQ").tolist())
        proba = leaf_probabilities(tree)
        nodes, classes = np.nonzero(leaf[:, None] & (proba > 0.0))  # zero weights add nothing
        targets["tree"].append(np.full(nodes.size, t, dtype=np.int64))
        targets["node"].append(nodes.astype(np.int64))
        targets["id"].append(classes.astype(np.int64))
        targets["weight"].append(proba[nodes, classes].astype(np.float32))
    col = {k: np.concatenate(v) for k, v in columns.items()}
    tgt = {k: np.concatenate(v) for k, v in targets.items()}
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", name="forest",
        n_targets=n_classes, aggregate_function="SUM", post_transform="NONE",
        nodes_treeids=col["tree"].tolist(), nodes_nodeids=col["node"].tolist(),
        nodes_featureids=col["feature"].tolist(), nodes_values=col["value"].astype(np.float32).tolist(),
        nodes_modes=modes, nodes_truenodeids=col["true"].tolist(), nodes_falsenodeids=col["false"].tolist(),
        target_treeids=tgt["tree"].tolist(), target_nodeids=tgt["node"].tolist(),
        target_ids=tgt["id"].tolist(), target_weights=tgt["weight"].tolist(),
    )  # fmt: skip
    n_features = int(forest.n_features_in_)
    graph = helper.make_graph(
        [node], "facies_forest",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n_classes])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8, producer_name="overseer").SerializeToString()


def resolve_threads(n_jobs: int | None, forest: Any = None) -> int:
    """Worker threads for ``n_jobs`` (joblib's convention: None → the forest's own ``n_jobs``, else 1;
    -1 → all cores; -2 → all but one ...)."""
    if n_jobs is None:
        n_jobs = getattr(forest, "n_jobs", None)
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    if n_jobs >= 0:
        return max(1, n_jobs)
    return max(1, (os.cpu_count() or 1) + 1 + n_jobs)


def _key_features(forest: Any) -> list[int]:
    """The (at most KEY_FEATURES) features the trees split on most in their top three levels."""
    counts = np.zeros(int(forest.n_features_in_), dtype=np.int64)
    for estimator in forest.estimators_:
        tree = estimator.tree_
        level = np.array([0])
        for _ in range(3):
            level = level[tree.children_left[level] != -1]
            if level.size == 0:
                break
            np.add.at(counts, tree.feature[level], 1)
            level = np.concatenate([tree.children_left[level], tree.children_right[level]])
    ranked = [int(f) for f in np.argsort(-counts, kind="stable") if counts[f] > 0]
    return ranked[:KEY_FEATURES]


def _spread_bits(bits: int, stride: int) -> np.ndarray:
    """lut[b] = the bits of b spaced ``stride`` apart (the Morton interleave of one coordinate)."""
    b = np.arange(1 << bits, dtype=np.uint32)
    lut = np.zeros(b.size, dtype=np.uint32)
    for i in range(bits):
        lut |= ((b >> i) & 1) << (i * stride)
    return lut.astype(np.uint16)


def _take_rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """x[index] for a C-contiguous 2-D array; rows of 4, 8 or 16 bytes are moved as one item (much
    faster than numpy's row-wise fancy indexing)."""
    item = {4: np.uint32, 8: np.uint64, 16: np.complex128}.get(x.shape[1] * x.itemsize)
    if item is None:
        return np.take(x, index, axis=0)
    return np.take(x.view(item).reshape(-1), index).view(x.dtype).reshape(len(index), x.shape[1])


@dataclass(eq=False)
class CompiledForest:
    """A fitted rfc3d model with its forest run by ONNX Runtime; ``predict_proba`` and ``predict`` as the model's.

    Build it with :func:`compile_forest`. ``last_refined`` counts the rows of the last call that
    were recomputed with scikit-learn because their two highest class sums were too close for the
    float32 sums to decide (see the module notes)."""

    model: Any
    preprocess: Any | None
    forest: Any
    session: Any
    n_threads: int = 1
    reorder: bool = True
    key_features: tuple[int, ...] = ()
    compile_seconds: float = 0.0
    last_refined: int = 0
    backend: str = BACKEND

    @property
    def classes_(self) -> np.ndarray:
        return self.model.classes_

    @property
    def n_features_in_(self) -> int:
        return int(getattr(self.model, "n_features_in_", self.forest.n_features_in_))

    @property
    def n_trees(self) -> int:
        return len(self.forest.estimators_)

    @property
    def refine_tolerance(self) -> float:
        """Float32 sums whose two highest classes differ by at most this are recomputed with scikit-learn:
        twice the bound ``(n² + n)·2⁻²⁴`` on a float32 sum of n tree probabilities, doubled again for margin."""
        n = self.n_trees
        return 4.0 * (n * n + n) * _U

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (float64, n × n_classes) of the rows of ``x`` (float32 attributes)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected a 2-D array with {self.n_features_in_} columns, got shape {x.shape}")
        xs = self.preprocess.transform(x) if self.preprocess is not None else x
        return self.forest_proba(np.ascontiguousarray(xs, dtype=np.float32))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_)[np.argmax(self.predict_proba(x), axis=1)]

    def forest_proba(self, xs: np.ndarray) -> np.ndarray:
        """The forest's ``predict_proba`` of rows already through the steps before it (the forest's input)."""
        xs = np.ascontiguousarray(xs, dtype=np.float32)
        n, k = len(xs), len(self.forest.classes_)
        self.last_refined = 0
        if n == 0 or not np.isfinite(xs).all():
            return self.forest.predict_proba(xs)  # NaN / inf: scikit-learn's own handling
        order = self._order(xs) if self.reorder and n >= REORDER_MIN_ROWS and self.key_features else None
        xo = xs if order is None else _take_rows(xs, order)
        sums = np.empty((k, n), dtype=np.float32)  # class sums, in the order the rows were run
        close = np.zeros(n, dtype=bool)
        tol = np.float32(self.refine_tolerance)

        def run(start: int) -> None:
            stop = min(start + BATCH_ROWS, n)
            block = sums[:, start:stop]
            block[:] = self.session.run(None, {"X": xo[start:stop]})[0].T
            if k > 1:  # close: at least two classes within tol of the highest sum
                floor = block.max(axis=0) - tol
                close[start:stop] = np.count_nonzero(block >= floor, axis=0) >= 2

        starts = range(0, n, BATCH_ROWS)
        if self.n_threads > 1 and len(starts) > 1:
            with ThreadPoolExecutor(min(self.n_threads, len(starts))) as pool:
                list(pool.map(run, starts))
        else:
            for start in starts:
                run(start)
        proba = np.empty((n, k), dtype=np.float64)
        if order is None:
            proba[:] = sums.T
        else:
            inverse = np.empty(n, dtype=np.intp)
            inverse[order] = np.arange(n, dtype=np.intp)
            for c in range(k):
                proba[:, c] = np.take(sums[c], inverse)
        proba /= self.n_trees
        refine = np.flatnonzero(close)
        if refine.size:
            rows = refine if order is None else order[refine]
            proba[rows] = self.forest.predict_proba(xs[rows])
            self.last_refined = int(refine.size)
        return proba

    def _order(self, xs: np.ndarray) -> np.ndarray:
        """Row order along a Morton curve of a 2^bits grid per key feature (1st–99th percentile range)."""
        feats = list(self.key_features)
        bits = min(8, KEY_BITS // len(feats))
        cells = 1 << bits
        lut = _spread_bits(bits, len(feats))
        sample = xs[:: max(1, len(xs) // 8192)][:, feats].astype(np.float64)
        lo, hi = np.percentile(sample, [1.0, 99.0], axis=0)
        key = np.zeros(len(xs), dtype=np.uint16)
        cell = np.empty(len(xs), dtype=np.float32)
        for j, f in enumerate(feats):
            scale = cells / (hi[j] - lo[j]) if hi[j] > lo[j] else 0.0
            np.subtract(xs[:, f], np.float32(lo[j]), out=cell)
            cell *= np.float32(scale)
            np.clip(cell, 0, cells - 1, out=cell)
            key |= lut[cell.astype(np.intp)] << np.uint16(j)
        return np.argsort(key, kind="stable")


def compile_forest(model: Any, *, n_jobs: int | None = None, reorder: bool = True) -> CompiledForest:
    """Compile a fitted ``[transformers +] RandomForestClassifier`` (or ExtraTrees) for ONNX Runtime.

    ``n_jobs``: prediction threads (joblib's convention; None: the forest's ``n_jobs``, else 1).
    ``reorder=False`` predicts rows in the order given (the same results, slower).
    Raises CompileError for a model that does not compile and ImportError when onnxruntime or onnx
    is missing."""
    start = time.perf_counter()
    preprocess, forest = split_model(model)
    import onnxruntime as ort

    try:
        data = onnx_forest(forest)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # parallel over batches instead (see CompiledForest.forest_proba)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except ImportError:
        raise
    except Exception as exc:  # onnx and onnxruntime raise their own types
        raise CompileError(f"ONNX Runtime could not load the forest: {exc}") from exc
    return CompiledForest(
        model=model, preprocess=preprocess, forest=forest, session=session,
        n_threads=resolve_threads(n_jobs, forest), reorder=reorder, key_features=tuple(_key_features(forest)),
        compile_seconds=time.perf_counter() - start,
    )  # fmt: skip


def predict_proba(compiled: CompiledForest, x: np.ndarray) -> np.ndarray:
    """Class probabilities of the float32 attribute matrix ``x`` (n × n_features) by the compiled forest."""
    return compiled.predict_proba(x)


# ---------------------------------------------------------------------------- checks and fallback


@dataclass(frozen=True)
class Agreement:
    """How a compiled forest compares with scikit-learn on some rows."""

    rows: int
    label_differences: int
    max_abs_difference: float

    @property
    def ok(self) -> bool:
        return self.label_differences == 0 and self.max_abs_difference <= PROBA_ATOL


def threshold_rows(forest: Any, xs: np.ndarray, seed: int = 0) -> np.ndarray:
    """Copies of the forest-input rows ``xs`` moved onto split thresholds along their own paths.

    For each row, one tree (in turn) and one internal node on the row's path through it: one copy
    with that node's feature set to the largest float32 at or below the threshold (goes left), one
    to the next float32 above it (goes right). Returns float32 rows, twice as many as ``xs``."""
    xs = np.ascontiguousarray(xs, dtype=np.float32)
    if xs.size == 0:
        return xs.copy()
    rng = np.random.default_rng(seed)
    at, above = xs.copy(), xs.copy()
    trees = forest.estimators_
    for t, estimator in enumerate(trees):
        rows = np.arange(t, len(xs), len(trees))
        if rows.size == 0:
            continue
        tree = estimator.tree_
        path = estimator.decision_path(xs[rows]).tocsr()
        path.sort_indices()  # node ids grow along a path (depth-first numbering): the leaf comes last
        internal = np.diff(path.indptr) - 1
        keep = internal > 0
        pick = path.indptr[:-1][keep] + (rng.random(int(keep.sum())) * internal[keep]).astype(np.intp)
        nodes, rows = path.indices[pick], rows[keep]
        features, t32 = tree.feature[nodes], float32_floor(tree.threshold[nodes])
        at[rows, features] = t32
        above[rows, features] = np.nextafter(t32, np.float32(np.inf))
    return np.concatenate([at, above])


def check_against_sklearn(compiled: CompiledForest, sample: np.ndarray, *, seed: int = 0) -> Agreement:
    """Compare the compiled forest with scikit-learn's ``predict_proba`` on ``sample`` (model inputs)
    and on its rows moved onto split thresholds (``threshold_rows``)."""
    sample = np.asarray(sample)
    xs = sample if compiled.preprocess is None else compiled.preprocess.transform(sample)
    xs = np.ascontiguousarray(xs, dtype=np.float32)
    xs = xs[np.isfinite(xs).all(axis=1)]
    rows = np.concatenate([xs, threshold_rows(compiled.forest, xs, seed)])
    expected = compiled.forest.predict_proba(rows)
    got = compiled.forest_proba(rows)
    diff = float(np.abs(got - expected).max()) if len(rows) else 0.0
    labels = int(np.count_nonzero(got.argmax(axis=1) != expected.argmax(axis=1)))
    return Agreement(rows=len(rows), label_differences=labels, max_abs_difference=diff)


def verified_predictor(
    model: Any,
    sample: np.ndarray | None,
    *,
    engine: str = "auto",
    n_jobs: int | None = None,
    max_rows: int = 20_000,
) -> tuple[Any, str]:
    """(predictor, engine used): the compiled forest when it compiles and agrees with scikit-learn on
    ``sample`` (at most ``max_rows`` rows of model inputs, plus their threshold copies), else ``model``.

    ``engine``: ``"sklearn"`` — the model as it is; ``"compiled"`` — compile, and warn
    (CompiledForestWarning) when that is not possible; ``"auto"`` — the same, but a model that is
    not a forest classifier (e.g. gradient boosting) quietly stays with scikit-learn. In both, a
    missing onnxruntime/onnx or a disagreement warns and falls back to scikit-learn. The engine used
    is ``"onnxruntime"`` or ``"sklearn"``."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    if engine == "sklearn":
        return model, "sklearn"
    try:
        compiled = compile_forest(model, n_jobs=n_jobs)
    except ImportError as exc:
        warnings.warn(f"compiled forest unavailable ({exc}); predicting with scikit-learn", CompiledForestWarning, 2)
        return model, "sklearn"
    except CompileError as exc:
        if engine == "compiled" or not isinstance(exc, UnsupportedModelError):
            warnings.warn(f"forest not compiled ({exc}); predicting with scikit-learn", CompiledForestWarning, 2)
        else:
            log.debug("forest not compiled (%s); predicting with scikit-learn", exc)
        return model, "sklearn"
    if sample is not None and len(sample):
        sample = np.asarray(sample)
        step = max(1, len(sample) // max_rows)
        agreement = check_against_sklearn(compiled, sample[::step][:max_rows])
        if not agreement.ok:
            warnings.warn(
                f"the compiled forest disagrees with scikit-learn on {agreement.rows} check rows "
                f"({agreement.label_differences} labels, max |Δp| {agreement.max_abs_difference:.2e}); "
                "predicting with scikit-learn",
                CompiledForestWarning,
                2,
            )
            return model, "sklearn"
    return compiled, BACKEND
