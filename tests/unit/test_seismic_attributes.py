"""Seismic candidate attributes and the 3-D Kuwahara filter.

Hand-checked cases on tiny volumes (plane waves, checkerboards, noise) plus the default synthetic
survey, where each attribute must respond to the geology it was designed for.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from overseer.errors import InputError
from overseer.seismic.data import attributes as attr
from overseer.seismic.data import synthetic
from overseer.seismic.data.attributes import ATTRIBUTE_NAMES, candidate_attributes
from overseer.seismic.data.kuwahara import kuwahara3d
from overseer.seismic.data.synthetic import FACIES, NOISE_ATTRIBUTES, make_survey, noise_attributes, truth

BACKGROUND, SALT, MTD, CHANNEL = (FACIES.index(n) for n in ("background", "salt", "mtd", "channel"))


@pytest.fixture(scope="module")
def survey():
    return make_survey()


@pytest.fixture(scope="module")
def attributes(survey):
    return candidate_attributes(survey.amplitude, survey.dt_ms)


def _facies_mean(volume, facies, k):
    return float(volume[facies == k].mean())


def _plane_wave(shape=(16, 16, 48), p_inline=0.5, p_crossline=-0.25, period=10.0):
    i, x, s = np.ogrid[0 : shape[0], 0 : shape[1], 0 : shape[2]]
    return np.cos(2 * np.pi * (s - p_inline * i - p_crossline * x) / period).astype(np.float32)


# --- the nine attributes on the default survey ------------------------------------------------


def test_nine_named_attributes_float32_finite_same_shape(survey, attributes):
    assert tuple(attributes) == ATTRIBUTE_NAMES and len(ATTRIBUTE_NAMES) == 9
    for name, volume in attributes.items():
        assert volume.shape == survey.amplitude.shape, name
        assert volume.dtype == np.float32, name
        assert np.isfinite(volume).all(), name


def test_coherence_high_in_background_low_in_salt(survey, attributes):
    coh = attributes["coherence"]
    assert coh.min() >= 0.0 and coh.max() <= 1.0 + 1e-5
    background, salt = _facies_mean(coh, survey.facies, BACKGROUND), _facies_mean(coh, survey.facies, SALT)
    assert background > 0.8
    assert salt < background - 0.3


def test_dip_deviation_higher_in_mtd_than_background(survey, attributes):
    dev, fac = attributes["dip_deviation"], survey.facies
    assert _facies_mean(dev, fac, MTD) > 1.4 * _facies_mean(dev, fac, BACKGROUND)
    # on interior voxels, as picks see them, the rotated blocks stand out more
    mtd, background = (dev[synthetic._interior(fac, k, 2)].mean() for k in (MTD, BACKGROUND))
    assert mtd > 1.8 * background


def test_texture_and_energy_respond_to_their_facies(survey, attributes):
    fac = survey.facies
    # chaotic salt and MTD: disordered lateral texture
    entropy = {k: _facies_mean(attributes["glcm_entropy"], fac, k) for k in range(4)}
    assert entropy[SALT] > entropy[BACKGROUND] and entropy[MTD] > entropy[BACKGROUND]
    # weak salt has the least grey-level spread, bright channel fill the most
    variance = {k: _facies_mean(attributes["glcm_variance"], fac, k) for k in range(4)}
    assert min(variance, key=variance.get) == SALT and max(variance, key=variance.get) == CHANNEL
    # energy changes laterally at salt boundaries and channel margins, hardly in the layers
    energy = {k: _facies_mean(attributes["energy_gradient_deviation"], fac, k) for k in range(4)}
    assert min(energy, key=energy.get) == BACKGROUND
    # conformal layers do not converge
    convergence = {k: _facies_mean(attributes["reflector_convergence"], fac, k) for k in range(4)}
    assert min(convergence, key=convergence.get) == BACKGROUND


def test_noise_attributes_score_near_zero_and_informative_ones_clearly_above(survey, attributes):
    result = truth(survey, {**attributes, **noise_attributes(survey.facies.shape, seed=0)})
    json.dumps(result)
    scores = {n: s["bhattacharyya_mean"] for n, s in result["separation"].items()}
    assert result["informative"] == list(ATTRIBUTE_NAMES)
    assert result["uninformative"] == list(NOISE_ATTRIBUTES)
    noise = max(scores[n] for n in NOISE_ATTRIBUTES)
    informative = min(scores[n] for n in ATTRIBUTE_NAMES)
    assert noise < 0.02
    assert informative > 0.1 and informative > 10 * noise
    assert result["check"]["passed"], result["check"]
    assert set(result["ranking"][-2:]) == set(NOISE_ATTRIBUTES)


# --- hand-checked cases ---------------------------------------------------------------------


def test_coherence_of_identical_traces_is_one_and_of_noise_about_one_ninth():
    flat = np.broadcast_to(np.sin(np.arange(40) / 2.0), (8, 8, 40)).astype(np.float32)
    np.testing.assert_allclose(attr.coherence(flat, 9), 1.0, atol=1e-5)
    noise = np.random.default_rng(0).standard_normal((30, 30, 60)).astype(np.float32)
    # semblance of J uncorrelated traces has expectation ≈ 1/J
    assert attr.coherence(noise, 9).mean() == pytest.approx(1 / 9, abs=0.02)


def test_structure_tensor_recovers_plane_wave_dips():
    wave = _plane_wave()
    dips = attr.dip_angles(attr.structure_normals(wave))
    core = dips[4:-4, 4:-4, 8:-8]
    np.testing.assert_allclose(core[..., 0], np.arctan(0.5), atol=0.01)
    np.testing.assert_allclose(core[..., 1], np.arctan(-0.25), atol=0.01)
    assert attr.dip_deviation(dips, (5, 5, 9))[4:-4, 4:-4, 8:-8].max() < 0.05  # MTD blocks: ~0.3


def test_reflector_convergence_zero_for_parallel_layers_positive_for_fanning_ones():
    w = (5, 5, 9)
    parallel = attr.reflector_convergence(attr.structure_normals(_plane_wave()), w)[4:-4, 4:-4, 8:-8]
    i, x, s = np.ogrid[0:16, 0:16, 0:48]
    # layers thin along the crossline, τ = s·(1 + 0.08 x): the crossline dip p = 0.08 s/(1 + 0.08 x)
    # grows with depth, ∂p/∂s ≈ 0.05 at x = 8, and the normal turns by ∂n_x/∂s = cos³θ ∂p/∂s ≈ 0.013
    fanning = np.cos(2 * np.pi * s * (1 + 0.08 * x) / 10.0 + 0 * i).astype(np.float32)
    fan = attr.reflector_convergence(attr.structure_normals(fanning), w)[4:-4, 4:-4, 8:-8]
    assert parallel.max() < 0.01
    assert 0.008 < fan.mean() < 0.03
    assert fan.mean() > 3 * parallel.mean()


def test_spectral_bandwidth_of_a_tone_and_of_white_noise():
    t = np.arange(96)
    tone = np.broadcast_to(np.sin(2 * np.pi * 25.0 * t * 4e-3), (4, 4, 96)).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal((8, 8, 96)).astype(np.float32)
    bw_tone, _ = attr.spectral_statistics(tone, 4.0)
    bw_noise, _ = attr.spectral_statistics(noise, 4.0)
    # white noise: flat spectrum over 0–125 Hz, standard deviation ≈ 125/√12 ≈ 36 Hz
    assert bw_noise[..., 20:-20].mean() == pytest.approx(125 / np.sqrt(12), rel=0.1)
    assert bw_tone[..., 20:-20].max() < 0.4 * bw_noise[..., 20:-20].mean()  # one tone: the taper's main lobe


def test_spectral_roughness_keeps_shared_notches_and_smooths_incoherent_ones():
    rng = np.random.default_rng(0)
    wavelet = synthetic.ricker(25.0, 4.0)
    spikes = rng.standard_normal((6, 6, 96))
    shared = np.broadcast_to(spikes[:1, :1], spikes.shape)  # one layered reflectivity under every trace
    layered = ndimage.convolve1d(shared, wavelet, axis=-1).astype(np.float32)
    chaotic = ndimage.convolve1d(spikes, wavelet, axis=-1).astype(np.float32)  # every trace its own
    _, rough_layered = attr.spectral_statistics(layered, 4.0)
    _, rough_chaotic = attr.spectral_statistics(chaotic, 4.0)
    # averaged over 5×5 traces, the chaotic spectrum tends to the wavelet's smooth one
    assert rough_layered[..., 20:-20].mean() > 3 * rough_chaotic[..., 20:-20].mean()


def test_spectra_in_chunks_match_one_pass(monkeypatch):
    volume = np.random.default_rng(1).standard_normal((6, 5, 40)).astype(np.float32)
    whole = attr.spectral_statistics(volume, 4.0)
    monkeypatch.setattr(attr, "_SPECTRUM_BYTES", 1)  # one sample per chunk
    # float32 DFT by matrix product: BLAS sums in a chunk-size-dependent order (AVX-512 kernels give
    # ~2e-6 relative), so the tolerance is a few float32 ulps times the 64-term sums, not 1e-6
    for a, b in zip(attr.spectral_statistics(volume, 4.0), whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5)


def test_glcm_of_a_checkerboard_hand_checked():
    i, x = np.ogrid[0:9, 0:9]
    levels = np.broadcast_to(((i + x) % 2)[..., None], (9, 9, 5)).astype(np.uint8)
    w = (5, 5, 3)
    # every lateral pair is {0, 1}: one symmetric GLCM entry of P = 1 split into two cells of ½
    entropy = attr.glcm_entropy(levels, w)
    np.testing.assert_allclose(entropy[2:-3, 2:-3], np.log(2), atol=1e-5)  # (the last voxel pairs with itself)
    # 13 of one level and 12 of the other in a 5×5 window: variance 12·13/25²
    np.testing.assert_allclose(attr.glcm_variance(levels, w)[2:-2, 2:-2], 12 * 13 / 625, atol=1e-5)
    constant = np.zeros((9, 9, 5), np.uint8)
    assert attr.glcm_entropy(constant, w).max() == pytest.approx(0.0, abs=1e-6)
    assert attr.glcm_variance(constant, w).max() == pytest.approx(0.0, abs=1e-6)


def test_quantise_gives_equal_population_levels():
    values = np.random.default_rng(0).standard_normal((20, 20, 20)).astype(np.float32)
    counts = np.bincount(attr.quantise(values).ravel(), minlength=8)
    assert counts.size == 8 and counts.min() > 0.9 * values.size / 8


def test_candidate_attributes_reject_bad_input():
    with pytest.raises(InputError, match="3-D"):
        candidate_attributes(np.zeros((10, 10), np.float32))
    bad = np.zeros((8, 8, 16), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        candidate_attributes(bad)
    with pytest.raises(InputError, match="window"):
        candidate_attributes(np.zeros((8, 8, 16), np.float32), window=(5, 5))
    with pytest.raises(InputError, match="dt_ms"):
        candidate_attributes(np.zeros((8, 8, 16), np.float32), dt_ms=0)


def test_attributes_of_a_dead_volume_are_finite():
    out = candidate_attributes(np.zeros((8, 8, 16), np.float32))
    assert all(np.isfinite(v).all() for v in out.values())


# --- Kuwahara -------------------------------------------------------------------------------


def test_kuwahara_keeps_a_step_edge_sharp_unlike_a_mean_filter():
    block = np.zeros((12, 12, 12), np.float32)
    block[:, 6:, :] = 1.0
    block[7:, :, 4:] = 3.0  # a second edge, across another axis
    np.testing.assert_array_equal(kuwahara3d(block, radius=2), block)
    assert np.abs(ndimage.uniform_filter(block, 5) - block).max() > 0.3  # a mean filter blurs it


def test_kuwahara_reduces_noise_without_crossing_the_edge():
    rng = np.random.default_rng(0)
    block = np.zeros((16, 16, 16), np.float32)
    block[:, 8:, :] = 1.0
    noisy = block + 0.1 * rng.standard_normal(block.shape).astype(np.float32)
    out = kuwahara3d(noisy, radius=2)
    assert out.dtype == np.float32 and out.shape == block.shape
    flat = np.s_[:, 1:5, :]  # away from the edge
    assert (out - block)[flat].var() < 0.25 * (noisy - block)[flat].var()
    assert np.abs(out - block).max() < 0.3  # no voxel takes the other side's value (1.0 away)


def test_kuwahara_hand_checked_and_rejects_bad_input():
    rng = np.random.default_rng(0)
    values = (1e6 + 100 * rng.standard_normal((3, 3, 3))).astype(np.float32)  # offset: variance stays exact
    values[0:2, 0:2, 0:2] = 1e6 + 5 + 0.5 * np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    # with radius 1 the centre voxel's octants are the eight 2×2×2 corner cubes; the (low, low, low)
    # one has by far the least variance, so the centre takes its mean: 1e6 + 5 + 0.5·3.5
    assert kuwahara3d(values, radius=1)[1, 1, 1] == pytest.approx(1e6 + 6.75, abs=0.01)
    with pytest.raises(InputError, match="3-D"):
        kuwahara3d(np.zeros((4, 4)))
    with pytest.raises(InputError, match="radius"):
        kuwahara3d(np.zeros((4, 4, 4)), radius=0)
