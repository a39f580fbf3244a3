"""Gaussian mixtures by k-means → SEM → CEM, batched over many small problems (notes eqs. 1–6).

AASPI's attribute_selection fits a mixture of up to J clusters to the training voxels of every
facies in every attribute combination: thousands of small fits. Here one call fits a whole
*batch* of them at once — B problems with the same dimension n, stacked as (B, S, n) arrays with
a sample mask (facies have different sizes; padded rows are masked out) — so every step is a
handful of batched matmuls instead of a Python loop over fits.

The pieces, as in the notes (Wallet and Hardisty 2019; Celeux and Govaert 1992, 1995):

* k-means (Lloyd) in the plane of the first two eigenvectors of each problem's covariance gives
  the initial partition (notes, "Implementation").
* SEM: E-step (eq. 4), a random partition drawn from the responsibilities, M-step; ``sem_iter``
  of them, keeping the partition with the highest classification log-likelihood (eq. 5). This
  escapes the poor local optima a plain CEM falls into. SEM runs once per problem and number of
  clusters, with the most general covariance model requested; its partition seeds the CEM of
  every covariance model (a cache: the models share the SEM work).
* CEM: E-step, each sample to its most probable cluster, M-step, until the partition stops
  changing (at most ``cem_iter``): the final partition and mixture (eqs. 1–3, 5). With shared
  data the CEMs of all covariance models run as one batch (``cem_fit_models``).
* The number of clusters K = 1 … J and the covariance model (Celeux–Govaert family, below) are
  chosen per problem by the BIC of eq. 6, with L the classification likelihood of eq. 5 and α
  the number of training voxels (higher is better).

Covariance models Σk = λk Dk Ak Dkᵀ (volume λ, orientation D, shape A; mclust names):
EII λI, VII λk I (spherical, equal / free volume); EEI λB, VEI λk B, VVI λk Bk (diagonal);
EEE λDADᵀ, VEE λk DADᵀ, VVV free (full). VEI and VEE have no closed-form M-step; a few fixed-point
sweeps (Celeux and Govaert 1995) are used.

Regularisation: every M-step adds ``floor`` (per attribute, in the problem's units) times the
cluster count to the cluster scatter before the model is fitted, i.e. Σk = model(Wk/Nk + diag
(floor)), and the likelihood of eq. 5 counts the floor the same way (the expected log-likelihood
of data blurred by noise of variance ``floor``), so the fit and the BIC agree. Variances never
reach zero, singular covariances (collinear attributes, fewer samples than dimensions) stay
invertible, and each model stays in its family. A fit with K ≥ 2 in which a cluster collapses
(raw variance below the floor in some attribute — a cluster sitting on one value of a binary
attribute) is not a candidate: its likelihood and its Bhattacharyya distances would measure the
floor, not the data. K = 1 always is a candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

COVARIANCE_MODELS: tuple[str, ...] = ("EII", "VII", "EEI", "VEI", "VVI", "EEE", "VEE", "VVV")
MODEL_DESCRIPTIONS = {
    "EII": "spherical, equal volume",
    "VII": "spherical, free volume",
    "EEI": "diagonal, equal volume and shape",
    "VEI": "diagonal, free volume, equal shape",
    "VVI": "diagonal, free volume and shape",
    "EEE": "full, equal volume, shape and orientation",
    "VEE": "full, free volume, equal shape and orientation",
    "VVV": "full, free",
}
_LOG_2PI = float(np.log(2.0 * np.pi))
_FIXED_POINT_SWEEPS = 8  # VEI/VEE M-step sweeps; the CEM iterations refine further
_SWEEP_MAX_N = 12  # SPD inverses up to this size by the batched sweep operator (_spd_inverse)


def n_parameters(model: str, n_clusters: int, n_dims: int) -> int:
    """ε of eq. 6: free parameters of a K-cluster mixture in n dimensions under ``model``:
    K − 1 weights (eq. 2), K·n means and the covariance parameters of the model."""
    k, n = n_clusters, n_dims
    full = n * (n + 1) // 2
    covariance = {
        "EII": 1,
        "VII": k,
        "EEI": n,
        "VEI": k + n - 1,
        "VVI": k * n,
        "EEE": full,
        "VEE": k + full - 1,
        "VVV": k * full,
    }
    if model not in covariance:
        raise ValueError(f"unknown covariance model {model!r}; expected one of {COVARIANCE_MODELS}")
    return (k - 1) + k * n + covariance[model]


def bic(log_likelihood: np.ndarray | float, n_params: int, n_samples: np.ndarray | int) -> np.ndarray:
    """Bayesian information criterion of eq. 6: BIC = log L − ½ ε log α (higher is better), with
    ε the number of estimated parameters and α the number of training voxels."""
    return np.asarray(log_likelihood, np.float64) - 0.5 * n_params * np.log(np.asarray(n_samples, np.float64))


@dataclass(frozen=True)
class MixtureBatch:
    """B fitted mixtures, padded to J clusters (inactive clusters have weight 0)."""

    weights: np.ndarray  # (B, J) φk, eq. 2
    means: np.ndarray  # (B, J, n) μk
    covariances: np.ndarray  # (B, J, n, n) Σk (regularised)
    n_clusters: np.ndarray  # (B,) K chosen by BIC
    model: np.ndarray  # (B,) index into the ``models`` the batch was fitted with
    bic: np.ndarray  # (B,) eq. 6 of the chosen fit
    log_likelihood: np.ndarray  # (B,) eq. 5 of the chosen fit
    collapsed: np.ndarray  # (B, n) some candidate's cluster had a raw variance below the floor

    @property
    def active(self) -> np.ndarray:
        return self.weights > 0


@dataclass(frozen=True)
class GaussianMixtureFit:
    """One fitted mixture (``fit_gmm``), in the units of its data."""

    model: str
    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, n)
    covariances: np.ndarray  # (K, n, n)
    bic: float
    log_likelihood: float


# --------------------------------------------------------------------------- batched pieces
#
# Layout: a batch of B problems has the augmented data F (B, d, S), d = n(n+1)/2 + n + 1: per
# sample the products xi·xj (i ≤ j), x and 1 (all zero on padded rows). Then
#   M-step: F Z of the (B, S, K−1) indicators of clusters 1 … K−1 gives their second moments,
#           sums and counts; cluster 0 is the total (computed once) minus the others;
#   E-step: (Ck − C0) F with per-cluster coefficients C gives the log-odds
#           Δk = −2 log φk f(xi | μk, Σk) + 2 log φ0 f(xi | μ0, Σ0) of every sample,
# because (x−μ)ᵀΣ⁻¹(x−μ) = Σ_{i≤j} (2 − δij) Σ⁻¹ij xi xj − 2 (Σ⁻¹μ)·x + μᵀΣ⁻¹μ.
# An iteration is thus two batched matvecs plus work on (B, K, n, n) parameters; for K = 2 the
# C-step is Δ < 0 and the S-step Δ < 2 log((1 − u)/u) with precomputed thresholds.
# ``PerProblemData`` holds F per problem (float64 for the M-step, float32 for the E-step);
# ``SharedRowsData`` holds one F over all N attributes per group of problems that share their
# samples (the attribute combinations of one facies) and turns both products into one float64
# GEMM per group — the layout ``selection`` uses.


@lru_cache(maxsize=64)
def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n)


@lru_cache(maxsize=64)
def _symmetric_index(n: int) -> np.ndarray:
    """(n, n): position in the upper-triangle list (``_triu``) of entry (i, j) or (j, i)."""
    iu, ju = _triu(n)
    out = np.empty((n, n), dtype=np.int64)
    out[iu, ju] = np.arange(iu.size)
    out[ju, iu] = np.arange(iu.size)
    return out


def _spd_inverse(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σ⁻¹ and log|Σ| of symmetric positive definite matrices (..., n, n): the precision and
    log-determinant in f(x | μk, Σk) of eq. 3 (E-step, eq. 4; likelihood, eq. 5).

    Up to n = 12 by the sweep operator (Gauss–Jordan without pivoting, stable for SPD): n steps,
    each vectorised over the whole batch (stored batch-last), the pivots multiplying to |Σ|.
    Larger n: LAPACK per matrix (Cholesky for log|Σ|, then the inverse). Measured on one core
    (issue 11, session 4): on 1000 matrices the sweep takes 0.4 / 5.8 / 11.3 ms at n = 6 / 12 /
    16, LAPACK 2.6 / 10.0 / 14.3 ms, but a whole N = 16 size class fits no faster beyond 12 (and
    a handful of 17 × 17 matrices twice as slow), so the limit stays. Raises ``LinAlgError`` if
    a matrix is not positive definite."""
    n = cov.shape[-1]
    if n > _SWEEP_MAX_N:
        chol = np.linalg.cholesky(cov)
        return np.linalg.inv(cov), 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    lead = cov.shape[:-2]
    last = np.moveaxis(np.asarray(cov, np.float64).reshape(-1, n, n), 0, -1).copy()  # a copy even when m = 1
    inv, logdet = _sweep(last, range(n))
    return np.ascontiguousarray(np.moveaxis(inv, -1, 0)).reshape(cov.shape), logdet.reshape(lead)


def _sweep(a: np.ndarray, order: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The sweep operator (Gauss–Jordan without pivoting) on m SPD matrices stored batch-last,
    ``a`` (n, n, m) C-contiguous (overwritten), pivots in ``order`` (all n of them): returns a⁻¹
    (n, n, m) and log|a| (m,) (``_spd_inverse``). Batch-last, every NumPy operation runs over m
    contiguous values (with the batch first, the broadcasting loops run over n-long rows and
    cost several times more); the arithmetic per entry is the same either way."""
    logdet = np.zeros(a.shape[-1])
    outer = np.empty_like(a)
    for k in order:
        v = a[k].copy()  # (n, m): row k
        d = v[k].copy()
        if not (d > 0).all():
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        logdet += np.log(d)
        r = np.divide(v, d)
        a -= np.multiply(v[:, None, :], r[None, :, :], out=outer)
        a[k] = r
        a[:, k] = r
        a[k, k] = -1.0 / d
    return np.negative(a, out=a), logdet


@dataclass(frozen=True)
class _Params:
    weights: np.ndarray  # (B, K)
    means: np.ndarray  # (B, K, n)
    cov: np.ndarray  # (B, K, n, n)
    prec: np.ndarray  # (B, K, n, n) Σ⁻¹
    logdet: np.ndarray  # (B, K) log|Σ|


def augmented_data(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """F = [xi·xj (i ≤ j), x, 1] per sample, zero on padded rows: (B, d, S) float64 with
    d = n(n+1)/2 + n + 1 (samples last, so the E- and M-step matmuls run on contiguous data)."""
    b, s, n = x.shape
    iu, ju = _triu(n)
    out = np.empty((b, iu.size + n + 1, s))
    xt = np.swapaxes(x, 1, 2)
    out[:, : iu.size] = xt[:, iu] * xt[:, ju]
    out[:, iu.size : iu.size + n] = xt
    out[:, -1] = 1.0
    out *= mask[:, None, :]
    return out


def sem_thresholds(uniforms: np.ndarray) -> np.ndarray:
    """2 log((1 − u)/u): a two-cluster S-step puts a sample in cluster 1 when its log-odds Δ is
    below this (probability w_i1 of eq. 4 = 1/(1 + exp(Δ/2)))."""
    with np.errstate(divide="ignore"):
        return 2.0 * (np.log1p(-uniforms) - np.log(uniforms))


def _moments(f: np.ndarray, z: np.ndarray, total: np.ndarray, n_clusters: int) -> np.ndarray:
    """Σ over each cluster's samples of F: (B, K, d) float64. ``z`` (B, S) labels, ``total`` (B, d)
    the sum over all samples. ``f`` must be float64: the scatters subtract Nk μk μkᵀ from these
    sums and must stay accurate far below the variance floor."""
    if n_clusters == 1:
        return total[:, None, :]
    hot = (z[..., None] == np.arange(1, n_clusters)).astype(f.dtype)  # (B, S, K−1)
    rest = np.swapaxes(f @ hot, 1, 2).astype(np.float64)
    return np.concatenate([(total - rest.sum(axis=1))[:, None, :], rest], axis=1)


class PerProblemData:
    """Augmented data held per problem: F (B, d, S) float64 for the M-step and its float32 copy
    for the E-step log-odds (they only decide labels). One batched matvec per problem."""

    def __init__(self, f: np.ndarray, f32: np.ndarray | None = None, total: np.ndarray | None = None):
        self.f = f
        self.f32 = f.astype(np.float32) if f32 is None else f32
        self.total = f.sum(axis=-1) if total is None else total

    def subset(self, idx: np.ndarray) -> PerProblemData:
        return PerProblemData(self.f[idx], self.f32[idx], self.total[idx])

    def moments(self, z: np.ndarray, n_clusters: int) -> np.ndarray:
        return _moments(self.f, z, self.total, n_clusters)

    def log_odds(self, coef: np.ndarray) -> np.ndarray:
        return coef.astype(np.float32) @ self.f32


_GEMM_ROWS = 8  # row blocks of the shared GEMMs are padded to a multiple of this (see SharedRowsData)


class SharedRowsData:
    """Augmented data of problems that are column subsets of the same samples (the attribute
    combinations of one facies): one full F_g (D, S) per group g (facies) over all N attributes,
    D = N(N+1)/2 + N + 1, and per problem the rows (d,) of F_g that are its own F (``rows``).

    Nothing per problem is stored. Per EM iteration, the cluster moments of all problems of a
    group are one GEMM Z (P, S) @ F_gᵀ (S, D), each problem's d columns then gathered, and the
    log-odds one GEMM C (P, D) @ F_g (D, S), each problem's coefficients scattered into its rows
    of a zero matrix (the zeros add exact zeros); the G groups' GEMMs are one stacked matmul.
    Row ``rank·(K−1) + k`` of group block g belongs to cluster k of the rank-th problem of g.

    Both GEMMs are float64 with P (rows per group) padded to a multiple of 8: OpenBLAS then
    computes every output row with the same summation order whatever the other rows hold, so a
    problem's fit does not depend on its batch (float32 SGEMM does not have that property; the
    tests check batched against single-combination fits). Re-checked in issue 11 session 4:
    OpenBLAS 0.3.31's SGEMM rows differ in the last bit between batches at any row padding
    (8 … 64), so the float32 SEM E-step (25 % faster SEM) was not taken. The work arrays of
    both GEMMs are reused from call to call (``_buffer``)."""

    def __init__(self, full: np.ndarray, rows: np.ndarray, group: np.ndarray, total: np.ndarray | None = None):
        self.full = full  # (G, D, S)
        self.full_t = np.ascontiguousarray(np.swapaxes(full, 1, 2))  # (G, S, D)
        self.rows = np.asarray(rows, dtype=np.int64)  # (B, d)
        self.group = np.asarray(group, dtype=np.int64)  # (B,)
        if total is None:
            total = np.take_along_axis(full.sum(axis=-1)[self.group], self.rows, axis=1)
        self.total = total
        self._setup()

    def _setup(self) -> None:
        n_groups = self.full.shape[0]
        order = np.argsort(self.group, kind="stable")
        sizes = np.bincount(self.group, minlength=n_groups)
        rank = np.empty(self.group.size, dtype=np.int64)
        rank[order] = np.arange(self.group.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        self._rank, self._largest = rank, int(sizes.max(initial=0))
        self._layout: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        self._buffers: dict[tuple[str, int], np.ndarray] = {}

    def _buffer(self, kind: str, km: int, shape: tuple[int, ...]) -> np.ndarray:
        """A zeroed work array reused by every call with ``km`` clusters: the calls write the same
        (problem, cluster) rows every time, so the padding rows stay zero (no allocation and
        zero-fill per EM iteration)."""
        key = (kind, km)
        if key not in self._buffers:
            self._buffers[key] = np.zeros(shape)
        return self._buffers[key]

    def subset(self, idx: np.ndarray) -> SharedRowsData:
        out = SharedRowsData.__new__(SharedRowsData)
        out.full, out.full_t = self.full, self.full_t
        out.rows, out.group, out.total = self.rows[idx], self.group[idx], self.total[idx]
        out._setup()
        return out

    def _rows_of(self, km: int) -> tuple[int, np.ndarray, np.ndarray]:
        """P, the (B, K−1) flat row of every (problem, cluster) in the (G·P) stacked rows, and the
        flat position of each of its d own entries in the (G, P, D) moment product."""
        if km not in self._layout:
            padded = -(-max(self._largest * km, 1) // _GEMM_ROWS) * _GEMM_ROWS
            row = (self.group * padded + self._rank * km)[:, None] + np.arange(km)[None, :]
            self._layout[km] = (padded, row, row[..., None] * self.full.shape[1] + self.rows[:, None, :])
        return self._layout[km]

    def moments(self, z: np.ndarray, n_clusters: int) -> np.ndarray:
        """As ``_moments``: Σ over each cluster's samples of F (the counts, sums and second moments
        from which the M-step takes φk, μk and Σk, eqs. 2–3), (B, K, d) float64."""
        if n_clusters == 1:
            return self.total[:, None, :]
        n_groups, _, s = self.full.shape
        km = n_clusters - 1
        padded, row, index = self._rows_of(km)
        stack = self._buffer("z", km, (n_groups * padded, s))
        if km == 1:
            stack[row[:, 0]] = z == 1
        else:
            stack[row] = z[:, None, :] == np.arange(1, n_clusters)[None, :, None]
        product = self._buffer("moments", km, (n_groups, padded, self.full.shape[1]))
        rest = np.matmul(stack.reshape(n_groups, padded, s), self.full_t, out=product).reshape(-1)[index]
        return np.concatenate([(self.total - rest.sum(axis=1))[:, None, :], rest], axis=1)

    def log_odds(self, coef: np.ndarray) -> np.ndarray:
        """Δ (B, K−1, S) float64, the log-odds of eq. 4 (see ``_log_odds``), from the per-problem
        coefficients ``coef`` (B, K−1, d)."""
        n_groups, d_full, s = self.full.shape
        km = coef.shape[1]
        padded, row, index = self._rows_of(km)
        c = self._buffer("coef", km, (n_groups * padded * d_full,))
        c[index] = coef
        product = self._buffer("log_odds", km, (n_groups, padded, s))
        return np.matmul(c.reshape(n_groups, padded, d_full), self.full, out=product).reshape(-1, s)[row]


AugmentedData = PerProblemData | SharedRowsData


def _statistics(moments: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts Nk (B, K), means μk (B, K, n) and raw scatters Wk = Σ_{i∈k}(x−μk)(x−μk)ᵀ (B, K, n, n)
    from the cluster moments."""
    p = n * (n + 1) // 2
    counts = moments[..., -1]
    means = moments[..., p : p + n] / np.maximum(counts, 1.0)[..., None]
    second = moments[..., _symmetric_index(n)]  # (B, K, n, n), one gather
    second -= counts[..., None, None] * (means[..., :, None] * means[..., None, :])
    scatter = second
    return counts, means, scatter


def _m_step(model: str, counts: np.ndarray, means: np.ndarray, scatter: np.ndarray, floor: np.ndarray) -> _Params:
    """Weights φk = Nk/N (eq. 2) and covariances Σk of ``model`` from the regularised scatters
    Wk + Nk·diag(floor) (maximum classification likelihood, eq. 5)."""
    b, k = counts.shape
    n = scatter.shape[-1]
    safe = np.maximum(counts, 1.0)
    total = counts.sum(axis=1, keepdims=True)
    eye = np.eye(n)
    diag_reg = np.diagonal(scatter, axis1=-2, axis2=-1) + safe[..., None] * floor[:, None, :]  # (B, K, n)
    variances = None  # diagonal models: (B, K, n) variances
    if model == "EII":
        variances = np.broadcast_to((diag_reg.sum(axis=(1, 2)) / (n * total[:, 0]))[:, None, None], (b, k, n))
    elif model == "VII":
        variances = np.broadcast_to((diag_reg.sum(axis=-1) / (n * safe))[..., None], (b, k, n))
    elif model == "EEI":
        variances = np.broadcast_to((diag_reg.sum(axis=1) / total)[:, None, :], (b, k, n))
    elif model == "VVI":
        variances = diag_reg / safe[..., None]
    elif model == "VEI":
        lam = diag_reg.sum(axis=-1) / (n * safe)
        for _ in range(_FIXED_POINT_SWEEPS):
            shape = (diag_reg / lam[..., None]).sum(axis=1)
            shape = shape / np.exp(np.log(shape).mean(axis=-1, keepdims=True))  # |B| = 1
            lam = (diag_reg / shape[:, None, :]).sum(axis=-1) / (n * safe)
        variances = lam[..., None] * shape[:, None, :]
    if variances is not None:
        variances = np.ascontiguousarray(variances)
        return _Params(
            counts / total,
            means,
            variances[..., :, None] * eye,
            (1.0 / variances)[..., :, None] * eye,
            np.log(variances).sum(axis=-1),
        )

    reg = scatter + safe[..., None, None] * (floor[:, None, :, None] * eye)
    if model == "EEE":
        cov = (reg.sum(axis=1) / total[..., None])[:, None]
    elif model == "VVV":
        cov = reg / safe[..., None, None]
    elif model == "VEE":
        lam = np.trace(reg, axis1=-2, axis2=-1) / (n * safe)
        for _ in range(_FIXED_POINT_SWEEPS):
            common = (reg / lam[..., None, None]).sum(axis=1)
            inverse, logdet = _spd_inverse(common)  # one batched sweep, not LAPACK per matrix
            scale = np.exp(logdet / n)[:, None, None]
            common = common / scale  # |C| = 1
            lam = np.einsum("bkij,bji->bk", reg, inverse * scale) / (n * safe)
        cov = lam[..., None, None] * common[:, None]
    else:
        raise ValueError(f"unknown covariance model {model!r}; expected one of {COVARIANCE_MODELS}")
    prec, logdet = _spd_inverse(cov)  # EEE: once per problem, shared by its clusters
    shape = (b, k, n, n)
    cov, prec = np.broadcast_to(cov, shape), np.broadcast_to(prec, shape)
    return _Params(counts / total, means, cov, prec, np.broadcast_to(logdet, (b, k)))


def _log_odds(f: np.ndarray | AugmentedData, p: _Params) -> np.ndarray:
    """Δk = −2 log φk f(xi | μk, Σk) + 2 log φ0 f(xi | μ0, Σ0) (eqs. 1, 3, 4) for clusters
    k = 1 … K−1 and every sample: (B, K−1, S), one matmul (``f``: float32 F (B, d, S) or an
    ``AugmentedData``)."""
    coef = _coefficients(p)
    if isinstance(f, np.ndarray):
        return (coef[:, 1:] - coef[:, :1]).astype(f.dtype) @ f  # float32 F: a sample's label is all it decides
    return f.log_odds(coef[:, 1:] - coef[:, :1])


def _coefficients(p: _Params) -> np.ndarray:
    """C (B, K, d): −2 log φk f(x | μk, Σk) − n log 2π = C_k · F(x) (module notes)."""
    b, k, n = p.means.shape
    iu, ju = _triu(n)
    pmu = np.einsum("bkij,bkj->bki", p.prec, p.means)
    log_w = np.log(np.maximum(p.weights, 1e-300))  # an emptied cluster is never chosen again
    coef = np.empty((b, k, iu.size + n + 1))
    coef[..., : iu.size] = p.prec[..., iu, ju] * np.where(iu == ju, 1.0, 2.0)
    coef[..., iu.size : iu.size + n] = -2.0 * pmu
    coef[..., -1] = (p.means * pmu).sum(axis=-1) + p.logdet - 2.0 * log_w
    return coef


def _classification_loglik(counts: np.ndarray, scatter: np.ndarray, p: _Params, floor: np.ndarray) -> np.ndarray:
    """L(ψ) of eq. 5, Σk Σi zik log{φk f(xi | μk, Σk)}, from the partition's statistics:
    Σk [Nk log φk − ½ (Nk (n log 2π + log|Σk|) + tr(Σk⁻¹ (Wk + Nk diag(floor))))]. Returns (B,).

    The floor enters the trace as it enters the M-step: this is the expected log-likelihood of
    data blurred by independent noise of variance ``floor`` (for a binary or integer attribute:
    uniform noise over its resolution, variance resolution²/12), of which the M-step covariances
    are the maximum. Without it a cluster collapsed onto one value of a binary attribute would
    gain likelihood the data do not support, and BIC would split every facies on the flag."""
    n = scatter.shape[-1]
    trace = np.einsum("bkij,bkji->bk", p.prec, scatter)
    trace += counts * np.einsum("bkii,bi->bk", p.prec, floor)
    log_w = np.where(counts > 0, counts * np.log(np.where(counts > 0, p.weights, 1.0)), 0.0)
    return (log_w - 0.5 * (counts * (n * _LOG_2PI + p.logdet) + trace)).sum(axis=1)


def _collapsed(counts: np.ndarray, scatter: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """(B, K, n): a non-empty cluster whose raw variance is below the floor in that attribute."""
    raw = np.diagonal(scatter, axis1=-2, axis2=-1) / np.maximum(counts, 1.0)[..., None]
    return (raw < floor[:, None, :]) & (counts[..., None] > 0)


def _admissible(counts: np.ndarray, scatter: np.ndarray, floor: np.ndarray, min_size: int) -> np.ndarray:
    """(B,): every cluster holds ``min_size`` samples and none has collapsed."""
    return (counts >= min_size).all(axis=1) & ~_collapsed(counts, scatter, floor).any(axis=(1, 2))


def _c_step(delta: np.ndarray) -> np.ndarray:
    """Each sample to its most probable cluster (CEM), from the log-odds Δ (B, K−1, S)."""
    if delta.shape[1] == 1:
        return (delta[:, 0] < 0.0).astype(np.int64)
    best, z = np.zeros(delta.shape[::2]), np.zeros(delta.shape[::2], dtype=np.int64)
    for k in range(delta.shape[1]):
        better = delta[:, k] < best
        best = np.where(better, delta[:, k], best)
        z[better] = k + 1
    return z


def _s_step(delta: np.ndarray, threshold: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The S-step of SEM: each sample drawn into a cluster with its posterior probability wik
    (eq. 4). ``threshold`` = sem_thresholds(u) is used for K = 2; ``u`` (B, S) otherwise."""
    if delta.shape[1] == 1:
        return (delta[:, 0] < threshold).astype(np.int64)
    lp = -0.5 * np.concatenate([np.zeros_like(delta[:, :1]), delta], axis=1)
    e = np.exp(lp - lp.max(axis=1, keepdims=True))
    cut = u * e.sum(axis=1)
    running = np.zeros_like(cut)
    z = np.zeros(cut.shape, dtype=np.int64)
    for k in range(e.shape[1] - 1):
        running += e[:, k]
        z += running < cut
    return z


def kmeans_partition(x: np.ndarray, mask: np.ndarray, n_clusters: int, n_iter: int = 300) -> np.ndarray:
    """Initial partition (notes, "Implementation"): Lloyd's k-means in the plane of the first two
    eigenvectors of each problem's covariance, started from K equal-count slices along the first
    eigenvector (deterministic, so a combination's fit never depends on its batch). ``x`` (B, S, n),
    ``mask`` (B, S); returns labels (B, S). A problem whose partition stopped changing sits at a
    fixed point and leaves the batch (as in ``cem_fit``)."""
    n = x.shape[-1]
    counts = mask.sum(axis=1)
    mean = (x * mask[..., None]).sum(axis=1) / counts[:, None]
    xc = np.where(mask[..., None], x - mean[:, None, :], 0.0)
    _, vectors = np.linalg.eigh(np.swapaxes(xc, 1, 2) @ xc)
    y = xc @ vectors[..., ::-1][..., : min(2, n)]  # (B, S, d), first eigenvector first
    score = np.where(mask, y[..., 0], np.inf)
    rank = np.argsort(np.argsort(score, axis=1, kind="stable"), axis=1, kind="stable")
    z = np.minimum(rank * n_clusters // counts[:, None], n_clusters - 1)
    centers = None
    active = np.arange(z.shape[0])
    y_a, mask_a, z_a = y, mask, z
    for _ in range(n_iter):
        hot = (z_a[..., None] == np.arange(n_clusters)) & mask_a[..., None]
        nk = hot.sum(axis=1)
        new_centers = (np.swapaxes(hot, 1, 2).astype(np.float64) @ y_a) / np.maximum(nk, 1)[..., None]
        if centers is not None:  # an emptied cluster keeps its centre
            new_centers = np.where(nk[..., None] > 0, new_centers, centers)
        centers = new_centers
        sq = (centers**2).sum(axis=-1)[..., None] - 2.0 * (centers @ np.swapaxes(y_a, 1, 2))  # (B, K, S)
        z_new = np.where(mask_a, _c_step(sq[:, 1:] - sq[:, :1]), 0)
        moving = (z_new != z_a).any(axis=1)
        z[active] = z_new
        if not moving.any():
            break
        if moving.mean() <= 0.9:
            active, centers = active[moving], centers[moving]
            y_a, mask_a, z_new = y[active], mask[active], z_new[moving]
        z_a = z_new
    return z


def sem_partition(
    f: np.ndarray | AugmentedData,
    f32: np.ndarray | None,
    total: np.ndarray | None,
    floor: np.ndarray,
    z0: np.ndarray,
    n_clusters: int,
    model: str,
    uniforms: np.ndarray,
    group: np.ndarray,
    min_size: int,
) -> np.ndarray:
    """Stochastic EM (notes, "Implementation"): M-step, E-step (eq. 4), then each sample is drawn
    into a cluster with its posterior probabilities wik; once per row of ``uniforms``. Returns the
    partition with the highest classification log-likelihood (eq. 5) among the admissible ones
    (every cluster holds ``min_size`` samples, none collapsed onto the floor); a problem whose
    draw is not admissible restarts from ``z0``.

    ``f`` is the augmented data (float64, for the M-step), ``f32`` its float32 copy (for the
    E-step log-odds, which only decide labels) and ``total`` its sum over samples — or ``f`` is an
    ``AugmentedData`` (``PerProblemData``, ``SharedRowsData``) and the other two are ignored.
    ``uniforms`` (sem_iter, G, S) are the random numbers, shared by all problems of a group (a
    facies): a problem's result therefore depends only on its own data and the seed."""
    data = _as_data(f, f32, total)
    n = floor.shape[-1]
    thresholds = sem_thresholds(uniforms) if n_clusters == 2 else None
    z = z0.copy()
    best_z = z0.copy()
    b, s = z0.shape
    best = np.full(b, -np.inf)
    n_groups = uniforms.shape[1]
    per = b // n_groups
    # problems group-major with as many per group: the random numbers broadcast, no gather
    stacked = b == per * n_groups and np.array_equal(group, np.repeat(np.arange(n_groups), per))
    fused = model == "VVV" and n < _SWEEP_MAX_N  # the augmented sweep has n + 1 pivots (_spd_inverse)
    for it in range(uniforms.shape[0]):
        if fused:
            coef, loglik, valid = _vvv_sem_step(data.moments(z, n_clusters), floor, min_size)
        else:
            counts, means, scatter = _statistics(data.moments(z, n_clusters), n)
            valid = _admissible(counts, scatter, floor, min_size)
            if model == "VVV":
                params, loglik = _vvv_step(counts, means, scatter, floor)
            else:
                params = _m_step(model, counts, means, scatter, floor)
                loglik = _classification_loglik(counts, scatter, params, floor)
            coef = _coefficients(params)
        better = valid & (loglik > best)
        best = np.where(better, loglik, best)
        best_z[better] = z[better]
        delta = data.log_odds(coef[:, 1:] - coef[:, :1])
        if thresholds is not None and stacked:  # K = 2: Δ below 2 log((1 − u)/u)
            drawn = (delta.reshape(n_groups, per, s) < thresholds[it][:, None, :]).reshape(b, s)
        elif thresholds is not None:
            drawn = delta[:, 0] < thresholds[it][group]
        else:
            drawn = _s_step(delta, None, uniforms[it][group])
        z = np.where(valid[:, None], drawn, z0)
    return best_z


@lru_cache(maxsize=64)
def _augmented_layout(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How F's d = (n+1)(n+2)/2 entries [xi·xj (i ≤ j), x, 1] map onto the upper triangle of the
    (n+1) × (n+1) matrix x̃ x̃ᵀ, x̃ = (x, 1): the (n+1, n+1) position in F of every entry, and per
    F entry its row, column and weight (2 off the diagonal) in a quadratic form x̃ᵀ Q x̃ = C · F."""
    p = n * (n + 1) // 2
    index = np.empty((n + 1, n + 1), dtype=np.int64)
    index[:n, :n] = _symmetric_index(n)
    index[:n, n] = index[n, :n] = p + np.arange(n)
    index[n, n] = p + n
    iu, ju = _triu(n)
    rows = np.concatenate([iu, np.arange(n), [n]])
    cols = np.concatenate([ju, np.full(n, n), [n]])
    return index, rows, cols, np.where(rows == cols, 1.0, 2.0)


def _vvv_sem_step(moments: np.ndarray, floor: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One SEM M-step of VVV (Σk = Wk/Nk + diag(floor), φk = Nk/N, eqs. 2–3) fused with what the
    next E-step needs, from the cluster moments (B, K, d): the E-step coefficients C (B, K, d) of
    ``_coefficients``, the classification log-likelihood of eq. 5 (B,) as in ``_vvv_step`` and
    ``_admissible`` (B,).

    The moments of a cluster divided by Nk are its augmented second-moment matrix
    A = [[E xxᵀ + diag(floor), μ], [μᵀ, 1]] (``_augmented_layout``), whose Schur complement is
    Σk and whose inverse is [[Σk⁻¹, −Σk⁻¹μk], [−μkᵀΣk⁻¹, 1 + μkᵀΣk⁻¹μk]] with |A| = |Σk|. One
    sweep of A (``_sweep``, pivot of x̃'s 1 first: that is the centring) therefore gives the
    precision, Σk⁻¹μk, μkᵀΣk⁻¹μk and log|Σk| at once, the coefficients are A⁻¹'s entries, and the
    scatters and means are never formed. The maths is that of ``_vvv_step`` + ``_coefficients``;
    only the rounding differs (documented in benchmarks/README.md, issue 11)."""
    b, k, d = moments.shape
    n = floor.shape[-1]
    index, rows, cols, weight = _augmented_layout(n)
    counts = moments[..., -1]
    safe = np.maximum(counts, 1.0).reshape(-1)
    aug = moments.reshape(-1, d).T[index]  # (n+1, n+1, B·K), batch-last for _sweep
    aug /= safe
    diag = np.arange(n)
    floor_last = np.repeat(floor, k, axis=0).T  # (n, B·K)
    raw = aug[diag, diag] - aug[diag, n] ** 2  # raw variances Wk,ii/Nk
    aug[diag, diag] += floor_last
    aug[n, n] = 1.0  # Nk/Nk (an empty cluster: Σk = diag(floor), as in _vvv_step)
    inv, logdet = _sweep(aug, (n, *range(n)))
    logdet = logdet.reshape(b, k)
    collapsed = ((raw < floor_last) & (counts.reshape(-1) > 0)).any(axis=0).reshape(b, k)
    valid = (counts >= min_size).all(axis=1) & ~collapsed.any(axis=1)
    weights = counts / counts.sum(axis=1, keepdims=True)
    log_w = np.where(counts > 0, counts * np.log(np.where(counts > 0, weights, 1.0)), 0.0)
    loglik = (log_w - 0.5 * counts * (n * (_LOG_2PI + 1.0) + logdet)).sum(axis=1)
    coef = inv[rows, cols]  # (d, B·K)
    coef *= weight[:, None]
    coef[-1] += (logdet - 2.0 * np.log(np.maximum(weights, 1e-300)) - 1.0).reshape(-1)
    return coef.T.reshape(b, k, d), loglik, valid


def _vvv_step(
    counts: np.ndarray, means: np.ndarray, scatter: np.ndarray, floor: np.ndarray
) -> tuple[_Params, np.ndarray]:
    """The VVV M-step (Σk = (Wk + Nk diag(floor))/Nk, φk = Nk/N, eqs. 2–3) and the classification
    log-likelihood of eq. 5 in one pass, for the SEM loop. For VVV tr(Σk⁻¹ (Wk + Nk diag(floor)))
    = Nk·n, so eq. 5 is Σk Nk log φk − ½ Nk (n log 2π + log|Σk| + n) (as
    ``_classification_loglik`` up to rounding). ``scatter`` is overwritten."""
    n = scatter.shape[-1]
    safe = np.maximum(counts, 1.0)
    diag = np.arange(n)
    scatter[..., diag, diag] += safe[..., None] * floor[:, None, :]
    cov = np.divide(scatter, safe[..., None, None], out=scatter)
    prec, logdet = _spd_inverse(cov)
    weights = counts / counts.sum(axis=1, keepdims=True)
    log_w = np.where(counts > 0, counts * np.log(np.where(counts > 0, weights, 1.0)), 0.0)
    loglik = (log_w - 0.5 * counts * (n * (_LOG_2PI + 1.0) + logdet)).sum(axis=1)
    return _Params(weights, means, cov, prec, logdet), loglik


def cem_fit(
    f: np.ndarray | AugmentedData,
    f32: np.ndarray | None,
    total: np.ndarray | None,
    floor: np.ndarray,
    z: np.ndarray,
    n_clusters: int,
    model: str,
    n_iter: int,
) -> tuple[np.ndarray, np.ndarray, _Params, np.ndarray]:
    """Classification EM (Celeux and Govaert 1992): M-step, E-step, each sample to its most
    probable cluster, until no partition changes (at most ``n_iter``). Returns the counts, raw
    scatters, parameters and classification log-likelihood (eq. 5) of the final partition.
    ``f``, ``f32``, ``total`` as in ``sem_partition``.

    A problem whose partition stopped changing sits at a fixed point, so it leaves the batch
    (the rest is compacted once at most half of it is still moving). Padded rows have F = 0,
    hence Δ = 0 and label 0 throughout."""
    data = _as_data(f, f32, total)
    n = floor.shape[-1]
    z = z.copy()
    active = np.arange(z.shape[0])
    data_a, floor_a, z_a = data, floor, z
    for _ in range(n_iter):
        counts, means, scatter = _statistics(data_a.moments(z_a, n_clusters), n)
        z_new = _c_step(_log_odds(data_a, _m_step(model, counts, means, scatter, floor_a)))
        moving = (z_new != z_a).any(axis=1)
        z[active] = z_new
        if not moving.any():
            break
        if moving.mean() <= 0.5:
            active = active[moving]
            data_a, floor_a = data.subset(active), floor[active]
            z_new = z_new[moving]
        z_a = z_new
    counts, means, scatter = _statistics(data.moments(z, n_clusters), n)
    params = _m_step(model, counts, means, scatter, floor)
    return counts, scatter, params, _classification_loglik(counts, scatter, params, floor)


def cem_fit_models(
    data: SharedRowsData, floor: np.ndarray, z: np.ndarray, n_clusters: int, models: Sequence[str], n_iter: int
) -> list[tuple[np.ndarray, np.ndarray, _Params, np.ndarray]]:
    """``cem_fit`` (eqs. 1–3, 5) for every covariance model in ``models`` from the same start ``z``, run as one
    batch of (model, problem) rows: per iteration one moment GEMM and one log-odds GEMM for all
    models, the M-step per model on its rows. A row's result is that of its own ``cem_fit`` (a
    problem that stopped changing sits at a fixed point, and leaves the batch as there)."""
    n_models, (b, _) = len(models), z.shape
    n = floor.shape[-1]
    rows = np.tile(np.arange(b), n_models)  # model-major
    joint, floor_j = data.subset(rows), floor[rows]
    z_all = np.tile(z, (n_models, 1))
    active = np.arange(n_models * b)
    data_a, floor_a, z_a = joint, floor_j, z_all

    def params_of(counts, means, scatter, fl, owner) -> list[tuple[slice, _Params]]:
        bounds = np.searchsorted(owner, np.arange(n_models + 1))
        out = []
        for mi, model in enumerate(models):
            sl = slice(bounds[mi], bounds[mi + 1])
            if sl.start < sl.stop:
                out.append((sl, _m_step(model, counts[sl], means[sl], scatter[sl], fl[sl])))
        return out

    for _ in range(n_iter):
        counts, means, scatter = _statistics(data_a.moments(z_a, n_clusters), n)
        parts = params_of(counts, means, scatter, floor_a, active // b)
        coef = np.concatenate([_coefficients(p) for _, p in parts])
        z_new = _c_step(data_a.log_odds(coef[:, 1:] - coef[:, :1]))
        moving = (z_new != z_a).any(axis=1)
        z_all[active] = z_new
        if not moving.any():
            break
        if moving.mean() <= 0.9:  # rows are the cost (GEMM rows, M-steps); a subset is cheap
            active = active[moving]
            data_a, floor_a = joint.subset(active), floor_j[active]
            z_new = z_new[moving]
        z_a = z_new
    counts, means, scatter = _statistics(joint.moments(z_all, n_clusters), n)
    results = []
    for sl, params in params_of(counts, means, scatter, floor_j, np.repeat(np.arange(n_models), b)):
        loglik = _classification_loglik(counts[sl], scatter[sl], params, floor_j[sl])
        results.append((counts[sl], scatter[sl], params, loglik))
    return results


def _as_data(f: np.ndarray | AugmentedData, f32: np.ndarray | None, total: np.ndarray | None) -> AugmentedData:
    return f if isinstance(f, PerProblemData | SharedRowsData) else PerProblemData(f, f32, total)


def _most_general(models: Sequence[str]) -> str:
    return max(models, key=COVARIANCE_MODELS.index)


def fit_mixtures(
    x: np.ndarray,
    mask: np.ndarray,
    floor: np.ndarray,
    *,
    max_clusters: int = 2,
    models: Sequence[str] = COVARIANCE_MODELS,
    sem_iter: int = 200,
    cem_iter: int = 100,
    kmeans_iter: int = 300,
    uniforms: np.ndarray | None = None,
    group: np.ndarray | None = None,
    f: np.ndarray | AugmentedData | None = None,
) -> MixtureBatch:
    """Fit B mixtures of up to ``max_clusters`` clusters at once (eqs. 1–6) and keep, per problem,
    the number of clusters and covariance model with the highest BIC (eq. 6).

    ``x`` (B, S, n) float64 with padded rows masked out by ``mask`` (B, S); ``floor`` (B, n) the
    variance floor per problem and attribute (see module docstring). ``uniforms`` (sem_iter, G, S)
    in [0, 1) and ``group`` (B,) give the SEM random numbers (default: a fresh draw per problem
    from seed 0); ``f`` the augmented data of ``x`` (``augmented_data``) when the caller has it cached,
    or an ``AugmentedData`` (``SharedRowsData``: problems that are column subsets of shared samples).
    A fit with K ≥ 2 is a candidate only if every cluster holds n + 1 samples and none has
    collapsed (raw variance below the floor in some attribute, e.g. onto one value of a binary
    attribute): such a fit has an unbounded likelihood without the floor, and its distances
    measure the floor, not the data. K = 1 always is a candidate. ``collapsed`` in the result
    marks (problem, attribute) pairs where some candidate collapsed.
    """
    x = np.asarray(x, np.float64)
    mask = np.asarray(mask, bool)
    floor = np.asarray(floor, np.float64)
    b, s, n = x.shape
    models = tuple(models)
    if not models:
        raise ValueError("need at least one covariance model")
    for model in models:
        n_parameters(model, 1, 1)  # validates the name
    if f is None:
        f = augmented_data(x, mask)
    data = _as_data(f, None, None)  # per problem: float32 F for the E-step (it streams F every iteration)
    total = data.total
    if uniforms is None:
        uniforms = np.random.default_rng(0).random((sem_iter, b, s))
        group = np.arange(b)
    n_samples = mask.sum(axis=1)
    min_size = n + 1
    j = max_clusters

    best_bic = np.full(b, -np.inf)
    out_w = np.zeros((b, j))
    out_mu = np.zeros((b, j, n))
    out_cov = np.broadcast_to(np.eye(n), (b, j, n, n)).copy()
    out_k = np.ones(b, dtype=np.int64)
    out_model = np.zeros(b, dtype=np.int64)
    out_ll = np.full(b, -np.inf)
    out_collapsed = np.zeros((b, n), dtype=bool)

    def consider(k: int, model_index: int, counts, scatter, params: _Params, loglik, valid) -> None:
        score = np.where(valid, bic(loglik, n_parameters(models[model_index], k, n), n_samples), -np.inf)
        # strictly better by more than rounding: on ties the simpler model (listed first) or K stays
        tolerance = np.where(np.isfinite(best_bic), 1e-9 * np.maximum(1.0, np.abs(best_bic)), 0.0)
        take = score > best_bic + tolerance
        if not take.any():
            return
        best_bic[take] = score[take]
        out_ll[take] = loglik[take]
        out_k[take] = k
        out_model[take] = model_index
        out_w[take] = 0.0
        out_w[take, :k] = params.weights[take]
        out_mu[take] = 0.0
        out_mu[take, :k] = params.means[take]
        out_cov[take] = np.eye(n)
        out_cov[take, :k] = params.cov[take]

    # K = 1: one Gaussian per problem, closed form; always a candidate.
    counts, means, scatter = _statistics(total[:, None, :], n)
    out_collapsed |= _collapsed(counts, scatter, floor)[:, 0]
    for mi, model in enumerate(models):
        params = _m_step(model, counts, means, scatter, floor)
        loglik = _classification_loglik(counts, scatter, params, floor)
        consider(1, mi, counts, scatter, params, loglik, np.ones(b, bool))

    for k in range(2, j + 1):
        z_start = np.where(mask, kmeans_partition(x, mask, k, kmeans_iter), 0)
        if sem_iter > 0:
            z_start = sem_partition(
                data, None, None, floor, z_start, k, _most_general(models), uniforms[:sem_iter], group, min_size
            )
        if isinstance(data, SharedRowsData):
            fits = cem_fit_models(data, floor, z_start, k, models, cem_iter)
        else:
            fits = [cem_fit(data, None, None, floor, z_start, k, model, cem_iter) for model in models]
        for mi, (counts, scatter, params, loglik) in enumerate(fits):
            collapsed = _collapsed(counts, scatter, floor)
            out_collapsed |= collapsed.any(axis=1) & (counts >= min_size).all(axis=1)[:, None]
            consider(k, mi, counts, scatter, params, loglik, _admissible(counts, scatter, floor, min_size))

    return MixtureBatch(out_w, out_mu, out_cov, out_k, out_model, best_bic, out_ll, out_collapsed)


def fit_gmm(
    x: np.ndarray,
    *,
    max_clusters: int = 2,
    models: Sequence[str] = COVARIANCE_MODELS,
    sem_iter: int = 200,
    cem_iter: int = 100,
    variance_floor: float = 1e-3,
    random_state: int = 0,
) -> GaussianMixtureFit:
    """Fit one mixture of up to ``max_clusters`` clusters to ``x`` (n_samples, n), k-means → SEM →
    CEM with the model and K chosen by BIC (eqs. 1–6). Variances are floored at
    ``variance_floor`` × each column's variance. Returns the mixture in the units of ``x``."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    xs = (x - mean) / std
    uniforms = np.random.default_rng(random_state).random((sem_iter, 1, x.shape[0]))
    fit = fit_mixtures(
        xs[None],
        np.ones((1, x.shape[0]), bool),
        np.full((1, x.shape[1]), variance_floor),
        max_clusters=max_clusters,
        models=models,
        sem_iter=sem_iter,
        cem_iter=cem_iter,
        uniforms=uniforms,
        group=np.zeros(1, dtype=np.int64),
    )
    k = int(fit.n_clusters[0])
    jacobian = x.shape[0] * np.log(std).sum()  # densities in the units of x
    return GaussianMixtureFit(
        model=tuple(models)[int(fit.model[0])],
        weights=fit.weights[0, :k],
        means=fit.means[0, :k] * std + mean,
        covariances=fit.covariances[0, :k] * np.outer(std, std),
        bic=float(fit.bic[0] - jacobian),
        log_likelihood=float(fit.log_likelihood[0] - jacobian),
    )
