"""GMM attribute selection (AASPI attribute_selection) as a scikit-learn feature selector.

For every combination of the N candidate attributes (2^N − 1 of them, grouped by size n) and
every facies, a Gaussian mixture of up to J clusters is fitted (``gmm.fit_mixtures``: k-means,
SEM, CEM, BIC; notes eqs. 1–6). The clusters of different facies are compared with the
Bhattacharyya distance (eq. 7); a combination scores the average cumulative distance of eq. 8;
the best combination of each size n is O_n and the overall winner has the highest score (eq. 9).

Speed: all combinations of one size n and all facies are fitted as one batch (facies-major:
problem m·A + a is facies m of combination a), chunked to bound memory, with joblib spreading the
chunks over cores. What combinations share is computed once: the standardised, per-facies
centred attributes, their augmented data F = [xi·xj (i ≤ j), x, 1] over all N attributes (one
(D, S) matrix per facies, D = N(N+1)/2 + N + 1) and the SEM random numbers (one stream per
facies). Each combination's own F is a row subset of its facies' F, so nothing per combination
is copied: every M-step (cluster moments, eqs. 2–3) and E-step (log-odds of eq. 4) of a whole
batch is one float64 GEMM per facies against the shared F (``gmm.SharedRowsData``), the CEM of
all covariance models runs as one batch (``gmm.cem_fit_models``), the k × k inverses and
log-determinants are batched (``gmm._spd_inverse``, stored batch-last), and SEM's VVV M-step, eq. 5
and the next E-step's coefficients come from one sweep of each cluster's augmented moment matrix
(``gmm._vvv_sem_step``). Those GEMMs give every row the same
summation order whatever the other rows hold, so a combination's fit depends only on its data
and the seed — never on its batch, the search strategy or ``n_jobs`` (tested bit for bit).

Beyond ``exhaustive_max_n`` attributes the 2^N − 1 combinations are too many; a beam search
keeps the ``beam_width`` best combinations of size n and extends each by one attribute.

Degenerate attributes: a binary or nearly constant attribute lets a cluster's variance collapse,
which sends Bhattacharyya distances towards infinity (on real well logs one binary log reached
~1e5 and entered every top combination). Three defences, all in ``gmm``: variances are floored
per attribute at ``variance_floor`` × its overall variance and, for attributes recorded at a
coarse resolution (a binary flag, an integer code), at least at resolution²/12 — the variance of a
value known only to ± resolution/2; the likelihood that BIC compares counts the floor the same
way; and a fit with two or more clusters in which a cluster collapses below the floor is not a
candidate. Attributes and facies concerned are named in ``warnings_`` (and warned about): few
distinct values, nearly constant within a facies, (nearly) linearly dependent attributes, and
attributes that two-cluster fits collapse onto in at least half of their combinations.

Bad input raises ``InputError``: no labels, sparse input, no attributes, a non-numeric, non-finite
or constant attribute (named, with the first bad row), fewer than two facies, and a facies with
fewer than J × (N + 1) samples (named, with its count and the number needed) — too few for J
clusters of the full combination to be estimated; lower ``max_clusters`` (J = 1 needs only N + 1)
or drop attributes.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from overseer.errors import InputError
from overseer.seismic.bhattacharyya import average_cumulative_distance
from overseer.seismic.gmm import (
    COVARIANCE_MODELS,
    GaussianMixtureFit,
    SharedRowsData,
    augmented_data,
    fit_mixtures,
    n_parameters,
)

log = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 8_000_000  # (problem, sample[, attribute]) elements per batch: ~64 MB of float64
_EXHAUSTIVE_LIMIT = 20  # 2^20 − 1 combinations


class DegenerateAttributeWarning(UserWarning):
    """An attribute whose variance within a facies (or a cluster) had to be floored."""


FaciesNames = Sequence[str] | Mapping[Any, str] | None


def facies_label(label: Any, facies_names: FaciesNames = None) -> str:
    """How messages name the facies of ``label``: its name from ``facies_names`` (a mapping from
    label to name, or a sequence indexed by integer labels 0..M-1, e.g. ``meta.json``'s facies),
    else the label itself."""
    value = label.item() if hasattr(label, "item") else label
    if isinstance(facies_names, Mapping):
        for key in (value, str(value)):
            if key in facies_names:
                return str(facies_names[key])
    elif facies_names is not None and not isinstance(facies_names, str):
        index = int(value) if isinstance(value, int) or str(value).isdigit() else None
        if index is not None and 0 <= index < len(facies_names):
            return str(facies_names[index])
    return str(value)


@dataclass(frozen=True)
class PreparedData:
    """What every combination shares, computed once per fit (standardised units)."""

    names: tuple[str, ...]
    classes: np.ndarray  # (M,) facies labels
    counts: np.ndarray  # (M,) training samples per facies
    mean: np.ndarray  # (N,) attribute means over all samples
    std: np.ndarray  # (N,) attribute standard deviations over all samples
    x: np.ndarray  # (M, S, N) standardised, centred per facies, padded with zeros
    features: np.ndarray  # (M, N(N+1)/2 + N + 1, S) augmented data [xi·xj (i ≤ j), x, 1] (gmm.augmented_data)
    mask: np.ndarray  # (M, S) real (not padded) samples
    offsets: np.ndarray  # (M, N) facies means (standardised)
    floor: np.ndarray  # (N,) variance floor (standardised units)
    uniforms: np.ndarray  # (sem_iter, M, S) SEM random numbers, one stream per facies


@dataclass(frozen=True)
class FitConfig:
    max_clusters: int
    models: tuple[str, ...]
    sem_iter: int
    cem_iter: int
    kmeans_iter: int


@dataclass(frozen=True)
class ChunkResult:
    scores: np.ndarray  # (A,) eq. 8
    n_clusters: np.ndarray  # (A, M)
    model: np.ndarray  # (A, M) index into FitConfig.models
    collapsed: np.ndarray  # (M, N) fits in which a cluster collapsed onto (facies, attribute)


# --------------------------------------------------------------------------- input checks


def _as_table(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, list[str], list[Hashable]]:
    """X as float64 (n_samples, N), y as a 1-D array, the column names and the row labels;
    InputError naming the column/row for anything that is not a finite number."""
    if y is None:
        raise InputError("GMMAttributeSelector requires y to be passed, but the target y is None (the facies labels)")
    if sp.issparse(x):
        raise InputError("sparse input is not supported: attributes must be a dense table (array or DataFrame)")
    if isinstance(x, pd.DataFrame):
        names = [str(c) for c in x.columns]
        rows = list(x.index)
        for name, column in x.items():
            if not pd.api.types.is_numeric_dtype(column):
                raise InputError(f"attribute {str(name)!r} has dtype {column.dtype}; expected numbers")
        values = x.to_numpy(dtype=np.float64)
    else:
        try:
            values = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(f"attributes must be numbers: {err}") from None
        if values.ndim != 2:
            raise InputError(f"attributes must be a 2-D table (samples × attributes), got shape {values.shape}")
        names = [f"x{i}" for i in range(values.shape[1])]
        rows = list(range(values.shape[0]))
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != values.shape[0]:
        raise InputError(
            f"facies labels must be one per sample: got shape {labels.shape} for {values.shape[0]} samples"
        )
    if values.shape[1] < 1:
        raise InputError(
            f"0 feature(s) (shape={values.shape}) while a minimum of 1 is required: need at least one candidate "
            "attribute, got none"
        )
    bad = ~np.isfinite(values)
    if bad.any():
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        row = int(np.flatnonzero(bad[:, col])[0])
        raise InputError(
            f"attribute {names[col]!r} has a non-finite value ({values[row, col]}); expected finite numbers, no NaN "
            f"or inf ({int(bad[:, col].sum())} such rows in this column)",
            record=rows[row],
        )
    missing = pd.isna(pd.Series(labels)).to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise InputError("facies label is missing; expected a label for every sample", record=rows[row])
    return values, labels, names, rows


def _resolution(column: np.ndarray) -> float:
    """Smallest gap between distinct values (0 for a single value)."""
    distinct = np.unique(column)
    return float(np.diff(distinct).min()) if distinct.size > 1 else 0.0


def prepare_data(
    values: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    max_clusters: int,
    variance_floor: float,
    resolution_floor: bool,
    sem_iter: int,
    random_state: Any,
    facies_names: FaciesNames = None,
) -> tuple[PreparedData, list[str]]:
    """Validate the training table and compute what all combinations share; returns the data and
    the warnings about degenerate attributes found up front (not yet issued). Errors and warnings
    name facies by ``facies_names`` (see :func:`facies_label`)."""
    n_samples, n_attr = values.shape
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    shown = [facies_label(c, facies_names) for c in classes]
    if classes.size < 2:
        found = ", ".join(repr(name) for name in shown) or "none"
        what = "only one class" if classes.size == 1 else "no class"
        raise InputError(f"need at least 2 facies to compare, got {classes.size} ({found}): {what} to tell apart")
    required = max_clusters * (n_attr + 1)
    for facies, count in zip(shown, counts, strict=True):
        if count < required:
            raise InputError(
                f"facies {facies!r} has {count} training samples; {max_clusters} clusters over {n_attr} "
                f"attributes need at least {required} (max_clusters × (attributes + 1)) — pick more voxels, "
                "lower max_clusters or drop attributes"
            )
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    constant = np.flatnonzero(~(std > 1e-12 * np.maximum(np.abs(mean), 1.0)))
    if constant.size:
        j = constant[0]
        raise InputError(
            f"attribute {names[j]!r} is constant ({values[0, j]:.6g}) over all {n_samples} samples; "
            "it cannot separate facies — drop it"
        )
    z = (values - mean) / std
    floor = np.full(n_attr, float(variance_floor))
    coarse = np.zeros(n_attr, dtype=bool)
    if resolution_floor:
        quantisation = np.array([_resolution(z[:, j]) ** 2 / 12.0 for j in range(n_attr)])
        coarse = quantisation > floor
        floor = np.maximum(floor, quantisation)

    n_facies, s_max = classes.size, int(counts.max())
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(n_samples) - np.repeat(starts, counts)
    x = np.zeros((n_facies, s_max, n_attr))
    mask = np.zeros((n_facies, s_max), dtype=bool)
    x[codes[order], slot] = z[order]
    mask[codes[order], slot] = True
    offsets = x.sum(axis=1) / counts[:, None]
    x = np.where(mask[..., None], x - offsets[:, None, :], 0.0)
    features = augmented_data(x, mask)

    messages = _upfront_warnings(x, mask, counts, shown, names, floor, coarse, max_clusters, variance_floor)
    rng = check_random_state(random_state)
    uniforms = rng.random_sample((sem_iter, n_facies, s_max))
    prepared = PreparedData(
        names=tuple(names),
        classes=classes,
        counts=counts,
        mean=mean,
        std=std,
        x=x,
        features=features,
        mask=mask,
        offsets=offsets,
        floor=floor,
        uniforms=uniforms,
    )
    return prepared, messages


def _upfront_warnings(
    x: np.ndarray,
    mask: np.ndarray,
    counts: np.ndarray,
    facies_shown: Sequence[str],
    names: Sequence[str],
    floor: np.ndarray,
    coarse: np.ndarray,
    max_clusters: int,
    variance_floor: float,
) -> list[str]:
    """Warnings for (facies, attribute) pairs that will hit the floor: few distinct values, nearly
    constant within the facies, or attributes that are (nearly) linearly dependent. ``facies_shown``
    names the facies (``classes`` order) as the messages do."""
    messages = []
    variances = (x**2).sum(axis=1) / counts[:, None]  # (M, N), x is centred per facies
    for m, facies in enumerate(facies_shown):
        rows = x[m, mask[m]]
        for j, name in enumerate(names):
            distinct = np.unique(rows[:, j]).size
            if distinct <= max(max_clusters, 2) or (coarse[j] and distinct <= 10):
                messages.append(
                    f"attribute {name!r} takes only {distinct} distinct value(s) within facies {facies!r}: "
                    f"Gaussian clusters can collapse onto single values; its variances are floored at "
                    f"{floor[j]:.3g} × its overall variance"
                )
            elif variances[m, j] < floor[j]:
                messages.append(
                    f"attribute {name!r} is nearly constant within facies {facies!r} (variance "
                    f"{variances[m, j]:.3g} × its overall variance); its variances are floored at {floor[j]:.3g} ×"
                    " its overall variance"
                )
        usable = variances[m] >= floor
        if usable.sum() >= 2:
            sub = rows[:, usable]
            corr = np.corrcoef(sub, rowvar=False)
            smallest = float(np.linalg.eigvalsh(corr)[0])
            if smallest < variance_floor:
                off = np.abs(corr - np.eye(corr.shape[0]))
                a, b = np.unravel_index(np.argmax(off), off.shape)
                used = [n for n, u in zip(names, usable, strict=True) if u]
                messages.append(
                    f"attributes of facies {facies!r} are (nearly) linearly dependent (smallest eigenvalue of "
                    f"their correlation matrix {smallest:.2g}; most correlated pair {used[a]!r}/{used[b]!r}, "
                    f"r = {corr[a, b]:.4f}): covariances that include them are singular and are regularised by the "
                    "variance floor"
                )
    return messages


# --------------------------------------------------------------------------- scoring


def evaluate_combinations(prep: PreparedData, combos: np.ndarray, cfg: FitConfig) -> ChunkResult:
    """Fit the mixtures of every facies for A combinations of one size n (eqs. 1–6) and score
    each combination by its average cumulative Bhattacharyya distance (eqs. 7–8).

    ``combos`` (A, n) holds attribute indices. The batch is (A × M) problems sliced from the
    shared standardised data and outer products."""
    combos = np.sort(np.asarray(combos, dtype=np.int64), axis=1)  # _feature_rows needs ci < cj
    a, n = combos.shape
    m_count, s_max = prep.mask.shape
    j = cfg.max_clusters
    rows = _feature_rows(combos, len(prep.names))
    # problems facies-major (b = m·A + a): the shared GEMMs of each facies are one stacked matmul
    group = np.repeat(np.arange(m_count), a)
    fit = fit_mixtures(
        prep.x[:, :, combos].transpose(0, 2, 1, 3).reshape(m_count * a, s_max, n),
        np.repeat(prep.mask, a, axis=0),
        np.tile(prep.floor[combos], (m_count, 1)),
        max_clusters=j,
        models=cfg.models,
        sem_iter=cfg.sem_iter,
        cem_iter=cfg.cem_iter,
        kmeans_iter=cfg.kmeans_iter,
        uniforms=prep.uniforms,
        group=group,
        f=SharedRowsData(prep.features, np.tile(rows, (m_count, 1)), group),
    )
    offsets = prep.offsets[:, combos].transpose(1, 0, 2)  # (A, M, n): facies means back in
    means = fit.means.reshape(m_count, a, j, n).swapaxes(0, 1) + offsets[:, :, None, :]
    covs = fit.covariances.reshape(m_count, a, j, n, n).swapaxes(0, 1)
    scores = average_cumulative_distance(means, covs, fit.active.reshape(m_count, a, j).swapaxes(0, 1))
    collapsed = np.zeros((m_count, len(prep.names)), dtype=np.int64)
    facies_idx = np.broadcast_to(np.arange(m_count)[:, None, None], (m_count, a, n))
    attr_idx = np.broadcast_to(combos[None, :, :], (m_count, a, n))
    np.add.at(collapsed, (facies_idx, attr_idx), fit.collapsed.reshape(m_count, a, n).astype(np.int64))
    n_clusters, model = fit.n_clusters.reshape(m_count, a).T, fit.model.reshape(m_count, a).T
    return ChunkResult(scores, n_clusters, model, collapsed)


def _feature_rows(combos: np.ndarray, n_attr: int) -> np.ndarray:
    """Rows of the shared augmented data that make up each combination's own: (A, d)."""
    a, n = combos.shape
    pair = np.zeros((n_attr, n_attr), dtype=np.int64)
    pair[np.triu_indices(n_attr)] = np.arange(n_attr * (n_attr + 1) // 2)
    n_pairs = n_attr * (n_attr + 1) // 2
    iu, ju = np.triu_indices(n)
    quad = pair[combos[:, iu], combos[:, ju]]  # combinations are sorted, so ci ≤ cj
    const = np.full((a, 1), n_pairs + n_attr)
    return np.concatenate([quad, n_pairs + combos, const], axis=1)


def _chunk_starts(combos: np.ndarray, prep: PreparedData, n_workers: int) -> list[tuple[int, int]]:
    """(start, stop) rows of batches of one size that bound memory and feed every worker."""
    a, n = combos.shape
    per_combo = prep.mask.size * (n + 12)  # x (for k-means) and a dozen (problems, samples) arrays
    size = max(1, min(_CHUNK_ELEMENTS // per_combo, math.ceil(a / n_workers)))
    return [(i, min(i + size, a)) for i in range(0, a, size)]


def _evaluate_many(
    prep: PreparedData,
    groups: Sequence[np.ndarray],
    cfg: FitConfig,
    n_jobs: int | None,
    progress: bool | None,
    desc: str,
) -> list[ChunkResult]:
    """Score several arrays of combinations (each one size n), in parallel over chunks; returns
    one ChunkResult per input array."""
    n_workers = effective_n_jobs(n_jobs)
    tasks = [(g, lo, hi) for g, combos in enumerate(groups) for lo, hi in _chunk_starts(combos, prep, n_workers)]
    tasks.sort(key=lambda t: -(t[2] - t[1]) * groups[t[0]].shape[1] ** 2)  # largest first balances workers
    if n_workers == 1:
        results = (_evaluate_one_thread(prep, groups[g][lo:hi], cfg) for g, lo, hi in tasks)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(evaluate_combinations)(prep, groups[g][lo:hi], cfg) for g, lo, hi in tasks
        )
    disable = None if progress is None else not progress
    done: list[list[tuple[int, ChunkResult]]] = [[] for _ in groups]
    for (g, lo, _), res in zip(tasks, tqdm(results, total=len(tasks), desc=desc, disable=disable), strict=True):
        done[g].append((lo, res))
    merged = []
    for parts in done:
        parts.sort(key=lambda p: p[0])
        merged.append(
            ChunkResult(
                np.concatenate([r.scores for _, r in parts]),
                np.concatenate([r.n_clusters for _, r in parts]),
                np.concatenate([r.model for _, r in parts]),
                sum(r.collapsed for _, r in parts),
            )
        )
    return merged


def _evaluate_one_thread(prep: PreparedData, combos: np.ndarray, cfg: FitConfig) -> ChunkResult:
    # the batched matvecs are per-problem BLAS calls far too small to gain from BLAS threads
    # (joblib's workers are limited the same way)
    with threadpool_limits(limits=1, user_api="blas"):
        return evaluate_combinations(prep, combos, cfg)


def exhaustive_search(
    prep: PreparedData, cfg: FitConfig, n_jobs: int | None = None, progress: bool | None = None
) -> list[tuple[np.ndarray, ChunkResult]]:
    """All 2^N − 1 combinations, grouped by size n = 1 … N (eq. 8 for each)."""
    n_attr = len(prep.names)
    groups = [np.array(list(itertools.combinations(range(n_attr), n)), dtype=np.int64) for n in range(1, n_attr + 1)]
    results = _evaluate_many(prep, groups, cfg, n_jobs, progress, "attribute combinations")
    return list(zip(groups, results, strict=True))


def beam_search(
    prep: PreparedData, cfg: FitConfig, beam_width: int, n_jobs: int | None = None, progress: bool | None = None
) -> list[tuple[np.ndarray, ChunkResult]]:
    """Beam search over combination sizes: all N single attributes, then for n = 2 … N every
    extension by one attribute of the ``beam_width`` best combinations of size n − 1. With a beam
    as wide as the largest size class it is the exhaustive search."""
    n_attr = len(prep.names)
    found = []
    beam: list[tuple[int, ...]] = []
    for n in tqdm(range(1, n_attr + 1), desc="beam search", disable=None if progress is None else not progress):
        if n == 1:
            candidates = [(j,) for j in range(n_attr)]
        else:
            candidates = sorted({tuple(sorted((*b, j))) for b in beam for j in range(n_attr) if j not in b})
        combos = np.array(candidates, dtype=np.int64)
        (res,) = _evaluate_many(prep, [combos], cfg, n_jobs, False, f"size {n}")
        found.append((combos, res))
        keep = np.argsort(-res.scores, kind="stable")[:beam_width]
        beam = [candidates[i] for i in keep]
    return found


# --------------------------------------------------------------------------- the estimator


class GMMAttributeSelector(SelectorMixin, BaseEstimator):
    """Select the attribute combination whose facies GMMs lie farthest apart (AASPI
    attribute_selection; notes eqs. 1–9).

    Parameters
    ----------
    max_clusters : J, the most mixture clusters per facies and combination (K = 1 … J by BIC).
    sem_iter : SEM iterations that initialise the CEM (notes: 200).
    cem_iter : most CEM iterations (it stops when the partition no longer changes).
    kmeans_iter : most k-means iterations of the initial partition (notes: 300).
    covariance_models : Celeux–Govaert parameterisations to choose from by BIC (``gmm.COVARIANCE_MODELS``).
    search : "exhaustive", "beam", or "auto" (exhaustive up to ``exhaustive_max_n`` attributes).
    exhaustive_max_n : the most attributes searched exhaustively under "auto".
    beam_width : combinations kept per size in the beam search.
    variance_floor : variances are floored at this fraction of each attribute's overall variance
        (at least 1e-9; the M-step keeps float64 accuracy far below that).
    resolution_floor : also floor at resolution²/12 for coarsely recorded attributes (binary flags).
    tolerance : 0 picks the overall winner by eq. 9 (highest score). Bhattacharyya distances only
        grow when an attribute is added to a fixed mixture, so noise attributes nudge eq. 9 towards
        large combinations; a tolerance > 0 picks instead the smallest per-size winner O_n whose
        score is within ``tolerance`` × the highest score (e.g. 0.05: within 5 %).
    random_state : seed of the SEM draws (results do not depend on ``n_jobs`` or the search).
    n_jobs : joblib workers over batches of combinations (None = 1, −1 = all cores).
    progress : show progress bars (None: only on a terminal).
    facies_names : how errors and warnings name the facies: a sequence indexed by integer labels
        0..M-1 (e.g. ``meta.json``'s facies) or a mapping from label to name; labels it does not
        name are shown as they are. Messages only: ``classes_``, ``mixtures_`` and the scores keep
        the labels of ``y``.

    Fitted attributes
    -----------------
    scores_ : DataFrame, one row per evaluated combination: combination (tuple of names), n,
        score (eq. 8), n_clusters and covariance_models (tuples, one per facies, in ``classes_`` order).
    best_per_n_ : DataFrame indexed by n: the winning combination O_n and its score.
    best_combination_, best_score_ : the overall winner (eq. 9, see ``tolerance``) and its score.
    mixtures_ : {facies: GaussianMixtureFit} of the winning combination, in the input units.
    support_ : boolean mask of the selected attributes; warnings_ : list of warning texts.
    classes_, feature_names_in_ (DataFrame input), n_features_in_, search_ ("exhaustive" or "beam").
    """

    def __init__(
        self,
        max_clusters: int = 2,
        sem_iter: int = 200,
        cem_iter: int = 100,
        kmeans_iter: int = 300,
        covariance_models: Sequence[str] = COVARIANCE_MODELS,
        search: str = "auto",
        exhaustive_max_n: int = 12,
        beam_width: int = 20,
        variance_floor: float = 1e-3,
        resolution_floor: bool = True,
        tolerance: float = 0.0,
        random_state: Any = 0,
        n_jobs: int | None = None,
        progress: bool | None = None,
        facies_names: FaciesNames = None,
    ):
        self.max_clusters = max_clusters
        self.sem_iter = sem_iter
        self.cem_iter = cem_iter
        self.kmeans_iter = kmeans_iter
        self.covariance_models = covariance_models
        self.search = search
        self.exhaustive_max_n = exhaustive_max_n
        self.beam_width = beam_width
        self.variance_floor = variance_floor
        self.resolution_floor = resolution_floor
        self.tolerance = tolerance
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.progress = progress
        self.facies_names = facies_names

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _check_params(self) -> FitConfig:
        if int(self.max_clusters) < 1:
            raise ValueError(f"max_clusters must be ≥ 1, got {self.max_clusters}")
        if self.search not in ("auto", "exhaustive", "beam"):
            raise ValueError(f"search must be 'auto', 'exhaustive' or 'beam', got {self.search!r}")
        if not 1e-9 <= self.variance_floor <= 1.0:
            raise ValueError(f"variance_floor must be in [1e-9, 1], got {self.variance_floor}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if int(self.beam_width) < 1:
            raise ValueError(f"beam_width must be ≥ 1, got {self.beam_width}")
        models = (self.covariance_models,) if isinstance(self.covariance_models, str) else self.covariance_models
        models = tuple(models)
        for model in models:
            n_parameters(model, 1, 1)
        if not models:
            raise ValueError("covariance_models must name at least one model")
        return FitConfig(int(self.max_clusters), models, int(self.sem_iter), int(self.cem_iter), int(self.kmeans_iter))

    def fit(self, X: Any, y: Any) -> GMMAttributeSelector:  # noqa: N803 (scikit-learn naming)
        """Score the attribute combinations (exhaustive or beam search) and select the winner (eq. 9).

        ``X`` (n_samples, N) numbers (a DataFrame's columns name the attributes), ``y`` the facies
        label of every sample. Bad input raises ``InputError``."""
        cfg = self._check_params()
        values, labels, names, _ = _as_table(X, y)
        validate_data(self, X, y, dtype=np.float64)  # feature_names_in_, n_features_in_
        prep, messages = prepare_data(
            values,
            labels,
            names,
            max_clusters=cfg.max_clusters,
            variance_floor=float(self.variance_floor),
            resolution_floor=bool(self.resolution_floor),
            sem_iter=cfg.sem_iter,
            random_state=self.random_state,
            facies_names=self.facies_names,
        )
        n_attr = len(names)
        exhaustive = self.search == "exhaustive" or (self.search == "auto" and n_attr <= self.exhaustive_max_n)
        if exhaustive and n_attr > _EXHAUSTIVE_LIMIT:
            raise ValueError(
                f"{n_attr} attributes make {2**n_attr - 1} combinations, too many to search exhaustively; "
                "use search='beam' (or 'auto')"
            )
        self.search_ = "exhaustive" if exhaustive else "beam"
        if exhaustive:
            found = exhaustive_search(prep, cfg, self.n_jobs, self.progress)
        else:
            found = beam_search(prep, cfg, int(self.beam_width), self.n_jobs, self.progress)

        shown = [facies_label(c, self.facies_names) for c in prep.classes]
        rows = []
        collapsed = np.zeros((len(shown), n_attr), dtype=np.int64)
        containing = np.zeros(n_attr, dtype=np.int64)  # evaluated combinations with each attribute
        for combos, res in found:
            collapsed += res.collapsed
            containing += np.bincount(combos.ravel(), minlength=n_attr)
            for i, combo in enumerate(combos):
                rows.append(
                    {
                        "combination": tuple(names[k] for k in combo),
                        "n": combo.size,
                        "score": float(res.scores[i]),
                        "n_clusters": tuple(int(k) for k in res.n_clusters[i]),
                        "covariance_models": tuple(cfg.models[k] for k in res.model[i]),
                    }
                )
        scores = pd.DataFrame(rows)
        scores = scores.sort_values(["n", "score"], ascending=[True, False], kind="stable").reset_index(drop=True)
        self.scores_ = scores
        best_rows = scores.loc[scores.groupby("n", sort=True)["score"].idxmax()]
        self.best_per_n_ = best_rows.set_index("n")[["combination", "score"]]
        per_n = self.best_per_n_["score"]
        # eq. 9 (tolerance 0; ties go to the smaller n), else the smallest n within the tolerance
        winner = per_n.index[per_n.to_numpy() >= (1.0 - self.tolerance) * per_n.max()][0]
        self.best_combination_ = tuple(self.best_per_n_.loc[winner, "combination"])
        self.best_score_ = float(self.best_per_n_.loc[winner, "score"])
        self.support_ = np.array([name in self.best_combination_ for name in names])
        self.classes_ = prep.classes
        self.mixtures_ = _winning_mixtures(prep, cfg, np.flatnonzero(self.support_))

        warned = {
            (m, j)
            for m, facies in enumerate(shown)
            for j, name in enumerate(names)
            if _mentions(messages, name, facies)
        }
        # systematic collapse (not the odd small cluster of one CEM run): name it
        for m, j in zip(*np.nonzero(2 * collapsed >= containing[None, :]), strict=True):
            if (m, j) not in warned:
                messages.append(
                    f"attribute {names[j]!r} in facies {shown[m]!r}: mixture clusters collapsed onto it (variance "
                    f"below the floor, {prep.floor[j]:.3g} × its overall variance) in {collapsed[m, j]} of the "
                    f"{containing[j]} combinations with it; those fits were rejected (fewer clusters kept) — is it "
                    "a flag or a nearly discrete log?"
                )
        self.warnings_ = messages
        for message in messages:
            log.warning(message)
            warnings.warn(message, DegenerateAttributeWarning, stacklevel=2)
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


def _mentions(messages: Sequence[str], name: str, facies: str) -> bool:
    return any(f"{name!r}" in msg and f"facies {facies!r}" in msg for msg in messages)


def _winning_mixtures(prep: PreparedData, cfg: FitConfig, combo: np.ndarray) -> dict[str, GaussianMixtureFit]:
    """The facies mixtures of one combination, converted back to the input units."""
    m_count = prep.mask.shape[0]
    n = combo.size
    rows = _feature_rows(combo[None, :], len(prep.names))
    f = SharedRowsData(prep.features, np.repeat(rows, m_count, axis=0), np.arange(m_count))
    fit = fit_mixtures(
        prep.x[:, :, combo],
        prep.mask,
        np.broadcast_to(prep.floor[combo], (m_count, n)),
        max_clusters=cfg.max_clusters,
        models=cfg.models,
        sem_iter=cfg.sem_iter,
        cem_iter=cfg.cem_iter,
        kmeans_iter=cfg.kmeans_iter,
        uniforms=prep.uniforms,
        group=np.arange(m_count),
        f=f,
    )
    std, mean = prep.std[combo], prep.mean[combo]
    out = {}
    for m, facies in enumerate(prep.classes):
        k = int(fit.n_clusters[m])
        jacobian = prep.counts[m] * np.log(std).sum()
        out[str(facies)] = GaussianMixtureFit(
            model=cfg.models[int(fit.model[m])],
            weights=fit.weights[m, :k],
            means=(fit.means[m, :k] + prep.offsets[m, combo]) * std + mean,
            covariances=fit.covariances[m, :k] * np.outer(std, std),
            bic=float(fit.bic[m] - jacobian),
            log_likelihood=float(fit.log_likelihood[m] - jacobian),
        )
    return out


# --------------------------------------------------------------------------- synthetic data


def make_selection_data(
    n_attributes: int = 6,
    n_informative: int = 2,
    n_facies: int = 3,
    n_per_facies: int = 300,
    *,
    separation: float = 2.5,
    bimodal: bool = True,
    seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray, tuple[str, ...]]:
    """A training table with known truth, for tests and benchmarks: ``n_informative`` attributes
    (at random columns) separate the facies, the others are facies-independent noise at arbitrary
    scales and offsets. Facies m is centred at ``separation`` × ((m + d) mod M − (M − 1)/2) in
    informative attribute d, so every informative attribute alone separates all facies; with
    ``bimodal`` the first facies is a two-cluster mixture (as an MTD with chaotic and rotated
    blocks). Returns X (DataFrame, columns a0 …), y (facies names) and the informative names."""
    rng = np.random.default_rng(seed)
    names = [f"a{i}" for i in range(n_attributes)]
    informative = np.sort(rng.choice(n_attributes, size=n_informative, replace=False))
    parts, labels = [], []
    for m in range(n_facies):
        block = rng.normal(size=(n_per_facies, n_attributes))
        centre = separation * (((m + np.arange(n_informative)) % n_facies) - (n_facies - 1) / 2)
        if bimodal and m == 0:
            side = np.where(rng.random(n_per_facies) < 0.5, -1.0, 1.0)
            block[:, informative] = 0.5 * block[:, informative] + 0.8 * side[:, None]
        block[:, informative] += centre
        parts.append(block)
        labels += [f"facies{m}"] * n_per_facies
    x = np.vstack(parts)
    scale = np.exp(rng.uniform(-2, 2, n_attributes))
    offset = rng.uniform(-10, 10, n_attributes)
    frame = pd.DataFrame(x * scale + offset, columns=names)
    return frame, np.array(labels), tuple(names[i] for i in informative)
