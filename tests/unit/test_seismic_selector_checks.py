"""GMMAttributeSelector is a well-behaved scikit-learn estimator: scikit-learn's own estimator checks.

Tiny settings (one cluster, one covariance model, two iterations) keep the whole suite to seconds;
the checks exercise the API (cloning, parameters, input validation, fitted attributes,
``n_features_in_`` / ``feature_names_in_``, ``transform`` and ``get_support``), not the science.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from overseer.seismic.selection import GMMAttributeSelector

TINY = {"max_clusters": 1, "sem_iter": 2, "cem_iter": 2, "kmeans_iter": 2, "covariance_models": ("EII",)}

EXPECTED_FAILED = {
    "check_dtype_object": (
        "an attribute value that is not a number is the project's InputError (a ValueError that names the "
        "problem, printed by the CLI without a traceback), not the TypeError this check asks for"
    ),
}


@parametrize_with_checks(
    [GMMAttributeSelector(**TINY, progress=False)], expected_failed_checks=lambda estimator: EXPECTED_FAILED
)
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)
