"""3-D adaptive Kuwahara filtering of attribute volumes.

The notes (attribute_selection, GTM workflow): "we filter the selected seismic attributes using a 3D
adaptive Kuwahara filter to suppress effects of seismic noise, smooth interior textures, and
sharpen the edges of seismic facies." Here it is an optional step before training voxels are
extracted (a params switch of the seismic pipeline).
"""

from __future__ import annotations

import itertools

import numpy as np

from overseer.errors import InputError


def _box_sums(x: np.ndarray, n: int) -> np.ndarray:
    """Sums over every n×n×n box: out[a, b, c] = x[a:a+n, b:b+n, c:c+n].sum() (float64, cumulative sums)."""
    out = x
    for axis in range(3):
        c = np.cumsum(out, axis=axis, dtype=np.float64)
        zero = np.zeros_like(np.take(c, [0], axis=axis))
        c = np.concatenate([zero, c], axis=axis)
        length = c.shape[axis]
        out = np.take(c, np.arange(n, length), axis=axis) - np.take(c, np.arange(0, length - n), axis=axis)
    return out


def kuwahara3d(volume: np.ndarray, radius: int = 2) -> np.ndarray:
    """Adaptive Kuwahara filter in 3-D: each voxel takes the mean of its least-variance octant.

    Around every voxel the (2r+1)³ neighbourhood is split into the 8 octant cubes of side r+1 that
    share the voxel as a corner. For each octant the mean and variance come from box sums of x and
    x² (cumulative sums, float64; no per-voxel loop), and the voxel gets the mean of the octant with
    the smallest variance. The window adapts to the data: a voxel next to a facies edge picks an
    octant on its own side, so the edge stays sharp while noise inside each facies is averaged
    out. Edges of the volume are mirrored. Returns float32 of the input's shape.
    """
    x = np.asarray(volume)
    if x.ndim != 3:
        raise InputError(f"kuwahara3d needs a 3-D volume (inline, crossline, sample), got shape {x.shape}")
    if int(radius) != radius or radius < 1:
        raise InputError(f"kuwahara3d radius must be a positive integer, got {radius}")
    if not np.isfinite(x).all():
        raise InputError("kuwahara3d needs a finite volume; fill undefined voxels first")
    r = int(radius)
    n = r + 1
    centre = float(x.mean())  # removing the mean keeps E[x²] − E[x]² accurate for offset data
    padded = np.pad(x.astype(np.float64) - centre, r, mode="symmetric")
    sums = _box_sums(padded, n)
    squares = _box_sums(padded * padded, n)
    # box index j along an axis covers original indices [j - r, j]: the low octant of voxel v is
    # box v, its high octant box v + r
    best_mean = np.zeros(x.shape, np.float64)
    best_var = np.full(x.shape, np.inf)
    for offsets in itertools.product((0, r), repeat=3):
        part = tuple(slice(o, o + size) for o, size in zip(offsets, x.shape, strict=True))
        mean = sums[part] / n**3
        var = squares[part] / n**3 - mean**2
        better = var < best_var
        best_mean = np.where(better, mean, best_mean)
        best_var = np.where(better, var, best_var)
    return (best_mean + centre).astype(np.float32)
