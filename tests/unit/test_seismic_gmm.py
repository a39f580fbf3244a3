"""overseer.seismic.gmm and .bhattacharyya against numbers worked out by hand (notes eqs. 1–8)."""

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import multivariate_normal, norm

from overseer.seismic import gmm
from overseer.seismic.bhattacharyya import average_cumulative_distance, bhattacharyya_distance

# --------------------------------------------------------------------------- eq. 7


def test_bhattacharyya_identical_gaussians_is_zero() -> None:
    mean = np.array([1.0, -2.0, 0.5])
    cov = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    assert bhattacharyya_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("mu1", "s1", "mu2", "s2"), [(0.0, 1.0, 3.0, 1.0), (1.0, 0.5, -1.0, 2.0), (2.0, 3.0, 2.0, 0.1)]
)
def test_bhattacharyya_1d_closed_form(mu1: float, s1: float, mu2: float, s2: float) -> None:
    expected = (mu1 - mu2) ** 2 / (4 * (s1**2 + s2**2)) + 0.5 * math.log((s1**2 + s2**2) / (2 * s1 * s2))
    got = bhattacharyya_distance(np.array([mu1]), np.array([[s1**2]]), np.array([mu2]), np.array([[s2**2]]))
    assert got == pytest.approx(expected, rel=1e-12)
    # and the definition itself: D = −ln ∫ sqrt(p q) dx
    coefficient, _ = integrate.quad(lambda x: math.sqrt(norm.pdf(x, mu1, s1) * norm.pdf(x, mu2, s2)), -60, 60)
    assert got == pytest.approx(-math.log(coefficient), rel=1e-6)


def test_bhattacharyya_2d_by_hand() -> None:
    # Σ̄ = diag(2, 1); δ = (2, 0): 1/8 · 4/2 = 0.25; ½ ln(|Σ̄| / sqrt(|Σ1||Σ2|)) = ½ ln(2/√3)
    got = bhattacharyya_distance(np.zeros(2), np.eye(2), np.array([2.0, 0.0]), np.diag([3.0, 1.0]))
    assert got == pytest.approx(0.25 + 0.5 * math.log(2 / math.sqrt(3)), rel=1e-12)
    # correlated: Σ1 = [[2,1],[1,2]], Σ2 = [[2,-1],[-1,2]] → Σ̄ = 2I; δ = (1, 1): 1/8 · 2/2;
    # |Σ̄| = 4, |Σ1| = |Σ2| = 3 → ½ ln(4/3); total 0.125 + 0.143841… = 0.268841…
    s1 = np.array([[2.0, 1.0], [1.0, 2.0]])
    s2 = np.array([[2.0, -1.0], [-1.0, 2.0]])
    got = bhattacharyya_distance(np.zeros(2), s1, np.ones(2), s2)
    assert got == pytest.approx(0.125 + 0.5 * math.log(4 / 3), rel=1e-12)
    assert got == pytest.approx(0.268841, abs=1e-6)
    assert bhattacharyya_distance(np.ones(2), s2, np.zeros(2), s1) == pytest.approx(got, rel=1e-12)  # symmetric


def test_bhattacharyya_broadcasts() -> None:
    means = np.array([[0.0], [1.0], [2.0]])  # three 1-D Gaussians, unit variance
    covs = np.ones((3, 1, 1))
    table = bhattacharyya_distance(means[:, None], covs[:, None], means[None, :], covs[None, :])
    assert table.shape == (3, 3)
    np.testing.assert_allclose(table, (means - means.T) ** 2 / 8, atol=1e-12)  # (Δμ)²/(4·2)


def test_average_cumulative_distance_by_hand() -> None:
    # one combination (A=1), 1-D, M=3 facies; facies 0 has two clusters, facies 1 and 2 one each.
    means = np.array([[[[0.0], [4.0]], [[2.0], [0.0]], [[0.0], [0.0]]]])  # (1, 3, 2, 1)
    covs = np.ones((1, 3, 2, 1, 1))
    active = np.array([[[True, True], [True, False], [True, False]]])
    d = lambda a, b: (a - b) ** 2 / 8  # noqa: E731  equal unit variances: the log term is 0
    pair01 = (d(0, 2) + d(4, 2)) / 2  # 0.5
    pair02 = (d(0, 0) + d(4, 0)) / 2  # 1.0
    pair12 = d(2, 0)  # 0.5
    got = average_cumulative_distance(means, covs, active)
    assert got.shape == (1,)
    assert got[0] == pytest.approx((pair01 + pair02 + pair12) / 3)
    assert got[0] == pytest.approx(2.0 / 3)


# --------------------------------------------------------------------------- eq. 6 and the models


def test_parameter_counts_per_model() -> None:
    # K = 2 clusters in n = 3 dimensions: 1 weight + 6 mean entries + the covariance parameters
    expected = {"EII": 8, "VII": 9, "EEI": 10, "VEI": 11, "VVI": 13, "EEE": 13, "VEE": 14, "VVV": 19}
    assert {m: gmm.n_parameters(m, 2, 3) for m in gmm.COVARIANCE_MODELS} == expected
    assert gmm.n_parameters("VVV", 1, 2) == 2 + 3  # one 2-D Gaussian: mean and covariance
    with pytest.raises(ValueError, match="unknown covariance model"):
        gmm.n_parameters("XYZ", 1, 1)


@pytest.mark.parametrize("model", gmm.COVARIANCE_MODELS)
def test_bic_formula(model: str) -> None:
    eps = gmm.n_parameters(model, 2, 3)
    assert gmm.bic(-100.0, eps, 50) == pytest.approx(-100.0 - 0.5 * eps * math.log(50))


def _two_blobs(rng: np.random.Generator, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    labels = (rng.random(n) < 0.4).astype(int)
    centres = np.array([[0.0, 0.0], [6.0, 4.0]])
    scales = np.array([[1.0, 0.5], [0.7, 1.2]])
    return centres[labels] + rng.normal(size=(n, 2)) * scales[labels], labels


@pytest.mark.parametrize("model", gmm.COVARIANCE_MODELS)
def test_m_step_structure_and_eq5(model: str) -> None:
    """Each model's covariances have its Celeux–Govaert structure; eq. 5 from the partition's
    statistics equals the direct sum of log φk f(xi | μk, Σk), less the expected effect of the
    floor's blur, ½ Nk tr(Σk⁻¹ diag(floor))."""
    rng = np.random.default_rng(3)
    x, labels = _two_blobs(rng)
    x = np.column_stack([x, x[:, 0] * 0.5 + rng.normal(size=len(x))])  # 3-D, correlated
    f = gmm.augmented_data(x[None], np.ones((1, len(x)), bool))
    total = f.sum(axis=-1)
    counts, means, scatter = gmm._statistics(gmm._moments(f, labels[None], total, 2), 3)
    floor = np.full((1, 3), 1e-3)
    p = gmm._m_step(model, counts, means, scatter, floor)
    c0, c1 = p.cov[0]
    off = lambda c: c - np.diag(np.diag(c))  # noqa: E731
    if model[2] == "I":  # spherical or diagonal
        assert np.allclose(off(c0), 0) and np.allclose(off(c1), 0)
    if model in ("EII", "VII"):
        assert np.allclose(np.diag(c0), c0[0, 0]) and np.allclose(np.diag(c1), c1[0, 0])
    if model[0] == "E":  # equal volume (and here equal everything)
        np.testing.assert_allclose(c0, c1)
    if model in ("VEI", "VEE"):  # proportional: equal shape (and orientation)
        nonzero = np.abs(c0) > 1e-9
        ratio = c1[nonzero] / c0[nonzero]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
        assert not np.isclose(ratio[0], 1.0)
    if model in ("VVV", "EEE"):
        assert not np.allclose(off(c0), 0)
    np.testing.assert_allclose(p.weights[0], np.bincount(labels) / len(labels))
    direct = sum(
        np.sum(np.log(p.weights[0, k]) + multivariate_normal(p.means[0, k], p.cov[0, k]).logpdf(x[labels == k]))
        - 0.5 * counts[0, k] * np.trace(np.linalg.inv(p.cov[0, k]) @ np.diag(floor[0]))
        for k in range(2)
    )
    assert gmm._classification_loglik(counts, scatter, p, floor)[0] == pytest.approx(direct, rel=1e-10)


def test_vvv_m_step_is_sample_covariance_plus_floor() -> None:
    rng = np.random.default_rng(0)
    x, labels = _two_blobs(rng)
    f = gmm.augmented_data(x[None], np.ones((1, len(x)), bool))
    counts, means, scatter = gmm._statistics(gmm._moments(f, labels[None], f.sum(axis=-1), 2), 2)
    p = gmm._m_step("VVV", counts, means, scatter, np.full((1, 2), 0.01))
    for k in range(2):
        members = x[labels == k]
        np.testing.assert_allclose(p.means[0, k], members.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(p.cov[0, k], np.cov(members.T, bias=True) + 0.01 * np.eye(2), rtol=1e-9)


# --------------------------------------------------------------------------- k-means, SEM, CEM


def test_fit_recovers_two_well_separated_clusters() -> None:
    rng = np.random.default_rng(1)
    x, labels = _two_blobs(rng, 400)
    fit = gmm.fit_gmm(x, max_clusters=2, random_state=0)
    assert len(fit.weights) == 2
    order = np.argsort(fit.means[:, 0])
    np.testing.assert_allclose(fit.means[order], [[0.0, 0.0], [6.0, 4.0]], atol=0.2)
    np.testing.assert_allclose(fit.weights[order], np.bincount(labels) / len(labels), atol=1e-9)
    # the BIC of eq. 6 on the classification likelihood of eq. 5, in the data's units
    eps = gmm.n_parameters(fit.model, 2, 2)
    assert fit.bic == pytest.approx(fit.log_likelihood - 0.5 * eps * math.log(400), rel=1e-10)
    hard = np.argmax(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(x)
            for w, m, c in zip(fit.weights, fit.means, fit.covariances, strict=True)
        ],
        axis=0,
    )
    floor = np.diag(1e-3 * x.var(axis=0))  # variance_floor × each column's variance
    direct = sum(
        np.sum(np.log(fit.weights[k]) + multivariate_normal(fit.means[k], fit.covariances[k]).logpdf(x[hard == k]))
        - 0.5 * np.sum(hard == k) * np.trace(np.linalg.inv(fit.covariances[k]) @ floor)
        for k in range(2)
    )
    assert fit.log_likelihood == pytest.approx(direct, rel=1e-6)


def test_bic_chooses_one_cluster_and_the_right_family() -> None:
    rng = np.random.default_rng(2)
    spherical = rng.normal(size=(500, 3))
    fit = gmm.fit_gmm(spherical, random_state=0)
    assert len(fit.weights) == 1
    assert fit.model == "EII"  # the simplest model on ties and for a round cloud
    correlated = rng.multivariate_normal([0, 0], [[1.0, 0.9], [0.9, 1.0]], size=500)
    fit = gmm.fit_gmm(correlated, random_state=0)
    assert len(fit.weights) == 1
    assert fit.model in ("EEE", "VEE", "VVV")  # a full covariance is worth its parameter
    np.testing.assert_allclose(fit.covariances[0], np.cov(correlated.T, bias=True), atol=0.01)


def test_sem_escapes_a_poor_start_and_cem_finishes() -> None:
    """From a random partition (the poorest start), 200 SEM draws find the two clusters and CEM
    turns them into the final partition (notes, "Implementation")."""
    rng = np.random.default_rng(4)
    x, labels = _two_blobs(rng, 300)
    mask = np.ones((1, 300), bool)
    f = gmm.augmented_data(x[None], mask)
    total = f.sum(axis=-1)
    floor = np.full((1, 2), 1e-3)
    z0 = rng.integers(0, 2, (1, 300))
    uniforms = np.random.default_rng(0).random((200, 1, 300))
    z = gmm.sem_partition(f, f.astype(np.float32), total, floor, z0, 2, "VVV", uniforms, np.zeros(1, int), 3)
    counts, _, params, _ = gmm.cem_fit(f, f.astype(np.float32), total, floor, z, 2, "VVV", 100)
    assert sorted(counts[0]) == sorted(np.bincount(labels))
    order = np.argsort(params.means[0, :, 0])
    np.testing.assert_allclose(params.means[0, order], [[0.0, 0.0], [6.0, 4.0]], atol=0.2)


def test_batch_members_do_not_influence_each_other() -> None:
    rng = np.random.default_rng(5)
    a, _ = _two_blobs(rng, 200)
    b = rng.normal(size=(200, 2)) * [3.0, 0.2]
    uniforms = np.random.default_rng(1).random((50, 1, 200))
    kw = dict(max_clusters=2, sem_iter=50, uniforms=uniforms, group=np.zeros(2, int))
    both = gmm.fit_mixtures(np.stack([a, b]), np.ones((2, 200), bool), np.full((2, 2), 1e-3), **kw)
    kw["group"] = np.zeros(1, int)
    alone = gmm.fit_mixtures(a[None], np.ones((1, 200), bool), np.full((1, 2), 1e-3), **kw)
    np.testing.assert_allclose(both.means[0], alone.means[0], rtol=1e-12)
    assert both.bic[0] == pytest.approx(alone.bic[0], rel=1e-12)


def test_padded_samples_are_ignored() -> None:
    rng = np.random.default_rng(6)
    x, _ = _two_blobs(rng, 200)
    padded = np.concatenate([x, np.full((50, 2), 99.0)])  # junk rows, masked out
    mask = np.arange(250) < 200
    uniforms = np.random.default_rng(1).random((30, 1, 250))
    kw = dict(sem_iter=30, uniforms=uniforms, group=np.zeros(1, int))
    fit_p = gmm.fit_mixtures(padded[None], mask[None], np.full((1, 2), 1e-3), **kw)
    kw["uniforms"] = uniforms[..., :200]
    fit_x = gmm.fit_mixtures(x[None], np.ones((1, 200), bool), np.full((1, 2), 1e-3), **kw)
    np.testing.assert_allclose(fit_p.means, fit_x.means, rtol=1e-10)
    np.testing.assert_allclose(fit_p.covariances, fit_x.covariances, rtol=1e-10)


def test_collinear_and_binary_data_are_regularised() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=300)
    x = np.column_stack([base, base, (rng.random(300) < 0.5).astype(float)])  # singular + binary
    fit = gmm.fit_gmm(x, variance_floor=1e-3, random_state=0)
    assert np.isfinite(fit.bic)
    for cov in fit.covariances:
        assert np.linalg.eigvalsh(cov).min() > 0
        # no variance below the floor (1e-3 × the column's variance)
        assert np.all(np.diag(cov) >= 1e-3 * x.var(axis=0) * (1 - 1e-9))


# --------------------------------------------------------------------------- shared-rows batches (issue 11)


def _shared_problems(seed: int = 8, n_attr: int = 5, s: int = 90):
    """Two groups (facies) of s samples over n_attr attributes; problems are attribute subsets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, s, n_attr)) * [1.0, 2.0, 0.5, 1.5, 1.0][:n_attr]
    x[:, : s // 2, :2] += 3.0  # two clusters in the first two attributes
    mask = np.ones((2, s), bool)
    full = gmm.augmented_data(x, mask)
    pair = np.zeros((n_attr, n_attr), dtype=np.int64)
    pair[np.triu_indices(n_attr)] = np.arange(n_attr * (n_attr + 1) // 2)
    n_pairs = n_attr * (n_attr + 1) // 2

    def rows_of(combo):
        combo = np.asarray(combo)
        iu, ju = np.triu_indices(combo.size)
        return np.concatenate([pair[combo[iu], combo[ju]], n_pairs + combo, [n_pairs + n_attr]])

    return x, mask, full, rows_of


@pytest.mark.parametrize("n_clusters", [2, 3])
def test_shared_rows_data_matches_per_problem_data(n_clusters: int) -> None:
    x, mask, full, rows_of = _shared_problems()
    combos = [(0, 1, 3), (1, 2, 4), (0, 2, 3), (0, 1, 4)]
    group = np.array([0, 1, 1, 0])
    rows = np.stack([rows_of(c) for c in combos])
    shared = gmm.SharedRowsData(full, rows, group)
    xs = np.stack([x[g][:, list(c)] for c, g in zip(combos, group, strict=True)])
    per = gmm.PerProblemData(gmm.augmented_data(xs, mask[group]))
    np.testing.assert_allclose(shared.total, per.total, rtol=1e-12)
    z = np.random.default_rng(0).integers(0, n_clusters, (4, x.shape[1]))
    np.testing.assert_allclose(shared.moments(z, n_clusters), per.moments(z, n_clusters), rtol=1e-10, atol=1e-9)
    coef = np.random.default_rng(1).normal(size=(4, n_clusters - 1, rows.shape[1]))
    # per problem the E-step runs in float32, shared rows in float64
    np.testing.assert_allclose(shared.log_odds(coef), per.log_odds(coef), rtol=1e-4, atol=1e-4)
    # a subset (CEM compaction) gives the same rows bit for bit: no dependence on the batch
    sub = shared.subset(np.array([1, 3]))
    np.testing.assert_array_equal(sub.moments(z[[1, 3]], n_clusters), shared.moments(z, n_clusters)[[1, 3]])
    np.testing.assert_array_equal(sub.log_odds(coef[[1, 3]]), shared.log_odds(coef)[[1, 3]])


def test_joint_cem_of_all_models_equals_one_cem_per_model() -> None:
    x, mask, full, rows_of = _shared_problems()
    combos = [(0, 1), (1, 3), (0, 4), (2, 3)] * 2
    group = np.repeat([0, 1], 4)
    shared = gmm.SharedRowsData(full, np.stack([rows_of(c) for c in combos]), group)
    floor = np.full((8, 2), 1e-3)
    xs = np.stack([x[g][:, list(c)] for c, g in zip(combos, group, strict=True)])
    z0 = gmm.kmeans_partition(xs, mask[group], 2)
    joint = gmm.cem_fit_models(shared, floor, z0, 2, gmm.COVARIANCE_MODELS, 100)
    for model, (counts, scatter, params, loglik) in zip(gmm.COVARIANCE_MODELS, joint, strict=True):
        one = gmm.cem_fit(shared, None, None, floor, z0, 2, model, 100)
        np.testing.assert_array_equal(counts, one[0])
        np.testing.assert_array_equal(scatter, one[1])
        np.testing.assert_array_equal(loglik, one[3])
        np.testing.assert_array_equal(params.cov, one[2].cov)


def test_kmeans_members_of_a_batch_do_not_influence_each_other() -> None:
    x, mask, _, _ = _shared_problems()
    both = gmm.kmeans_partition(x, mask, 2)
    for b in range(2):
        np.testing.assert_array_equal(both[b], gmm.kmeans_partition(x[b : b + 1], mask[b : b + 1], 2)[0])


@pytest.mark.parametrize("n", [1, 2, 5, 12, 13, 16])
def test_spd_inverse_and_log_determinant(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.normal(size=(7, 2, n, n))
    cov = a @ np.swapaxes(a, -1, -2) + 0.05 * np.eye(n)
    prec, logdet = gmm._spd_inverse(cov)
    np.testing.assert_allclose(prec, np.linalg.inv(cov), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(cov)[1], rtol=1e-10, atol=1e-10)
    bad = cov.copy()
    bad[3, 1] = -np.eye(n)
    with pytest.raises(np.linalg.LinAlgError):
        gmm._spd_inverse(bad)


def test_spd_inverse_leaves_its_input_alone() -> None:
    cov = np.array([[[2.0, 0.5], [0.5, 1.0]]])  # one matrix: the batch-last copy is a view of it
    before = cov.copy()
    prec, _ = gmm._spd_inverse(cov)
    np.testing.assert_array_equal(cov, before)
    np.testing.assert_allclose(prec[0], np.linalg.inv(before[0]), rtol=1e-12)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_fused_vvv_sem_step_equals_the_m_step_and_coefficients(n: int) -> None:
    """_vvv_sem_step (one sweep of the augmented moment matrix) gives the coefficients, eq. 5 and
    admissibility of _vvv_step + _coefficients + _admissible, up to rounding; with an empty
    cluster and a cluster collapsed onto one value of an attribute among the problems."""
    rng = np.random.default_rng(n)
    b, s = 4, 120
    x = rng.normal(size=(b, s, n)) * rng.uniform(0.5, 2.0, n) + rng.normal(size=n)
    z = rng.integers(0, 2, (b, s))
    z[1] = 0  # cluster 1 empty
    x[2, z[2] == 1, 0] = 0.7  # cluster 1 collapsed in attribute 0
    f = gmm.augmented_data(x, np.ones((b, s), bool))
    moments = gmm._moments(f, z, f.sum(axis=-1), 2)
    floor = np.full((b, n), 1e-3)
    coef, loglik, valid = gmm._vvv_sem_step(moments, floor, n + 1)
    counts, means, scatter = gmm._statistics(moments.copy(), n)
    expected_valid = gmm._admissible(counts, scatter, floor, n + 1)
    params, expected_loglik = gmm._vvv_step(counts, means, scatter, floor)
    np.testing.assert_array_equal(valid, expected_valid)
    assert list(valid) == [True, False, False, True]
    np.testing.assert_allclose(loglik, expected_loglik, rtol=1e-12)
    np.testing.assert_allclose(coef, gmm._coefficients(params), rtol=1e-9, atol=1e-9)


def test_shared_rows_work_buffers_do_not_carry_over_between_calls() -> None:
    x, _, full, rows_of = _shared_problems()
    combos = [(0, 1), (1, 2, 4), (3,)]
    for row in (rows_of(c) for c in combos):  # one size at a time, as selection batches them
        shared = gmm.SharedRowsData(full, np.stack([row, row]), np.array([0, 1]))
        z1, z2 = (np.random.default_rng(k).integers(0, 3, (2, x.shape[1])) for k in (0, 1))
        c1, c2 = (np.random.default_rng(k).normal(size=(2, 2, row.size)) for k in (2, 3))
        first_m, first_l = shared.moments(z1, 3), shared.log_odds(c1)
        shared.moments(z2, 3), shared.log_odds(c2)
        np.testing.assert_array_equal(shared.moments(z1, 3), first_m)
        np.testing.assert_array_equal(shared.log_odds(c1), first_l)
        fresh = gmm.SharedRowsData(full, np.stack([row, row]), np.array([0, 1]))
        np.testing.assert_array_equal(fresh.log_odds(c1), first_l)
