"""The nine candidate attributes of the notes (attribute_selection, Figure 6), computed from amplitude.

Coherence; spectral bandwidth and spectral roughness; GLCM entropy and GLCM variance; dip
deviation, energy-gradient deviation, covariance of dip and energy; reflector convergence.

The definitions are physically sensible, documented, vectorised stand-ins for AASPI's programs, not
bit-for-bit copies. All local statistics are moving-window means (``scipy.ndimage.uniform_filter``)
over an analysis window of ``window = (inlines, crosslines, samples)``; derivatives are Gaussian
derivatives (``scipy.ndimage.gaussian_filter`` with ``order=1``). Volumes are float32 on the grid
(inline, crossline, sample); intermediate sums that need it are float64. No Python loop touches a
voxel: the loops run over a handful of grey-level pairs and of sample slabs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from overseer.errors import InputError

ATTRIBUTE_NAMES = (
    "coherence",
    "spectral_bandwidth",
    "spectral_roughness",
    "glcm_entropy",
    "glcm_variance",
    "dip_deviation",
    "energy_gradient_deviation",
    "dip_energy_covariance",
    "reflector_convergence",
)
DEFAULT_WINDOW = (5, 5, 9)
GLCM_LEVELS = 8
_EPS = 1e-12
_SPECTRUM_BYTES = 64e6  # working set of the spectral attributes, whatever the survey size


def _check_volume(amplitude: np.ndarray) -> np.ndarray:
    a = np.asarray(amplitude)
    if a.ndim != 3 or min(a.shape) < 3:
        raise InputError(f"amplitude volume must be 3-D (inline, crossline, sample), at least 3 a side, got {a.shape}")
    if not np.issubdtype(a.dtype, np.number):
        raise InputError(f"amplitude volume must be numeric, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise InputError(f"amplitude volume has {int(np.size(a) - np.isfinite(a).sum())} non-finite samples")
    return a.astype(np.float32, copy=False)


def _check_window(window: Sequence[int]) -> tuple[int, int, int]:
    w = tuple(int(v) for v in window)
    if len(w) != 3 or min(w) < 1:
        raise InputError(f"attribute window must be three positive sizes (inlines, crosslines, samples), got {window}")
    return w  # type: ignore[return-value]


def _mean(x: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """Moving-window mean (reflected at the volume's edges)."""
    return ndimage.uniform_filter(x, size=tuple(window), mode="reflect")


def _local_std(x: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """Moving-window standard deviation, float64 so E[x²] − E[x]² does not cancel badly."""
    x = x.astype(np.float64)
    return np.sqrt(np.clip(_mean(x * x, window) - _mean(x, window) ** 2, 0.0, None))


def _derivative(x: np.ndarray, axis: int, sigma: float = 1.0) -> np.ndarray:
    """Gaussian derivative of ``x`` along ``axis`` (σ in voxels)."""
    order = [0, 0, 0]
    order[axis] = 1
    return ndimage.gaussian_filter(x, sigma=sigma, order=order, mode="reflect")


# ---------------------------------------------------------------------------------------------
# coherence


def coherence(amplitude: np.ndarray, samples: int = 9) -> np.ndarray:
    """Semblance over a 3×3-trace × ``samples`` window (Marfurt et al. 1998), in [0, 1].

    S = Σₜ (Σⱼ uⱼₜ)² / (J Σₜ Σⱼ uⱼₜ²) over the J = 9 traces of the window. The inner trace sums are a
    3×3 uniform filter, the time sums uniform filters along samples. Not dip-steered: layers dipping
    a fraction of a sample per trace keep S ≈ 1, rotated or chaotic reflectors lower it.
    """
    u = amplitude.astype(np.float64)
    stack = _mean(u, (3, 3, 1))  # (1/J) Σⱼ u
    num = _mean(stack**2, (1, 1, samples))  # (1/(J² T)) Σₜ (Σⱼ u)²
    den = _mean(u**2, (3, 3, samples))  # (1/(J T)) Σₜ Σⱼ u²
    return (num / (den + _EPS * (den.mean() + _EPS))).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# spectral statistics


def _dft_matrices(length: int, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of the Hann-tapered, zero-padded real DFT as (length, nfft//2 + 1) matrices.

    ``windows @ re``, ``windows @ im`` equal ``numpy.fft.rfft(windows * taper, n=nfft)``: one BLAS
    product per chunk instead of an FFT per window (windows are short, so this is the fast way).
    """
    taper = np.hanning(length + 2)[1:-1]
    phase = 2 * np.pi * np.outer(np.arange(length), np.arange(nfft // 2 + 1)) / nfft
    return (taper[:, None] * np.cos(phase)).astype(np.float32), (-taper[:, None] * np.sin(phase)).astype(np.float32)


def _local_spectra(amplitude: np.ndarray, dt_ms: float, length: int, nfft: int, traces: Sequence[int]):
    """Amplitude spectra of a Hann-tapered window centred on every sample, averaged over neighbouring traces.

    Yields (sample slice, frequencies in Hz, spectra shaped (inline, crossline, chunk, frequency)).
    Windows come from ``sliding_window_view`` (stride tricks) on traces reflected at both ends;
    the spectra are averaged over ``traces`` = (inlines, crosslines) with a uniform filter. Chunks
    are slabs of samples — the lateral averaging needs no halo, the windows only the amplitude's —
    sized to keep the working set near ``_SPECTRUM_BYTES``.
    """
    half = length // 2
    re, im = _dft_matrices(length, nfft)
    freqs = np.fft.rfftfreq(nfft, d=dt_ms * 1e-3)
    ni, nx, ns = amplitude.shape
    padded = np.pad(amplitude, ((0, 0), (0, 0), (half, half)), mode="reflect")
    # working set per sample: the windows (float32) and four float32 spectra-sized arrays
    per_sample = ni * nx * 4 * (length + 4 * freqs.size)
    chunk = max(1, int(_SPECTRUM_BYTES // per_sample))
    for start in range(0, ns, chunk):
        stop = min(ns, start + chunk)
        windows = sliding_window_view(padded[:, :, start : stop + 2 * half], length, axis=-1)  # a view
        spec = np.hypot(windows @ re, windows @ im)
        yield slice(start, stop), freqs, ndimage.uniform_filter(spec, size=(*traces[:2], 1, 1), mode="reflect")


def spectral_statistics(
    amplitude: np.ndarray, dt_ms: float = 4.0, length: int = 31, nfft: int = 64, traces: Sequence[int] = (5, 5)
) -> tuple[np.ndarray, np.ndarray]:
    """Spectral bandwidth (Hz) and spectral roughness of the local spectrum at every voxel.

    The local spectrum A(f) is the amplitude spectrum of a ``length``-sample Hann window centred on
    the voxel (zero-padded to ``nfft``), averaged over ``traces`` neighbouring traces. Averaging
    keeps what neighbouring traces share — the notches of interfering, laterally continuous
    reflectors — and smooths away what they do not (noise, chaotic texture). With p(f) = A / Σ A:

    - bandwidth = √(Σ p (f − f̄)²), f̄ = Σ p f — the spectral standard deviation;
    - roughness = mean over f of (Δ²a)², a = A / mean(A) — the mean squared second difference of the
      normalised spectrum: high for notched (tuned) or narrow spectra, low for broad smooth ones
      such as the salt's (the notes: "the roughness of spectrum salt is much lower than other facies").

    The sums over frequency are matrix products with the frequency moments and the second-difference
    operator.
    """
    ni, nx, ns = amplitude.shape
    bandwidth = np.empty((ni, nx, ns), np.float32)
    roughness = np.empty((ni, nx, ns), np.float32)
    length = max(3, min(int(length) | 1, 2 * ns - 1))  # odd, and shorter than the reflected trace
    nfft = max(int(nfft), length)
    nf = nfft // 2 + 1
    second = (np.eye(nf, k=0) - 2 * np.eye(nf, k=1) + np.eye(nf, k=2))[: nf - 2].T.astype(np.float32)
    for part, freqs, spec in _local_spectra(amplitude, dt_ms, length, nfft, traces):
        moments = np.stack([np.ones_like(freqs), freqs, freqs**2], axis=1).astype(np.float32)
        m = (spec @ moments).astype(np.float64)  # Σ A, Σ A f, Σ A f²
        total = m[..., 0] + _EPS
        centroid = m[..., 1] / total
        bandwidth[:, :, part] = np.sqrt(np.clip(m[..., 2] / total - centroid**2, 0.0, None))
        curvature = ((spec @ second).astype(np.float64) ** 2).sum(axis=-1)
        roughness[:, :, part] = curvature / (nf - 2) / (total / nf) ** 2
    return bandwidth, roughness


# ---------------------------------------------------------------------------------------------
# texture (GLCM)


def balance(amplitude: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """Automatic gain control: amplitude divided by its RMS over ``window`` (weak and bright alike)."""
    u = amplitude.astype(np.float64)
    rms = np.sqrt(_mean(u * u, window))
    return (u / (rms + _EPS + 1e-3 * float(rms.mean()))).astype(np.float32)


def quantise(amplitude: np.ndarray, levels: int = GLCM_LEVELS) -> np.ndarray:
    """Grey levels 0..levels−1 at the amplitude's global quantiles (equal-population levels)."""
    sample = amplitude.ravel()[:: max(1, amplitude.size // 200_000)]
    edges = np.quantile(sample, np.linspace(0, 1, levels + 1)[1:-1])
    return np.digitize(amplitude, edges).astype(np.uint8)


def _neighbour(q: np.ndarray, axis: int) -> np.ndarray:
    """The next voxel's value along ``axis`` (the last voxel is its own neighbour)."""
    index = np.minimum(np.arange(q.shape[axis]) + 1, q.shape[axis] - 1)
    return np.take(q, index, axis=axis)


def glcm_entropy(levels: np.ndarray, window: Sequence[int], n_levels: int = GLCM_LEVELS) -> np.ndarray:
    """Entropy −Σ P log P of the local, symmetric grey-level co-occurrence matrix.

    Co-occurring pairs are each voxel with its next neighbour along the inline and crossline axes
    (lateral texture: continuous reflectors give pairs on the diagonal, chaos spreads them). For
    every unordered level pair u = {a, b} the indicator volume of "this voxel's pair is u" is
    averaged over the window with a uniform filter, giving P_u; the symmetric matrix splits an
    off-diagonal P_u into two cells of P_u/2, so H = −Σ_u P_u log(P_u / m_u) with m_u = 1 on the
    diagonal and 2 off it. One uniform filter per level pair (36 for 8 levels), none per voxel.
    """
    pairs = [(levels, _neighbour(levels, axis)) for axis in (0, 1)]
    codes = [np.minimum(a, b).astype(np.int16) * n_levels + np.maximum(a, b) for a, b in pairs]
    entropy = np.zeros(levels.shape, np.float64)
    for lo in range(n_levels):
        for hi in range(lo, n_levels):
            u = lo * n_levels + hi
            indicator = sum((c == u).astype(np.float32) for c in codes) / len(codes)
            if not indicator.any():
                continue
            p = _mean(indicator, window).astype(np.float64)
            entropy -= np.where(p > 0, p * np.log(np.maximum(p, _EPS) / (1 if lo == hi else 2)), 0.0)
    return entropy.astype(np.float32)


def glcm_variance(levels: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """Haralick's GLCM variance Σ_ab P_ab (a − μ)², μ = Σ_ab P_ab a, of the local symmetric GLCM.

    For a symmetric co-occurrence matrix the marginal of P is the window's grey-level histogram
    (up to the edge voxel), so the variance is the local variance of the grey levels — computed
    exactly that way, with two uniform filters. Weak, featureless texture has low spread.
    """
    return (_local_std(levels.astype(np.float32), window) ** 2).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# reflector dip from the gradient structure tensor


def structure_normals(amplitude: np.ndarray, gradient_sigma: float = 1.0, tensor_sigma: float = 1.5) -> np.ndarray:
    """Unit reflector normals (…, 3) from the gradient structure tensor, oriented downwards (n_s ≥ 0).

    T = G_σt * (∇u ∇uᵀ) with ∇u from Gaussian derivatives (σ = ``gradient_sigma``) smoothed with
    σ = ``tensor_sigma``; the normal is T's principal eigenvector (batched ``numpy.linalg.eigh``).
    For a locally planar event u = f(s − pᵢ i − pₓ x) the normal is ∝ (−pᵢ, −pₓ, 1).
    """
    u = amplitude.astype(np.float32)
    grads = [_derivative(u, axis, gradient_sigma) for axis in range(3)]
    tensor = np.empty((*u.shape, 3, 3), np.float32)
    for a in range(3):
        for b in range(a, 3):
            tensor[..., a, b] = tensor[..., b, a] = ndimage.gaussian_filter(grads[a] * grads[b], tensor_sigma)
    _, vectors = np.linalg.eigh(tensor)
    normal = vectors[..., :, -1]  # eigenvector of the largest eigenvalue
    normal *= np.where(normal[..., 2:3] < 0, -1.0, 1.0).astype(np.float32)
    return normal


def dip_angles(normal: np.ndarray) -> np.ndarray:
    """Apparent dip angles (radians) along inline and crossline, (…, 2): θ = arctan(p) = atan2(−n, n_s).

    Angles rather than dips p (samples per trace) keep near-vertical normals in noise bounded.
    """
    return np.arctan2(-normal[..., :2], normal[..., 2:3]).astype(np.float32)


def dip_deviation(dips: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """RMS deviation of the vector dip from its local mean: √(mean_w |θ − mean_w θ|²), radians.

    The window statistic of |dip − local mean dip| — near 0 in conformal layers, large among rotated
    blocks and random dips.
    """
    var = sum(_local_std(dips[..., c], window) ** 2 for c in range(2))
    return np.sqrt(var).astype(np.float32)


def rms_energy(amplitude: np.ndarray, samples: int) -> np.ndarray:
    """RMS amplitude over a 3×3-trace × ``samples`` window."""
    u = amplitude.astype(np.float64)
    return np.sqrt(_mean(u * u, (3, 3, samples))).astype(np.float32)


def energy_gradient(energy: np.ndarray) -> np.ndarray:
    """Lateral gradient of log energy (…, 2): relative energy change per trace, Gaussian derivatives (σ = 1).

    The log makes it scale-free: a weak body next to bright strata shows as strongly as a bright
    body next to weak ones.
    """
    log_e = np.log(energy.astype(np.float64) + _EPS + 1e-3 * float(energy.mean()))
    return np.stack([_derivative(log_e, axis) for axis in (0, 1)], axis=-1).astype(np.float32)


def energy_gradient_deviation(gradient: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """RMS deviation of the lateral energy-gradient vector from its local mean: √(Σ_c var_w g_c)."""
    var = sum(_local_std(gradient[..., c], window) ** 2 for c in range(2))
    return np.sqrt(var).astype(np.float32)


def dip_energy_covariance(dips: np.ndarray, gradient: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """Log₁₀ magnitude of the local covariance of vector dip and energy gradient.

    C_ab = mean_w(θ_a g_b) − mean_w(θ_a)·mean_w(g_b) for a, b ∈ {inline, crossline} is the 2×2
    cross-covariance of the dip angles θ and the lateral log-energy gradient g over the window;
    its Frobenius norm ‖C‖ does not depend on the survey's azimuth. It is large where dip and energy
    change together (rotated blocks, channel margins, salt flanks) and ≈ 0 in conformal layers,
    where dip hardly varies. Returned as log₁₀(‖C‖ + 10⁻⁴): the norm spans decades, and on a log
    scale its spread within a facies is closer to the Gaussian the selection fits.
    """
    frob = np.zeros(dips.shape[:-1], np.float64)
    means_d = [_mean(dips[..., a].astype(np.float64), window) for a in range(2)]
    means_g = [_mean(gradient[..., b].astype(np.float64), window) for b in range(2)]
    for a in range(2):
        for b in range(2):
            prod = dips[..., a].astype(np.float64) * gradient[..., b].astype(np.float64)
            frob += (_mean(prod, window) - means_d[a] * means_g[b]) ** 2
    return np.log10(np.sqrt(frob) + 1e-4).astype(np.float32)


def reflector_convergence(normal: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """Magnitude of the lateral components of the curl of the unit normal (Marfurt & Rich, 2010).

    curl n = (∂n_s/∂x − ∂n_x/∂s, ∂n_i/∂s − ∂n_s/∂i, ∂n_x/∂i − ∂n_i/∂x); its vertical component is
    reflector rotation, its lateral components measure how the dip changes vertically — converging
    or diverging reflectors (thinning, onlap, fill). Returned: √(c_i² + c_x²) averaged over the window.
    """
    d = {(c, axis): _derivative(normal[..., c], axis) for c in range(3) for axis in range(3)}
    ci = d[2, 1] - d[1, 2]
    cx = d[0, 2] - d[2, 0]
    return _mean(np.sqrt(ci**2 + cx**2), window).astype(np.float32)


# ---------------------------------------------------------------------------------------------


def candidate_attributes(
    amplitude: np.ndarray,
    dt_ms: float = 4.0,
    window: Sequence[int] = DEFAULT_WINDOW,
    spectral_samples: int = 31,
) -> dict[str, np.ndarray]:
    """The nine candidate attributes of the notes, float32, finite, on the amplitude's grid.

    ``window`` = (inlines, crosslines, samples) is the analysis window of the local statistics;
    coherence and RMS energy use 3×3 traces × ``window[2]`` samples; the spectra a Hann window of
    ``spectral_samples`` samples, averaged over ``window[0]`` × ``window[1]`` traces.

    GLCM entropy measures disorder, so it is computed on grey levels of the amplitude balanced by a
    short AGC (3×3 × ``window[2]``): unbalanced, the weak chaotic salt would be squeezed into the
    middle grey levels and look ordered. GLCM variance measures the spread of grey levels and is
    computed on the global levels, keeping brightness contrasts (weak salt, bright channel fill).
    """
    u = _check_volume(amplitude)
    w = _check_window(window)
    if not (np.isfinite(dt_ms) and dt_ms > 0):
        raise InputError(f"sample interval dt_ms must be positive, got {dt_ms}")
    bandwidth, roughness = spectral_statistics(u, dt_ms, length=spectral_samples, traces=w[:2])
    lateral = (3, 3, w[2])
    normal = structure_normals(u)
    dips = dip_angles(normal)
    gradient = energy_gradient(rms_energy(u, w[2]))
    out = {
        "coherence": coherence(u, w[2]),
        "spectral_bandwidth": bandwidth,
        "spectral_roughness": roughness,
        "glcm_entropy": glcm_entropy(quantise(balance(u, lateral)), w),
        "glcm_variance": glcm_variance(quantise(u), w),
        "dip_deviation": dip_deviation(dips, w),
        "energy_gradient_deviation": energy_gradient_deviation(gradient, w),
        "dip_energy_covariance": dip_energy_covariance(dips, gradient, w),
        "reflector_convergence": reflector_convergence(normal, w),
    }
    for name, volume in out.items():
        if not np.isfinite(volume).all():  # a guard: every definition above is finite by construction
            raise FloatingPointError(f"attribute {name} has non-finite values")
    return out
