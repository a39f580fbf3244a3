"""3-D adaptive Kuwahara filtering of attribute volumes.

The notes (attribute_selection, GTM workflow): "we filter the selected seismic attributes using a 3D
adaptive Kuwahara filter to suppress effects of seismic noise, smooth interior textures, and
sharpen the edges of seismic facies." Here it is an optional step before training voxels are
extracted (a params switch of the seismic pipeline).
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import numpy as np

from overseer.errors import InputError


def _box_sums(x: np.ndarray, n: int) -> np.ndarray:
    """Sums over every n×n×n box: out[a, b, c] = x[a:a+n, b:b+n, c:c+n].sum() (float64).

    Each box sum adds the same n values per axis in the same order wherever the box lies, so a
    block of a volume (with its halo) gets exactly the whole volume's sums: chunked filtering
    (:mod:`overseer.seismic.dask_volume`) is voxel-for-voxel the same as filtering in one piece.
    """
    out = np.asarray(x, dtype=np.float64)
    for axis in range(3):
        length = out.shape[axis] - n + 1
        total = np.take(out, np.arange(0, length), axis=axis).copy()
        for d in range(1, n):
            total += np.take(out, np.arange(d, d + length), axis=axis)
        out = total
    return out


def volume_centre(volume: np.ndarray) -> float:
    """The value :func:`kuwahara3d` subtracts: the midpoint of the volume's range (float64), exact
    whichever order or chunks the volume is read in."""
    return 0.5 * (float(np.min(volume)) + float(np.max(volume)))


def kuwahara3d(volume: np.ndarray, radius: int = 2, *, centre: float | None = None) -> np.ndarray:
    """Adaptive Kuwahara filter in 3-D: each voxel takes the mean of its least-variance octant.

    Around every voxel the (2r+1)³ neighbourhood is split into the 8 octant cubes of side r+1 that
    share the voxel as a corner. For each octant the mean and variance come from box sums of x and
    x² (n shifted slices per axis, float64; no per-voxel loop), and the voxel gets the mean of the octant with
    the smallest variance. The window adapts to the data: a voxel next to a facies edge picks an
    octant on its own side, so the edge stays sharp while noise inside each facies is averaged
    out. Edges of the volume are mirrored. Returns float32 of the input's shape.

    ``centre`` (default: :func:`volume_centre`, the midpoint of the volume's range) is subtracted
    before the sums and added back; a block of a larger volume (:mod:`overseer.seismic.dask_volume`)
    passes the whole volume's centre, so that every block computes exactly what the whole volume
    would (min and max, unlike a floating-point mean, do not depend on summation order).
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
    # removing the centre keeps E[x²] − E[x]² accurate for offset data
    centre = volume_centre(x) if centre is None else float(centre)
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


def kuwahara_chunked(volume: Any, radius: int, centre: float | None = None) -> Any:
    """:func:`kuwahara3d` of a Dask array, chunk by chunk: ``map_overlap`` with a halo of ``radius``
    voxels and mirrored volume edges (Dask's ``reflect`` is numpy's ``symmetric`` pad, the filter's
    own), every chunk with the whole volume's ``centre`` (default :func:`volume_centre`, one pass of
    min and max first) — voxel for voxel what :func:`kuwahara3d` gives on the whole volume. A chunk
    whose block (halo included) is not finite fails the graph with the filter's ``InputError``."""
    import dask

    r = int(radius)
    if r != radius or r < 1:
        raise InputError(f"kuwahara radius must be a positive integer, got {radius}")
    if centre is None:
        low, high = dask.compute(volume.min(), volume.max())
        centre = 0.5 * (float(low) + float(high))
    if any(n < r for n in volume.chunksize):
        volume = volume.rechunk(tuple(max(c, r) for c in volume.chunksize))
    return volume.map_overlap(
        partial(kuwahara3d, radius=r, centre=centre), depth=r, boundary="reflect", dtype=np.float32, trim=True
    )
