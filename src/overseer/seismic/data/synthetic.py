"""The embedded default seismic survey: a labelled 3-D facies model with known truth.

The chain is the one a seismic interpreter reasons with, built in code (no network, no user data):

1. a labelled facies model on the grid (inline, crossline, sample):

   - **background**: layered, conformal strata — a blocky impedance sequence indexed by relative
     geologic time τ = s − (regional dip · position) − gentle undulation;
   - **mtd**: a lens-shaped mass-transport unit whose interior is broken into Voronoi blocks, most of
     them coherent strata rotated to a steep random dip, some chaotic (the "coherent rotated
     reflectors and incoherent matrix" of the notes);
   - **channel**: sinuous channels cut into the upper strata, filled with concave-up layers that
     thin and converge towards the margins, with a bright erosional base;
   - **salt**: a diapir rising from the base — a dome over a slightly flaring stock with a rough
     boundary — whose interior is nearly homogeneous with weak, chaotic, low-frequency texture
     ("weak envelope, low frequency, deviating boundaries of the reflector dip" in the notes);

2. impedance → normal-incidence reflectivity r = (Z₂ − Z₁)/(Z₂ + Z₁) along samples;
3. convolution with a zero-phase Ricker wavelet;
4. band-limited random noise (white noise through the same wavelet), scaled to ``noise`` × the RMS
   of the clean section.

Everything is vectorised over the grid (broadcast coordinates, lookup tables, a k-d tree for the
MTD blocks); the only loops run over a handful of geological bodies.

Besides the survey this module provides attributes that carry no information on purpose
(:func:`noise_attributes`), interpreter-like picks on a few slices (:func:`synthetic_picks`) and the
truth that selection and classification are checked against (:func:`truth`).
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage, signal
from scipy.spatial import cKDTree

from overseer.errors import InputError

log = logging.getLogger(__name__)

FACIES = ("background", "salt", "mtd", "channel")
BACKGROUND, SALT, MTD, CHANNEL = range(len(FACIES))

NOISE_ATTRIBUTES = ("noise_smooth", "noise_white")
# what each candidate attribute is designed to respond to in this model (see the notes' Figure 6)
ATTRIBUTE_DESIGN = {
    "coherence": "high in the layered background, lowest in chaotic salt, intermediate in MTD and channels",
    "spectral_bandwidth": "broadest in salt (weak low-frequency texture and in-band noise fill the band), "
    "narrower where a few strong reflectors dominate (channels, MTD)",
    "spectral_roughness": "laterally shared interference notches make the layered background's spectra rough; "
    "the salt's incoherent texture averages to a smooth spectrum",
    "glcm_entropy": "disordered lateral texture in salt and MTD, ordered in the layered background",
    "glcm_variance": "least grey-level spread in weak salt, most in bright channel fill",
    "dip_deviation": "random dips in salt and rotated MTD blocks deviate from the local mean dip; layers do not",
    "energy_gradient_deviation": "lateral energy changes at salt flanks, in MTD and channel fills; little in layers",
    "dip_energy_covariance": "dip and energy change together in salt, MTD blocks and channel margins, not in layers",
    "reflector_convergence": "dip changes vertically in salt, at MTD block edges and in converging channel fill",
}
# mean pairwise Bhattacharyya distance on the true labels; chance alone gives a smooth noise field ≈ 0.005
# (0.023 at most over 80 draws), the nine attributes ≥ 0.11 over ten surveys
SEPARATION_THRESHOLDS = {"informative_min": 0.1, "uninformative_max": 0.03}


@dataclass(frozen=True)
class Survey:
    """A synthetic survey on the grid (inline, crossline, sample).

    ``params`` holds everything needed to regenerate (``shape``, ``seed``, ``noise``, ``dt_ms``) and
    to describe the model (layer dips, bodies, channels, wavelet), as JSON-ready Python values.
    """

    facies: np.ndarray  # int8, ids index FACIES
    impedance: np.ndarray  # float32, acoustic impedance (relative units)
    amplitude: np.ndarray  # float32, the seismic section, RMS ≈ 1
    dt_ms: float
    params: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# wavelet and convolution


def ricker(peak_hz: float, dt_ms: float) -> np.ndarray:
    """Zero-phase Ricker wavelet w(t) = (1 − 2π²f²t²)·exp(−π²f²t²), sampled at ``dt_ms``, peak 1.

    It spans ±1.5 periods of the peak frequency (enough for the side lobes to vanish).
    """
    half = max(1, int(np.ceil(1.5 / peak_hz / (dt_ms * 1e-3))))
    t = np.arange(-half, half + 1) * dt_ms * 1e-3
    a = (np.pi * peak_hz * t) ** 2
    return ((1.0 - 2.0 * a) * np.exp(-a)).astype(np.float64)


def reflectivity(impedance: np.ndarray) -> np.ndarray:
    """Normal-incidence reflection coefficients along samples: r = (Z[s+1] − Z[s]) / (Z[s+1] + Z[s]).

    The last sample gets r = 0 so the volume keeps its shape.
    """
    z = impedance.astype(np.float64)
    r = np.zeros_like(z)
    r[..., :-1] = (z[..., 1:] - z[..., :-1]) / (z[..., 1:] + z[..., :-1])
    return r


def _convolve(volume: np.ndarray, wavelet: np.ndarray) -> np.ndarray:
    """Convolve every trace with ``wavelet`` (centred, same length; the volume is reflected at its ends)."""
    return ndimage.convolve1d(volume, wavelet[::-1], axis=-1, mode="reflect")


# ---------------------------------------------------------------------------------------------
# the facies model's ingredients


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: Sequence[float]) -> np.ndarray:
    """A Gaussian random field: white noise smoothed with ``sigma``, scaled to unit standard deviation."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def _layer_sequence(rng: np.random.Generator, tau_min: float, tau_max: float, thickness: Sequence[float]):
    """Blocky layering along τ: boundaries (ascending) and log-impedance of each layer.

    Thicknesses are uniform in ``thickness`` samples. Log-impedance is a compaction trend plus an
    AR(1) sequence over the layers (coefficient 0.8, innovations of 8 %), correlated like real logs
    rather than independent layer by layer (which would make the reflectivity blue).
    """
    n = int(np.ceil((tau_max - tau_min) / thickness[0])) + 2
    tops = tau_min + np.concatenate([[0.0], np.cumsum(rng.uniform(*thickness, size=n))])
    trend = 0.0015 * np.concatenate([[0.0], tops - tau_min])  # layer k lies between tops[k-1] and tops[k]
    ar1 = signal.lfilter([1.0], [1.0, -0.8], 0.08 * rng.standard_normal(trend.size))
    return tops, np.log(6.0) + trend + ar1


def _lookup(tops: np.ndarray, log_z: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Log-impedance at relative geologic time ``tau`` (the layer that ``tau`` falls in)."""
    return log_z[np.searchsorted(tops, tau)]


def _draw_model(shape: tuple[int, int, int], rng: np.random.Generator) -> dict[str, Any]:
    """Draw the geometric parameters of the facies model (scaled to the grid)."""
    ni, nx, ns = shape
    n_lat = min(ni, nx)
    salt_radius = 0.27 * n_lat
    return {
        "background": {
            "dip_inline": float(rng.uniform(-0.15, 0.15)),  # samples per trace
            "dip_crossline": float(rng.uniform(-0.15, 0.15)),
            "undulation_samples": float(0.03 * ns),
            "undulation_sigma_traces": float(n_lat / 5),
            "layer_thickness_samples": [2.0, 6.0],
        },
        "mtd": {
            "centre": [float(rng.uniform(0.35, 0.65) * ni), float(rng.uniform(0.35, 0.65) * nx)],
            "semi_axes": [float(0.62 * ni), float(0.62 * nx)],
            "base_tau": float(0.47 * ns),
            "thickness_samples": float(0.25 * ns),
            "n_blocks": int(max(8, round(ni * nx * ns / 7000))),
            "block_dip_range": [0.5, 1.2],  # samples per trace, random azimuth
            "chaotic_fraction": 0.3,
        },
        "channels": [
            {
                "angle_deg": float(angle),
                "offset": float(rng.uniform(-0.2, 0.2)),  # centreline across the grid, fraction of size
                "sinuosity_amplitude": float(rng.uniform(0.08, 0.14) * n_lat),
                "wavelength": float(rng.uniform(0.8, 1.3) * n_lat),
                "phase": float(rng.uniform(0, 2 * np.pi)),
                "half_width": float(0.11 * n_lat),
                "depth_samples": float(0.14 * ns),
                "top_tau": float(top * ns),
                "fill_layers": 4,
            }
            for angle, top in ((float(rng.uniform(-20, 20)), 0.05), (float(rng.uniform(70, 110)), 0.17))
        ],
        "salt": [
            {
                "centre": [float(rng.uniform(0.4, 0.6) * ni), float(rng.uniform(0.4, 0.6) * nx)],
                "radius_traces": float(salt_radius),
                "top_sample": float(0.5 * ns),
                "dome_height_samples": float(0.12 * ns),
                "flare": 0.35,  # radius grows by this fraction from the dome to the base
                "roughness": 0.12,  # relative boundary perturbation
                "impedance": 9.0,
                "texture_contrast": 0.03,
                "texture_sigma": [1.0, 1.0, 4.0],  # laterally chaotic, vertically smooth: low frequency
            }
        ],
    }


def _background(p: Mapping[str, Any], coords, rng: np.random.Generator, shape):
    """Relative geologic time of the conformal background and the undulation map."""
    i, x, s = coords
    ni, nx, _ = shape
    und = _smooth_field(rng, (ni, nx), p["undulation_sigma_traces"])
    und = p["undulation_samples"] * und / (np.abs(und).max() + 1e-12)
    tau = s - p["dip_inline"] * (i - ni / 2) - p["dip_crossline"] * (x - nx / 2) - und[:, :, None]
    return tau


def _mtd(p, coords, tau, rng, shape, tops, log_z):
    """Mask, indices and log-impedance of the MTD, and the blocks drawn.

    A lens in τ over an elliptical lobe, cut into Voronoi blocks (nearest seed, k-d tree); a
    coherent block carries the layering rotated to its own dip and shifted, a chaotic one a rough
    random field.
    """
    i, x, _ = coords
    r2 = ((i - p["centre"][0]) / p["semi_axes"][0]) ** 2 + ((x - p["centre"][1]) / p["semi_axes"][1]) ** 2
    top = p["base_tau"] - p["thickness_samples"] * np.sqrt(np.clip(1.0 - r2**2, 0.0, 1.0))
    mask = (tau <= p["base_tau"]) & (tau > top)
    idx = np.nonzero(mask)
    pts = np.stack([a.astype(np.float64) for a in idx], axis=1)
    n = p["n_blocks"]
    seeds = pts[rng.choice(len(pts), size=min(n, len(pts)), replace=False)] if len(pts) else np.zeros((0, 3))
    n = len(seeds)
    azimuth = rng.uniform(0, 2 * np.pi, n)
    dip = rng.uniform(*p["block_dip_range"], n)
    offset = rng.uniform(-40, 40, n)
    chaotic = rng.random(n) < p["chaotic_fraction"]
    blocks = [
        {
            "seed": seeds[k].round(2).tolist(),
            "dip": round(float(dip[k]), 3),
            "azimuth_deg": round(float(np.degrees(azimuth[k])), 1),
            "chaotic": bool(chaotic[k]),
        }
        for k in range(n)
    ]
    log_imp = np.zeros(len(pts))
    if n:
        # vertical distances count half: blocks are tall slabs spanning most of the unit's thickness
        scale = np.array([1.0, 1.0, 0.5])
        _, owner = cKDTree(seeds * scale).query(pts * scale)
        rel = pts - seeds[owner]
        pi_, px_ = dip * np.cos(azimuth), dip * np.sin(azimuth)
        block_tau = tau[idx] + offset[owner] - pi_[owner] * rel[:, 0] - px_[owner] * rel[:, 1]
        log_imp = _lookup(tops, log_z, block_tau)
        chaos = _smooth_field(rng, shape, (1.0, 1.0, 1.0))[idx]
        log_imp = np.where(chaotic[owner], np.log(6.5) + 0.08 * chaos, log_imp)
    return mask, idx, log_imp, blocks


def _channel(p, coords, tau, shape, tops, log_z, fill_rng: np.random.Generator):
    """Mask, indices and log-impedance of one channel, and its fill's log-impedances.

    A parabolic cut below ``top_tau`` along a sinuous centreline; the fill is ``fill_layers``
    alternating sand (soft, bright) and shale layers following the cut, concave up.
    """
    i, x, _ = coords
    ni, nx, _ = shape
    a = np.radians(p["angle_deg"])
    ci, cx = ni / 2 + p["offset"] * ni * np.sin(a), nx / 2 - p["offset"] * nx * np.cos(a)
    along = (i - ci) * np.cos(a) + (x - cx) * np.sin(a)
    across = -(i - ci) * np.sin(a) + (x - cx) * np.cos(a)
    phase = 2 * np.pi * along / p["wavelength"] + p["phase"]
    centre = p["sinuosity_amplitude"] * np.sin(phase)
    slope = p["sinuosity_amplitude"] * 2 * np.pi / p["wavelength"] * np.cos(phase)
    dist = np.abs(across - centre) / np.sqrt(1.0 + slope**2)  # distance to the centreline
    depth = p["depth_samples"] * np.clip(1.0 - (dist / p["half_width"]) ** 2, 0.0, None)  # (ni, nx, 1)
    rel = tau - p["top_tau"]
    mask = (rel >= 0) & (rel < depth)
    idx = np.nonzero(mask)
    # fill layers follow the cut: ζ ∈ [0, 1) from top to base, so they thin towards the margins
    zeta = rel[idx] / np.broadcast_to(depth, mask.shape)[idx]
    ref = _lookup(tops, log_z, np.array([p["top_tau"]]))[0]
    n_fill = p["fill_layers"]
    fill = ref + np.where(np.arange(n_fill) % 2 == 0, -0.25, 0.05) + 0.04 * fill_rng.standard_normal(n_fill)
    return mask, idx, fill[np.minimum((zeta * n_fill).astype(int), n_fill - 1)], fill.round(4).tolist()


def _salt(p, coords, shape, rng):
    """Mask and log-impedance of a diapir: a dome over a flaring stock, rough boundary, weak chaotic texture."""
    i, x, s = coords
    ns = shape[2]
    rho = np.sqrt((i - p["centre"][0]) ** 2 + (x - p["centre"][1]) ** 2)
    rough = 1.0 + p["roughness"] * _smooth_field(rng, shape, (2.0, 2.0, 3.0))
    rho = rho / rough
    shoulder = p["top_sample"] + p["dome_height_samples"]  # where the dome meets the stock
    radius = p["radius_traces"] * (1.0 + p["flare"] * np.clip((s - shoulder) / max(ns - shoulder, 1.0), 0.0, 1.0))
    dome = ((rho / p["radius_traces"]) ** 2 + ((shoulder - s) / p["dome_height_samples"]) ** 2 < 1.0) & (s < shoulder)
    mask = dome | ((s >= shoulder) & (rho < radius))
    idx = np.nonzero(mask)
    texture = _smooth_field(rng, shape, p["texture_sigma"])[idx]
    return mask, idx, np.log(p["impedance"]) + p["texture_contrast"] * texture


def make_survey(
    shape: tuple[int, int, int] = (48, 48, 96), seed: int = 0, noise: float = 0.1, dt_ms: float = 4.0
) -> Survey:
    """Generate the labelled facies model, its impedance and the noisy seismic amplitude.

    Bodies override each other in geological order: background, then the MTD, the channels (cut
    into later strata), and the salt last (it pierces everything). ``noise`` is the standard
    deviation of the band-limited noise relative to the RMS of the clean section.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise InputError(f"synthetic survey shape must be three sizes of at least 8, got {shape}")
    if not (np.isfinite(noise) and noise >= 0) or not (np.isfinite(dt_ms) and dt_ms > 0):
        raise InputError(f"synthetic survey needs noise >= 0 and dt_ms > 0, got noise={noise}, dt_ms={dt_ms}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"synthetic survey seed must be a non-negative integer, got {seed}")
    rng = np.random.default_rng(int(seed))
    ni, nx, ns = shape
    params: dict[str, Any] = {"shape": list(shape), "seed": int(seed), "noise": float(noise), "dt_ms": float(dt_ms)}
    params.update(_draw_model(shape, rng))
    peak_hz = min(25.0, 0.2 / (dt_ms * 1e-3))  # at least five samples per period
    params["wavelet"] = {"type": "ricker", "peak_hz": float(peak_hz), "phase": "zero"}
    params["noise_model"] = "white Gaussian noise convolved with the wavelet, std = noise × RMS(clean amplitude)"

    coords = np.ogrid[0:ni, 0:nx, 0:ns]
    coords = tuple(c.astype(np.float64) for c in coords)
    tau = _background(params["background"], coords, rng, shape)
    # the sequence reaches well beyond the grid's τ: MTD blocks sample it shifted by up to ±40
    thickness = params["background"]["layer_thickness_samples"]
    tops, log_z = _layer_sequence(rng, float(tau.min()) - 80, float(tau.max()) + 80, thickness)
    log_imp = _lookup(tops, log_z, tau)
    facies = np.zeros(shape, dtype=np.int8)

    mask, idx, values, params["mtd"]["blocks"] = _mtd(params["mtd"], coords, tau, rng, shape, tops, log_z)
    log_imp[idx], facies[mask] = values, MTD
    for channel in params["channels"]:
        mask, idx, values, channel["fill_log_impedance"] = _channel(channel, coords, tau, shape, tops, log_z, rng)
        log_imp[idx], facies[mask] = values, CHANNEL
    for body in params["salt"]:
        mask, idx, values = _salt(body, coords, shape, rng)
        log_imp[idx], facies[mask] = values, SALT

    impedance = np.exp(log_imp)
    wavelet = ricker(peak_hz, dt_ms)
    clean = _convolve(reflectivity(impedance), wavelet)
    clean /= np.sqrt(np.mean(clean**2)) + 1e-12
    noise_field = _convolve(rng.standard_normal(shape), wavelet)
    noise_field *= noise / (noise_field.std() + 1e-12)
    params["facies_fractions"] = {
        name: round(float(np.mean(facies == k)), 4) for k, name in enumerate(FACIES)
    }  # fmt: skip
    return Survey(
        facies=facies,
        impedance=impedance.astype(np.float32),
        amplitude=(clean + noise_field).astype(np.float32),
        dt_ms=float(dt_ms),
        params=params,
    )


# ---------------------------------------------------------------------------------------------
# attributes without information, picks, truth


def noise_attributes(
    shape: tuple[int, int, int], seed: int, names: Sequence[str] = NOISE_ATTRIBUTES
) -> dict[str, np.ndarray]:
    """Attribute volumes with no relation to the facies, for the selection to reject.

    A name containing ``"white"`` gets independent standard normal noise; any other name a smooth
    Gaussian random field (white noise smoothed with σ = (2, 2, 3) voxels, unit variance) — it has
    the spatial texture of a real attribute but ignores the geology. Every name draws from its own
    stream (``seed`` and the name's CRC-32), so a field does not change with the order of ``names``.
    """
    shape = tuple(int(n) for n in shape)
    out = {}
    for name in names:
        rng = np.random.default_rng([int(seed), 0x5E15, zlib.crc32(name.encode())])
        if "white" in name:
            out[name] = rng.standard_normal(shape).astype(np.float32)
        else:
            out[name] = _smooth_field(rng, shape, (2.0, 2.0, 3.0)).astype(np.float32)
    return out


_CROSS = ndimage.generate_binary_structure(3, 1)  # 6-connected neighbourhood


def _interior(facies: np.ndarray, k: int, margin: int) -> np.ndarray:
    """Voxels of facies ``k`` at least ``margin`` voxels from any other facies (eroded mask).

    The volume's own edges do not count as boundaries. If erosion leaves nothing, the margin is
    reduced step by step (a thin body is still picked, on its most interior voxels).
    """
    mask = facies == k
    for m in range(margin, 0, -1):
        eroded = ndimage.binary_erosion(mask, structure=_CROSS, iterations=m, border_value=1)
        if eroded.any():
            return eroded
    return mask


def synthetic_picks(
    facies: np.ndarray,
    seed: int,
    inlines: Iterable[int] | None = None,
    time_slices: Iterable[int] | None = None,
    per_facies: int = 300,
    margin: int = 2,
) -> pd.DataFrame:
    """Interpreter-like picks: interior voxels of every facies on a few inlines and time slices.

    As in the notes' workflow, an interpreter picks only where confident: voxels at least
    ``margin`` voxels inside their facies. Defaults: four inlines and three time slices evenly
    spread over the grid. A facies that none of these slices crosses gets one more inline, through
    its largest interior cross-section (the interpreter looks for it). Up to ``per_facies`` voxels
    are drawn per facies without replacement, so rows are unique. Coordinates are 0-based grid
    indices; the columns are ``inline, crossline, sample, facies`` (int64).
    """
    facies = np.asarray(facies)
    if facies.ndim != 3:
        raise InputError(f"facies volume must be 3-D (inline, crossline, sample), got shape {facies.shape}")
    ni, _, ns = facies.shape
    if inlines is None:
        inlines = np.linspace(0, ni - 1, 6)[1:-1].round()
    if time_slices is None:
        time_slices = np.linspace(0, ns - 1, 5)[1:-1].round()
    inl, tsl = sorted({int(v) for v in inlines}), sorted({int(v) for v in time_slices})
    if per_facies < 1 or margin < 0:
        raise InputError(f"picks need per_facies >= 1 and margin >= 0, got {per_facies} and {margin}")
    for name, values, n in (("inline", inl, ni), ("time slice", tsl, ns)):
        bad = [v for v in values if not 0 <= v < n]
        if bad:
            raise InputError(f"{name} indices must lie in [0, {n - 1}], got {bad}")
    rng = np.random.default_rng([int(seed), 0x91C5])
    present = set(np.unique(facies).tolist())
    absent = [f"{k} ({name})" for k, name in enumerate(FACIES) if k not in present]
    if absent:
        warnings.warn(f"facies {', '.join(absent)} absent from the model: no picks for them", stacklevel=2)
    rows = []
    for k, name in enumerate(FACIES):
        if k not in present:
            continue
        interior = _interior(facies, k, margin)
        on_slices = np.zeros_like(interior)
        on_slices[inl] = True
        on_slices[:, :, tsl] = True
        candidates = interior & on_slices
        if not candidates.any():
            extra = int(np.argmax(interior.sum(axis=(1, 2))))
            log.info("facies %s crosses no picked slice; adding inline %d", name, extra)
            candidates[extra] = interior[extra]
        pts = np.argwhere(candidates)
        take = rng.choice(len(pts), size=min(per_facies, len(pts)), replace=False)
        chosen = pts[np.sort(take)]
        rows.append(np.column_stack([chosen, np.full(len(chosen), k)]))
    table = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64)
    return pd.DataFrame(table.astype(np.int64), columns=["inline", "crossline", "sample", "facies"])


def separation_scores(attribute: np.ndarray, facies: np.ndarray) -> dict[str, Any]:
    """How well one attribute separates the facies on the true labels.

    For every pair of facies present, the 1-D Bhattacharyya distance between Gaussian fits
    (the notes' eq. 7 with n = 1):
    D = (μ₁ − μ₂)² / (4(σ₁² + σ₂²)) + ½ ln((σ₁² + σ₂²) / (2σ₁σ₂)).
    Also the Fisher ratio, between-facies over within-facies variance. An attribute that ignores
    the geology scores ≈ 0 on both.
    """
    if np.shape(attribute) != np.shape(facies):
        raise InputError(f"attribute shape {np.shape(attribute)} differs from the facies' {np.shape(facies)}")
    a = np.asarray(attribute, dtype=np.float64).ravel()
    labels = np.asarray(facies).ravel().astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(FACIES)):
        raise InputError(f"facies ids must lie in 0..{len(FACIES) - 1}, got {labels.min()}..{labels.max()}")
    offset = a.mean() if a.size else 0.0
    a = a - offset  # centred, so the sums of squares below do not cancel
    n_all = np.bincount(labels, minlength=len(FACIES)).astype(np.float64)
    present = [k for k in range(len(FACIES)) if n_all[k] > 0]
    counts = n_all[present]
    means = np.bincount(labels, a, minlength=len(FACIES))[present] / counts
    squares = np.bincount(labels, a * a, minlength=len(FACIES))[present] / counts
    variances = np.clip(squares - means**2, 0.0, None) + 1e-12 * (a.var() + 1e-30)
    pairs = {}
    for j, kj in enumerate(present):
        for m in range(j + 1, len(present)):
            km = present[m]
            v = variances[j] + variances[m]
            d = (means[j] - means[m]) ** 2 / (4 * v) + 0.5 * np.log(v / (2 * np.sqrt(variances[j] * variances[m])))
            pairs[f"{FACIES[kj]}-{FACIES[km]}"] = round(float(d), 4)
    grand = np.sum(counts * means) / counts.sum()
    fisher = np.sum(counts * (means - grand) ** 2) / np.sum(counts * variances)
    values = list(pairs.values())
    return {
        "bhattacharyya_mean": round(float(np.mean(values)), 4) if values else 0.0,
        "bhattacharyya_max": round(float(np.max(values)), 4) if values else 0.0,
        "fisher": round(float(fisher), 4),
        "pairwise_bhattacharyya": pairs,
        "facies_means": {FACIES[k]: round(float(mu + offset), 5) for k, mu in zip(present, means, strict=True)},
    }


def truth(survey: Survey, attributes: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The truth to check selection and classification against, ready for JSON.

    Names the informative attributes (designed to respond to the geology, :data:`ATTRIBUTE_DESIGN`)
    and the deliberately uninformative ones (:data:`NOISE_ATTRIBUTES`), and checks the design on
    the true labels: every attribute gets :func:`separation_scores`; an informative attribute must
    reach a mean pairwise Bhattacharyya distance of ``informative_min`` and an uninformative one
    stay below ``uninformative_max``. Attributes whose score contradicts their design are listed
    under ``check.failed`` (and logged), not silently relabelled.
    """
    scores = {}
    for name, volume in attributes.items():
        if np.shape(volume) != survey.facies.shape:
            raise InputError(f"attribute {name!r} has shape {np.shape(volume)}, expected {survey.facies.shape}")
        scores[name] = separation_scores(volume, survey.facies)
    informative = [n for n in attributes if n not in NOISE_ATTRIBUTES and n in ATTRIBUTE_DESIGN]
    uninformative = [n for n in attributes if n in NOISE_ATTRIBUTES]
    unknown = [n for n in attributes if n not in informative and n not in uninformative]
    lo, hi = SEPARATION_THRESHOLDS["informative_min"], SEPARATION_THRESHOLDS["uninformative_max"]
    failed = [n for n in informative if scores[n]["bhattacharyya_mean"] < lo]
    failed += [n for n in uninformative if scores[n]["bhattacharyya_mean"] > hi]
    if failed:
        log.warning("separation contradicts the design for: %s", ", ".join(failed))
    ranking = sorted(scores, key=lambda n: scores[n]["bhattacharyya_mean"], reverse=True)
    return {
        "facies": list(FACIES),
        "informative": informative,
        "uninformative": uninformative,
        "unclassified": unknown,
        "design": {n: ATTRIBUTE_DESIGN[n] for n in informative},
        "separation": scores,
        "ranking": ranking,
        "check": {"thresholds": dict(SEPARATION_THRESHOLDS), "passed": not failed, "failed": failed},
        "model": survey.params,
    }
