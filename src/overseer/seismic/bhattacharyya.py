"""Bhattacharyya distance between Gaussian clusters (notes eq. 7) and the average cumulative
distance of an attribute combination (notes eq. 8).

All functions broadcast over leading axes, so one call scores every cluster pair of every
facies pair of every combination of one size n.
"""

from __future__ import annotations

import numpy as np


def bhattacharyya_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> np.ndarray:
    """Bhattacharyya distance between N(mean1, cov1) and N(mean2, cov2) (notes eq. 7)::

        D = 1/8 (μk − μj)ᵀ [(Σk + Σj)/2]⁻¹ (μk − μj) + 1/2 ln( |(Σk + Σj)/2| / sqrt(|Σk| |Σj|) )

    ``mean*`` have shape (..., n) and ``cov*`` (..., n, n); leading axes broadcast. Covariances
    must be symmetric positive definite (the mixtures regularise them). Returns shape (...).
    Computed in float64 with log-determinants, so it stays finite for n up to the full set.
    """
    mean1, mean2 = np.asarray(mean1, dtype=np.float64), np.asarray(mean2, dtype=np.float64)
    cov1, cov2 = np.asarray(cov1, dtype=np.float64), np.asarray(cov2, dtype=np.float64)
    avg = 0.5 * (cov1 + cov2)
    delta = mean1 - mean2
    delta, avg = np.broadcast_arrays(delta[..., None], avg)
    mahalanobis = np.sum(delta[..., 0] * np.linalg.solve(avg, delta)[..., 0], axis=-1)
    _, logdet_avg = np.linalg.slogdet(avg)
    _, logdet1 = np.linalg.slogdet(cov1)
    _, logdet2 = np.linalg.slogdet(cov2)
    return 0.125 * mahalanobis + 0.5 * (logdet_avg - 0.5 * (logdet1 + logdet2))


def average_cumulative_distance(means: np.ndarray, covariances: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Average cumulative distance of each combination (notes eq. 8, the term inside the max).

    ``means`` (A, M, J, n), ``covariances`` (A, M, J, n, n) and ``active`` (A, M, J) bool hold
    the J (padded) mixture clusters of the M facies for A combinations of one size n; a facies
    whose BIC chose fewer clusters has the rest inactive.

    Eq. 8 sums D over facies pairs m, l and cluster pairs j, k and divides by M²·J·K. Distances
    are taken only between clusters of *different* facies (a facies is not compared with
    itself), so the sum runs over the M(M−1) ordered pairs — D is symmetric, so the mean over the
    M(M−1)/2 unordered pairs is the same — and each facies pair is divided by its own cluster
    counts J_m·J_l. For a fixed M and all facies at J clusters this is eq. 8 up to the constant
    factor (M−1)/M, which does not change any ranking. Returns shape (A,).
    """
    means, covariances = np.asarray(means, np.float64), np.asarray(covariances, np.float64)
    active = np.asarray(active, bool)
    n_facies = means.shape[1]
    if n_facies < 2:
        raise ValueError(f"need at least 2 facies to compare, got {n_facies}")
    pair_means = []
    for m in range(n_facies):
        for other in range(m + 1, n_facies):
            dist = bhattacharyya_distance(
                means[:, m, :, None],
                covariances[:, m, :, None],
                means[:, other, None, :],
                covariances[:, other, None, :],
            )  # (A, J, J)
            weight = active[:, m, :, None] & active[:, other, None, :]
            pair_means.append(np.sum(np.where(weight, dist, 0.0), axis=(1, 2)) / weight.sum(axis=(1, 2)))
    return np.mean(pair_means, axis=0)
