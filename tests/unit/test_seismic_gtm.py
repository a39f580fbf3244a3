"""overseer.seismic.gtm: EM, responsibilities, facies PDFs and the fast predict_proba path.

Small data throughout (three Gaussian clusters in 4-D, an 8 × 8 latent grid, 3 × 3 basis
functions), so the whole file runs in a few seconds on one core.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from overseer.errors import InputError
from overseer.seismic.gtm import (
    GTM,
    MIN_CLASS_ROWS,
    GTMClassifier,
    GTMWarning,
    latent_grid,
    latent_pdf_maps,
    log_likelihood_is_monotone,
)

SMALL = {"grid": (8, 8), "rbf_grid": (3, 3)}
MEANS = np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 1.0, 4.0, 0.0], [0.0, 6.0, -1.0, -4.0]])


def clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows of three well-separated unit-variance Gaussian clusters in 4-D, and their labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(MEANS), n)
    return MEANS[y] + rng.standard_normal((n, MEANS.shape[1])), y


def semi_labels(y: np.ndarray, labelled_fraction: float = 0.2, seed: int = 1) -> np.ndarray:
    """y with all but ``labelled_fraction`` of the rows set to -1 (unlabelled)."""
    out = y.copy()
    out[np.random.default_rng(seed).random(len(y)) > labelled_fraction] = -1
    return out


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clusters(1200, seed=0)


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray]) -> GTMClassifier:
    x, y = data
    return GTMClassifier(**SMALL).fit(x, semi_labels(y))


# --------------------------------------------------------------------------- GTM and EM


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 10.0])
def test_em_log_likelihood_never_decreases(data: tuple[np.ndarray, np.ndarray], alpha: float) -> None:
    x, _ = data
    gtm = GTM(**SMALL, alpha=alpha, max_iter=60, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GTMWarning)  # tol=0: runs all 60 iterations
        gtm.fit(x)
    history = np.asarray(gtm.log_likelihood_)
    assert len(history) == gtm.n_iter_ + 1 == 61
    assert log_likelihood_is_monotone(history, rtol=1e-9)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[:-1]))
    assert history[-1] > history[0]


def test_log_likelihood_is_monotone_helper() -> None:
    assert log_likelihood_is_monotone([-10.0, -9.0, -9.0, -8.5])
    assert not log_likelihood_is_monotone([-10.0, -9.0, -9.5])
    assert log_likelihood_is_monotone([-10.0, -10.0 - 1e-12], rtol=1e-9)
    assert log_likelihood_is_monotone([])


def test_gtm_converges_and_records(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    gtm = GTM(**SMALL).fit(x)
    assert gtm.converged_ and gtm.n_iter_ < gtm.max_iter
    assert gtm.nodes_.shape == (64, 2) and gtm.centers_.shape == (64, 4) and gtm.W_.shape == (4, 10)
    np.testing.assert_allclose(gtm.centers_, gtm.phi_ @ gtm.W_.T)
    assert gtm.n_features_in_ == 4 and gtm.beta_ > 0
    # the final log-likelihood is the one of the fitted parameters
    assert gtm.log_likelihood_[-1] == pytest.approx(
        gtm.score_samples(x).sum() - 0.5 * gtm.alpha * np.sum(gtm.W_**2), rel=1e-10
    )


def test_responsibilities_sum_to_one(data: tuple[np.ndarray, np.ndarray], fitted: GTMClassifier) -> None:
    x, _ = data
    r = fitted.gtm_.transform(x)
    assert r.shape == (len(x), 64)
    assert np.all(r >= 0)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)
    assert fitted.unsupervised_pdf_.shape == (64,)
    assert fitted.unsupervised_pdf_.sum() == pytest.approx(1.0, rel=1e-12)
    assert fitted.facies_pdfs_.shape == (3, 64)
    np.testing.assert_allclose(fitted.facies_pdfs_.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(fitted.unsupervised_pdf_, r.mean(axis=0), rtol=1e-10)


def test_pca_initialisation(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    init = GTM(**SMALL, max_iter=0).fit(x)
    again = GTM(**SMALL, max_iter=0).fit(x)
    np.testing.assert_array_equal(init.W_, again.W_)
    assert init.beta_ == again.beta_
    # node images lie in the plane of the first two principal components through the mean ...
    t = (x - x.mean(axis=0)) / x.std(axis=0)
    eigval, eigvec = np.linalg.eigh(np.cov(t, rowvar=False))
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    np.testing.assert_allclose((init.centers_ - t.mean(axis=0)) @ eigvec[:, 2:], 0.0, atol=1e-10)
    # ... and β⁻¹ is the larger of the third eigenvalue and half the mean squared neighbour distance
    d2 = ((init.centers_[:, None] - init.centers_[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    assert 1.0 / init.beta_ == pytest.approx(max(eigval[2], 0.5 * d2.min(axis=1).mean()), rel=1e-10)


def test_subsample_is_seeded(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    a = GTM(**SMALL, max_samples=300, random_state=3).fit(x)
    b = GTM(**SMALL, max_samples=300, random_state=3).fit(x)
    c = GTM(**SMALL, max_samples=300, random_state=4).fit(x)
    assert a.n_samples_fit_ == 300
    np.testing.assert_array_equal(a.W_, b.W_)
    assert a.log_likelihood_ == b.log_likelihood_
    assert not np.array_equal(a.W_, c.W_)


def test_gtm_input_errors(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    flat = x.copy()
    flat[:, 2] = 5.0
    with pytest.raises(InputError, match="attribute column 2 has zero variance"):
        GTM(**SMALL).fit(flat)
    frame = pd.DataFrame(flat, columns=["amp", "coh", "sweet", "freq"])
    with pytest.raises(InputError, match=r"attribute column 2 \('sweet'\) has zero variance"):
        GTM(**SMALL).fit(frame)
    holes = x.copy()
    holes[[5, 9], 1] = np.nan
    holes[7, 0] = np.inf
    with pytest.raises(InputError, match=r"3 of 1200 rows have NaN or infinite.*row 5"):
        GTM(**SMALL).fit(holes)
    with pytest.raises(InputError, match="at least 10 rows"):
        GTM(**SMALL).fit(x[:5])
    with pytest.raises(InputError, match="grid"):
        GTM(grid=(0, 4)).fit(x)


# --------------------------------------------------------------------------- GTMClassifier


def test_classifier_recovers_clusters_on_held_out_rows(fitted: GTMClassifier) -> None:
    x_new, y_new = clusters(3000, seed=42)  # not the training rows
    for likelihood in ("bhattacharyya", "bayes"):
        model = clone(fitted).set_params(likelihood=likelihood) if likelihood == "bayes" else fitted
        if likelihood == "bayes":
            x, y = clusters(1200, seed=0)
            model.fit(x, semi_labels(y))
        accuracy = float(np.mean(model.predict(x_new) == y_new))
        assert accuracy > 0.95, (likelihood, accuracy)
    np.testing.assert_array_equal(fitted.classes_, [0, 1, 2])
    assert fitted.class_counts_.sum() == np.sum(semi_labels(clusters(1200, seed=0)[1]) >= 0)


@pytest.mark.parametrize("likelihood", ["bhattacharyya", "bayes"])
@pytest.mark.parametrize("priors", ["uniform", "counts"])
def test_fast_predict_proba_equals_reference(
    data: tuple[np.ndarray, np.ndarray], fitted: GTMClassifier, likelihood: str, priors: str
) -> None:
    model = fitted
    if (likelihood, priors) != ("bhattacharyya", "uniform"):
        x, y = data
        model = clone(fitted).set_params(likelihood=likelihood, priors=priors).fit(x, semi_labels(y))
    x_new, _ = clusters(2000, seed=7)
    x_new = np.vstack([x_new, np.linspace(-3, 9, 40)[:, None] * np.ones(4)])  # between the clusters too
    fast = model.predict_proba(x_new.astype(np.float32))
    ref = model._predict_proba_reference(x_new)
    assert fast.dtype == np.float32 and fast.shape == (len(x_new), 3)
    np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-6)
    fast64 = clone(model).set_params(dtype="float64")
    fast64.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    np.testing.assert_allclose(fast64.predict_proba(x_new), ref, rtol=1e-10, atol=1e-13)


def test_far_rows_take_the_shifted_path(fitted: GTMClassifier) -> None:
    far = np.array([[60.0, -40.0, 30.0, 50.0], [200.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5]])
    fast = fitted.predict_proba(far)
    assert np.all(np.isfinite(fast))
    np.testing.assert_allclose(fast, fitted._predict_proba_reference(far), rtol=1e-4, atol=1e-6)


def test_sub_blocks_and_threads_agree(fitted: GTMClassifier) -> None:
    x_new, _ = clusters(5000, seed=8)
    x_new = x_new.astype(np.float32)
    one = clone(fitted).set_params(block_rows=len(x_new), n_jobs=1)
    one.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    whole = one.predict_proba(x_new)
    for rows, jobs in [(1, 1), (7, 1), (333, 2), (4096, 2), (1000, -1)]:
        one.set_params(block_rows=rows, n_jobs=jobs)
        np.testing.assert_allclose(one.predict_proba(x_new), whole, rtol=1e-5, atol=1e-7, err_msg=f"{rows} {jobs}")


def test_non_finite_rows_give_nan(fitted: GTMClassifier) -> None:
    x_new, _ = clusters(50, seed=9)
    holes = x_new.copy()
    holes[3, 1] = np.nan
    holes[10, 0] = np.inf
    holes[11, 3] = -np.inf
    proba = fitted.predict_proba(holes)
    bad = np.zeros(len(holes), dtype=bool)
    bad[[3, 10, 11]] = True
    assert np.all(np.isnan(proba[bad])) and np.all(np.isfinite(proba[~bad]))
    np.testing.assert_allclose(proba[~bad], fitted.predict_proba(x_new[~bad]), rtol=1e-5, atol=1e-7)
    assert np.all(np.isnan(fitted._predict_proba_reference(holes)[bad]))
    labels = fitted.predict(holes)
    assert np.all(labels[bad] == -1) and set(labels[~bad]) <= {0, 1, 2}
    assert fitted.predict_proba(np.empty((0, 4))).shape == (0, 3)


def test_bhattacharyya_and_bayes_are_valid_probabilities(
    data: tuple[np.ndarray, np.ndarray], fitted: GTMClassifier
) -> None:
    x, y = data
    x_new, _ = clusters(500, seed=10)
    bayes = clone(fitted).set_params(likelihood="bayes").fit(x, semi_labels(y))
    counts = clone(fitted).set_params(likelihood="bayes", priors="counts").fit(x, semi_labels(y))
    for model in (fitted, bayes, counts):
        p = model.predict_proba(x_new)
        assert np.all((p >= 0) & (p <= 1))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(fitted.predict_proba(x_new), bayes.predict_proba(x_new), atol=1e-3)
    np.testing.assert_allclose(counts.priors_, counts.class_counts_ / counts.class_counts_.sum())
    np.testing.assert_allclose(bayes.priors_, 1 / 3)
    # Bhattacharyya probabilities are softer than Bayes posteriors (sqrt of the responsibilities)
    assert fitted.predict_proba(x_new).max(axis=1).mean() < bayes.predict_proba(x_new).max(axis=1).mean()


def test_classifier_errors_and_warnings(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    labels = semi_labels(y)
    few = labels.copy()
    few[np.flatnonzero(labels == -1)[: MIN_CLASS_ROWS - 1]] = 7
    with pytest.raises(InputError, match=rf"facies 7 has {MIN_CLASS_ROWS - 1} labelled rows"):
        GTMClassifier(**SMALL).fit(x, few)
    with pytest.raises(InputError, match="no labelled rows"):
        GTMClassifier(**SMALL).fit(x, np.full(len(x), -1))
    with pytest.raises(InputError, match="integer facies labels"):
        GTMClassifier(**SMALL).fit(x, np.where(labels == 0, -2, labels))
    with pytest.raises(InputError, match="integer facies labels"):
        GTMClassifier(**SMALL).fit(x, labels.astype(str))
    flat = x.copy()
    flat[:, 0] = 1.0
    with pytest.raises(InputError, match="attribute column 0 has zero variance"):
        GTMClassifier(**SMALL).fit(flat, labels)
    with pytest.raises(InputError, match="likelihood"):
        GTMClassifier(**SMALL, likelihood="kl").fit(x, labels)
    with pytest.warns(GTMWarning, match="no unlabelled rows"):
        GTMClassifier(**SMALL).fit(x, y)
    # a facies picked on one spot far from the rest: its PDF sits on one node
    spot = np.vstack([x, np.tile([[20.0, -20.0, 20.0, -20.0]], (12, 1))])
    spot_labels = np.concatenate([labels, np.full(12, 5)])
    with pytest.warns(GTMWarning, match="facies 5 has"):
        GTMClassifier(**SMALL).fit(spot, spot_labels)


def test_clone_get_params_and_pickle(fitted: GTMClassifier) -> None:
    params = fitted.get_params()
    for name in ("grid", "rbf_grid", "rbf_width", "alpha", "max_iter", "tol", "max_samples", "random_state"):
        assert name in params
    assert params["grid"] == (8, 8) and params["likelihood"] == "bhattacharyya"
    fresh = clone(fitted)
    assert fresh.get_params() == params and not hasattr(fresh, "facies_pdfs_")
    assert clone(GTM(grid=(4, 5))).get_params()["grid"] == (4, 5)
    x_new, _ = clusters(100, seed=11)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(x_new), fitted.predict_proba(x_new))


def test_dataframe_feature_names(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    names = ["amp", "coh", "sweet", "freq"]
    model = GTMClassifier(**SMALL).fit(pd.DataFrame(x, columns=names), semi_labels(y))
    assert list(model.feature_names_in_) == names
    proba = model.predict_proba(pd.DataFrame(x[:20], columns=names))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        plain = model.predict_proba(x[:20])
    np.testing.assert_allclose(proba, plain, rtol=1e-6)


def test_latent_pdf_maps(fitted: GTMClassifier) -> None:
    maps = latent_pdf_maps(fitted)
    assert sorted(maps) == ["facies_0", "facies_1", "facies_2", "unsupervised"]
    for m in maps.values():
        assert m.shape == (8, 8)
        assert m.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(maps["facies_1"].ravel(), fitted.facies_pdfs_[1])
    grid = latent_grid((2, 3))
    np.testing.assert_allclose(grid[:3], [[-1, -1], [-1, 0], [-1, 1]])
    with pytest.raises(InputError, match="GTMClassifier"):
        latent_pdf_maps(GTM())


def test_with_pdfs_from_keeps_the_map(data: tuple[np.ndarray, np.ndarray], fitted: GTMClassifier) -> None:
    x, y = data
    before = fitted.facies_pdfs_.copy()
    half = np.arange(len(x)) % 2 == 0
    other = fitted.with_pdfs_from(x[half], y[half])
    assert other.gtm_ is fitted.gtm_ and other is not fitted
    np.testing.assert_array_equal(other.unsupervised_pdf_, fitted.unsupervised_pdf_)
    np.testing.assert_array_equal(fitted.facies_pdfs_, before)  # the original is untouched
    r = fitted.gtm_.transform(x[half])
    for i, c in enumerate(other.classes_):
        np.testing.assert_allclose(other.facies_pdfs_[i], r[y[half] == c].mean(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(other.class_counts_, np.bincount(y[half]))
    assert other.predict_proba(x[:10]).shape == (10, 3)
    with pytest.raises(InputError, match="facies 2 has 3 labelled rows"):
        keep = (y != 2) | (np.cumsum(y == 2) <= 3)
        fitted.with_pdfs_from(x[keep], y[keep])
