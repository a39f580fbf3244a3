"""Seismic synthetic survey: the facies model, its seismic, noise attributes, picks and the truth.

The default survey (48×48×96) builds in a fraction of a second, so it is built once per module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from overseer.errors import InputError
from overseer.seismic.data import synthetic
from overseer.seismic.data.synthetic import (
    FACIES,
    NOISE_ATTRIBUTES,
    make_survey,
    noise_attributes,
    reflectivity,
    ricker,
    separation_scores,
    synthetic_picks,
    truth,
)

BACKGROUND, SALT, MTD, CHANNEL = (FACIES.index(n) for n in ("background", "salt", "mtd", "channel"))


@pytest.fixture(scope="module")
def survey():
    return make_survey()


def test_facies_ids_are_fixed():
    assert FACIES == ("background", "salt", "mtd", "channel")


def test_survey_shapes_dtypes_and_finite(survey):
    assert survey.facies.shape == survey.impedance.shape == survey.amplitude.shape == (48, 48, 96)
    assert survey.facies.dtype == np.int8
    assert survey.impedance.dtype == np.float32 and survey.amplitude.dtype == np.float32
    assert np.isfinite(survey.impedance).all() and np.isfinite(survey.amplitude).all()
    assert (survey.impedance > 0).all()
    assert survey.dt_ms == 4.0
    # clean section scaled to RMS 1, plus 10 % noise
    assert np.sqrt(np.mean(survey.amplitude.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(1 + 0.1**2), rel=0.02)


def test_reproducible_by_seed(survey):
    again = make_survey(seed=0)
    np.testing.assert_array_equal(again.facies, survey.facies)
    np.testing.assert_array_equal(again.amplitude, survey.amplitude)
    assert again.params == survey.params
    other = make_survey(seed=1)
    assert not np.array_equal(other.facies, survey.facies)
    assert not np.array_equal(other.amplitude, survey.amplitude)


def test_every_facies_present_with_sensible_proportions(survey):
    fractions = np.bincount(survey.facies.ravel(), minlength=len(FACIES)) / survey.facies.size
    assert fractions.sum() == pytest.approx(1.0)
    assert fractions[BACKGROUND] > 0.5  # the layered background dominates
    assert 0.08 < fractions[SALT] < 0.3
    assert 0.08 < fractions[MTD] < 0.3
    assert 0.02 < fractions[CHANNEL] < 0.15
    assert survey.params["facies_fractions"]["channel"] == pytest.approx(fractions[CHANNEL], abs=1e-4)


def test_geology_reads_as_designed(survey):
    """Salt is a strong, nearly homogeneous impedance with a weak seismic response; channels are bright."""
    imp, amp, fac = survey.impedance, survey.amplitude, survey.facies
    assert imp[fac == SALT].mean() > 1.2 * imp[fac == BACKGROUND].mean()
    # away from the (bright) salt boundary, 3 voxels in
    interior = {k: synthetic._interior(fac, k, 3) for k in range(len(FACIES))}
    rms = {k: np.sqrt(np.mean(amp[m].astype(np.float64) ** 2)) for k, m in interior.items()}
    assert rms[SALT] < 0.5 * rms[BACKGROUND]
    assert rms[CHANNEL] > rms[BACKGROUND]
    # the salt rises from the base: it fills more of the deepest slice than of the middle one
    top = survey.params["salt"][0]["top_sample"]
    assert not (fac[:, :, : int(top) - 2] == SALT).any()
    assert (fac[:, :, -1] == SALT).mean() > (fac[:, :, int(top) + 10] == SALT).mean() > 0


def test_params_describe_the_model_and_are_json(survey):
    params = json.loads(json.dumps(survey.params))
    assert params["shape"] == [48, 48, 96] and params["seed"] == 0 and params["noise"] == 0.1
    assert params["wavelet"] == {"type": "ricker", "peak_hz": 25.0, "phase": "zero"}
    assert {"dip_inline", "dip_crossline"} <= params["background"].keys()
    assert params["salt"][0]["radius_traces"] > 0 and len(params["salt"][0]["centre"]) == 2
    assert len(params["channels"]) == 2 and {"angle_deg", "wavelength", "half_width"} <= params["channels"][0].keys()
    assert len(params["mtd"]["blocks"]) == params["mtd"]["n_blocks"]


def test_ricker_wavelet_hand_checked():
    w = ricker(25.0, 4.0)
    assert w.size % 2 == 1 and w[w.size // 2] == pytest.approx(1.0)  # peak 1 at t = 0
    np.testing.assert_allclose(w, w[::-1])  # zero phase
    t = 4e-3  # one sample: (1 − 2a)·e^−a with a = (π·25·0.004)²
    a = (np.pi * 25 * t) ** 2
    assert w[w.size // 2 + 1] == pytest.approx((1 - 2 * a) * np.exp(-a))
    spectrum = np.abs(np.fft.rfft(w, n=4096))
    assert np.fft.rfftfreq(4096, 4e-3)[spectrum.argmax()] == pytest.approx(25.0, abs=0.5)


def test_reflectivity_hand_checked():
    z = np.array([[[1.0, 1.0, 3.0, 3.0]]])
    np.testing.assert_allclose(reflectivity(z), [[[0.0, 0.5, 0.0, 0.0]]])


def test_amplitude_has_the_wavelet_dominant_frequency(survey):
    spectrum = np.abs(np.fft.rfft(survey.amplitude.astype(np.float64), axis=-1)).mean(axis=(0, 1))
    freqs = np.fft.rfftfreq(survey.amplitude.shape[-1], survey.dt_ms * 1e-3)
    peak = survey.params["wavelet"]["peak_hz"]
    # one stratigraphic sequence shapes every trace, so the peak is within ±30 % rather than exact
    assert abs(freqs[spectrum.argmax()] - peak) <= 0.3 * peak
    assert (spectrum[freqs > 3 * peak] ** 2).sum() < 0.05 * (spectrum**2).sum()  # band-limited


def test_make_survey_rejects_bad_arguments():
    with pytest.raises(InputError, match="shape"):
        make_survey(shape=(48, 48))
    with pytest.raises(InputError, match="noise"):
        make_survey(shape=(16, 16, 32), noise=-1)
    with pytest.raises(InputError, match="seed"):
        make_survey(shape=(16, 16, 32), seed=-1)


def test_small_survey_still_has_every_facies():
    small = make_survey(shape=(24, 24, 48), seed=3)
    assert set(np.unique(small.facies)) == set(range(len(FACIES)))


# --- noise attributes -----------------------------------------------------------------------


def test_noise_attributes_are_reproducible_smooth_and_white():
    fields = noise_attributes((20, 20, 40), seed=7)
    assert tuple(fields) == NOISE_ATTRIBUTES
    for volume in fields.values():
        assert volume.shape == (20, 20, 40) and volume.dtype == np.float32
        assert volume.std() == pytest.approx(1.0, rel=0.1)
    again = noise_attributes((20, 20, 40), seed=7, names=("noise_white", "noise_smooth"))
    np.testing.assert_array_equal(again["noise_smooth"], fields["noise_smooth"])  # order does not matter

    def lag1(v):
        return np.corrcoef(v[..., :-1].ravel(), v[..., 1:].ravel())[0, 1]

    assert lag1(fields["noise_smooth"]) > 0.8  # smooth along samples (σ = 3)
    assert abs(lag1(fields["noise_white"])) < 0.05
    assert not np.array_equal(noise_attributes((20, 20, 40), seed=8)["noise_white"], fields["noise_white"])


# --- picks ----------------------------------------------------------------------------------


def test_picks_lie_inside_the_grid_on_interior_voxels_of_their_facies(survey):
    picks = synthetic_picks(survey.facies, seed=0)
    assert list(picks.columns) == ["inline", "crossline", "sample", "facies"]
    assert not picks.duplicated(["inline", "crossline", "sample"]).any()
    coords = picks[["inline", "crossline", "sample"]].to_numpy()
    assert (coords >= 0).all() and (coords < np.array(survey.facies.shape)).all()
    np.testing.assert_array_equal(survey.facies[tuple(coords.T)], picks["facies"].to_numpy())
    # every facies, up to per_facies picks each
    counts = picks.groupby("facies").size()
    assert set(counts.index) == set(range(len(FACIES))) and (counts <= 300).all() and (counts >= 100).all()
    # interior: the voxels two steps away along every axis (inside the grid) share the facies
    shape = np.array(survey.facies.shape)
    for axis in range(3):
        for step in (-2, -1, 1, 2):
            moved = coords.copy()
            moved[:, axis] += step
            inside = ((moved >= 0) & (moved < shape)).all(axis=1)
            np.testing.assert_array_equal(survey.facies[tuple(moved[inside].T)], picks["facies"].to_numpy()[inside])


def test_picks_lie_on_the_requested_slices_and_are_reproducible(survey):
    picks = synthetic_picks(survey.facies, seed=1, inlines=[10, 30], time_slices=[20, 60], per_facies=50)
    on_slice = picks["inline"].isin([10, 30]) | picks["sample"].isin([20, 60])
    assert on_slice.all()
    assert (picks.groupby("facies").size() <= 50).all()
    again = synthetic_picks(survey.facies, seed=1, inlines=[10, 30], time_slices=[20, 60], per_facies=50)
    assert picks.equals(again)


def test_a_facies_off_every_slice_gets_its_own_inline():
    facies = np.zeros((14, 10, 20), np.int8)
    facies[5:11, 2:8, 2:8] = SALT  # not on inlines 2, 12 nor on time slice 15
    facies[:, :, 16:] = MTD
    facies[:, 8:, 16:] = CHANNEL
    picks = synthetic_picks(facies, seed=0, inlines=[2, 12], time_slices=[15], per_facies=10)
    salt = picks[picks["facies"] == SALT]
    # eroded by 2, the salt keeps inlines 7–8 × crosslines 4–5 × samples 4–5; the interpreter adds inline 7
    assert len(salt) == 4 and set(salt["inline"]) == {7}
    np.testing.assert_array_equal(facies[tuple(salt[["inline", "crossline", "sample"]].to_numpy().T)], SALT)


def test_picks_warn_about_an_absent_facies():
    facies = np.zeros((10, 10, 10), np.int8)
    facies[:, :, 5:] = SALT
    with pytest.warns(UserWarning, match=r"2 \(mtd\), 3 \(channel\) absent"):
        picks = synthetic_picks(facies, seed=0)
    assert set(picks["facies"]) == {BACKGROUND, SALT}


def test_picks_reject_bad_input():
    with pytest.raises(InputError, match="3-D"):
        synthetic_picks(np.zeros((4, 4), np.int8), seed=0)
    with pytest.raises(InputError, match="inline"):
        synthetic_picks(np.zeros((4, 4, 4), np.int8), seed=0, inlines=[9])


# --- separation and truth -------------------------------------------------------------------


def test_separation_scores_hand_checked():
    labels = np.array([0, 0, 1, 1])
    scores = separation_scores(np.array([0.0, 2.0, 2.0, 4.0]), labels)
    # μ = 1, 3; σ² = 1, 1: D = 2²/(4·2) + ½ ln(2/2) = 0.5; Fisher = (2·1 + 2·1)/(2·1 + 2·1) = 1
    assert scores["pairwise_bhattacharyya"] == {"background-salt": 0.5}
    assert scores["bhattacharyya_mean"] == 0.5 and scores["fisher"] == 1.0
    assert scores["facies_means"] == {"background": 1.0, "salt": 3.0}
    # unequal spreads add the log term: σ² = 1, 4, equal means → ½ ln(5/4)
    wide = separation_scores(np.array([-1.0, 1.0, -2.0, 2.0]), labels)
    assert wide["bhattacharyya_mean"] == pytest.approx(0.5 * np.log(5 / 4), abs=1e-4)
    # a large offset changes nothing but the means (the sums are centred)
    offset = separation_scores(np.array([0.0, 2.0, 2.0, 4.0]) + 1e9, labels)
    assert offset["bhattacharyya_mean"] == 0.5 and offset["facies_means"]["salt"] == pytest.approx(1e9 + 3)
    with pytest.raises(InputError, match="shape"):
        separation_scores(np.zeros(3), labels)
    with pytest.raises(InputError, match="facies ids"):
        separation_scores(np.zeros(4), np.array([0, 1, 2, 7]))


def test_truth_names_and_checks_the_attributes(survey):
    rng = np.random.default_rng(0)
    shape = survey.facies.shape
    good = survey.facies.astype(np.float32) + 0.3 * rng.standard_normal(shape).astype(np.float32)
    attributes = {
        "coherence": good,  # designed informative, and it is
        "glcm_entropy": rng.standard_normal(shape).astype(np.float32),  # designed informative, but it is not
        **noise_attributes(shape, seed=0),
    }
    result = truth(survey, attributes)
    assert json.loads(json.dumps(result)) == result  # JSON-ready
    assert result["informative"] == ["coherence", "glcm_entropy"]
    assert result["uninformative"] == list(NOISE_ATTRIBUTES)
    assert result["separation"]["coherence"]["bhattacharyya_mean"] > 1.0
    for name in NOISE_ATTRIBUTES:
        assert result["separation"][name]["bhattacharyya_mean"] < 0.02
    assert result["check"] == {
        "thresholds": synthetic.SEPARATION_THRESHOLDS,
        "passed": False,
        "failed": ["glcm_entropy"],
    }
    assert result["ranking"][0] == "coherence"
    assert result["model"] == survey.params and result["facies"] == list(FACIES)
    with pytest.raises(InputError, match="shape"):
        truth(survey, {"coherence": good[:-1]})
