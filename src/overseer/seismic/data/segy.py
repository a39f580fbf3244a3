"""Post-stack SEG-Y volumes through segyio: read to float32 (inline, crossline, sample), write atomically.

Geometry comes from the inline/crossline numbers in each trace header (bytes ``iline_byte`` and
``xline_byte``, 189/193 by default as in SEG-Y rev 1), not from the file's trace order: traces may
be inline- or crossline-sorted or unsorted, but they must cover the full inline × crossline
rectangle exactly once. IBM float, IEEE float and integer sample formats are read (segyio
decodes them); big- and little-endian files are both tried.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import segyio
from tqdm.auto import tqdm

from overseer.errors import InputError
from overseer.io import atomic_file
from overseer.seismic.data.grid import Grid

log = logging.getLogger(__name__)

#: sample formats we write, by numpy dtype name (SEG-Y rev 1 format codes)
WRITE_FORMATS = {"float32": 5, "int32": 2, "int16": 3, "int8": 8}
#: traces per read/write batch: bounds the memory of a batch to a few tens of MB
_BATCH_TRACES = 8192
_DEFAULT_DT_US = 4000.0


@contextlib.contextmanager
def _open_segy(path: str | os.PathLike) -> Iterator[segyio.SegyFile]:
    """Open read-only without geometry inference (we infer it ourselves), big- then little-endian;
    every segyio failure to open becomes an ``InputError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("SEG-Y file not found", path=path)
    handle = None
    first_error: Exception | None = None
    for endian in ("big", "little"):
        try:
            handle = segyio.open(str(path), mode="r", ignore_geometry=True, endian=endian)
        except (RuntimeError, OSError, ValueError) as exc:
            first_error = first_error or exc
            continue
        if handle.tracecount > 0 and len(handle.samples) > 0:
            break
        handle.close()
        handle = None
    if handle is None:
        size = path.stat().st_size
        hint = "the file is shorter than the 3600-byte SEG-Y headers" if size < 3600 else "truncated or not SEG-Y?"
        raise InputError(f"not a readable SEG-Y file: {first_error or 'no traces'} ({size} bytes; {hint})", path=path)
    try:
        yield handle
    finally:
        handle.close()


def _geometry(
    f: segyio.SegyFile, path: str | os.PathLike, iline_byte: int, xline_byte: int
) -> tuple[Grid, np.ndarray, np.ndarray]:
    """The grid of an open file and, per trace, its inline and crossline index.

    The traces must cover every (inline, crossline) pair of the grid exactly once: duplicates and
    holes are ``InputError`` s that name the pair and the trace.
    """
    hint = f" (inline/crossline numbers read from trace header bytes {iline_byte}/{xline_byte}; are those right?)"
    fields = {int(field) for field in segyio.TraceField.enums()}
    for what, byte in (("iline_byte", iline_byte), ("xline_byte", xline_byte)):
        if int(byte) not in fields:
            raise InputError(
                f"{what}={byte} is not the first byte of a SEG-Y trace header field (inline/crossline are "
                f"usually 189/193, sometimes 9/21 or 17/13)",
                path=path,
            )
    try:
        ilines = np.asarray(f.attributes(int(iline_byte))[:], dtype=np.int64)
        xlines = np.asarray(f.attributes(int(xline_byte))[:], dtype=np.int64)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read trace headers ({exc}); truncated file?", path=path) from None
    inlines, il_idx = np.unique(ilines, return_inverse=True)
    crosslines, xl_idx = np.unique(xlines, return_inverse=True)
    flat = il_idx * crosslines.size + xl_idx
    counts = np.bincount(flat, minlength=inlines.size * crosslines.size)
    if (counts > 1).any():
        cell = int(np.flatnonzero(counts > 1)[0])
        traces = np.flatnonzero(flat == cell)
        il, xl = inlines[cell // crosslines.size], crosslines[cell % crosslines.size]
        raise InputError(
            f"inconsistent geometry: inline {il} crossline {xl} appears in {traces.size} traces "
            f"(trace numbers {traces[:5].tolist()}, 0-based); {int((counts > 1).sum())} duplicated positions{hint}",
            path=path,
            record=f"trace {int(traces[1])}",
        )
    if (counts == 0).any():
        missing = int((counts == 0).sum())
        cell = int(np.flatnonzero(counts == 0)[0])
        il, xl = inlines[cell // crosslines.size], crosslines[cell % crosslines.size]
        raise InputError(
            f"inconsistent geometry: {f.tracecount} traces do not fill the grid of {inlines.size} inlines × "
            f"{crosslines.size} crosslines ({inlines.size * crosslines.size} positions); {missing} missing, "
            f"the first inline {il} crossline {xl} (an irregular survey, or a file cut short){hint}",
            path=path,
        )
    dt_us = float(f.bin[segyio.BinField.Interval]) or float(f.header[0][segyio.TraceField.TRACE_SAMPLE_INTERVAL])
    if dt_us <= 0:
        log.warning("%s: no sample interval in the binary or first trace header; assuming 4 ms", path)
        dt_us = _DEFAULT_DT_US
    samples = np.asarray(f.samples, dtype=np.float64)
    try:
        grid = Grid(
            inlines=inlines,
            crosslines=crosslines,
            sample_start_ms=float(samples[0]),
            sample_interval_ms=dt_us / 1000.0,
            n_samples=samples.size,
        )
    except ValueError as exc:
        raise InputError(f"invalid geometry ({exc})", path=path) from None
    return grid, il_idx.astype(np.intp), xl_idx.astype(np.intp)


def segy_grid(path: str | os.PathLike, iline_byte: int = 189, xline_byte: int = 193) -> Grid:
    """The grid of a SEG-Y file, from its headers only (no trace data read)."""
    with _open_segy(path) as f:
        return _geometry(f, path, iline_byte, xline_byte)[0]


def read_segy(
    path: str | os.PathLike,
    iline_byte: int = 189,
    xline_byte: int = 193,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, Grid]:
    """Read a post-stack SEG-Y cube as float32 (inline, crossline, sample) and its grid.

    ``out`` (optional, float32 of the grid's shape, e.g. an ``np.lib.format.open_memmap``) receives
    the data instead of a new in-memory array, for cubes larger than memory; see :func:`segy_grid`.
    Integer samples are converted exactly up to 2**24 (float32's mantissa).
    """
    with _open_segy(path) as f:
        grid, il_idx, xl_idx = _geometry(f, path, iline_byte, xline_byte)
        if out is None:
            out = np.empty(grid.shape, dtype=np.float32)
        elif out.shape != grid.shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 of shape {grid.shape}, got {out.dtype} {out.shape}")
        batches = range(0, f.tracecount, _BATCH_TRACES)
        for start in tqdm(batches, desc=f"read {Path(path).name}", unit="batch", disable=len(batches) < 8):
            stop = min(start + _BATCH_TRACES, f.tracecount)
            try:
                traces = f.trace.raw[start:stop]
            except (RuntimeError, OSError, ValueError) as exc:
                raise InputError(
                    f"cannot read traces {start}..{stop - 1} ({exc}); truncated file?", path=path
                ) from None
            out[il_idx[start:stop], xl_idx[start:stop]] = traces
    return out, grid


def _check_write_dtype(data: np.ndarray, dtype: str, path: str | os.PathLike) -> int:
    """The SEG-Y format code for ``dtype``; integer output needs whole, in-range, finite data."""
    if dtype not in WRITE_FORMATS:
        raise ValueError(f"dtype must be one of {sorted(WRITE_FORMATS)}, got {dtype!r}")
    if dtype != "float32" and data.size:
        info = np.iinfo(dtype)
        whole = data.dtype.kind in "iub" or bool(np.isfinite(data).all() and np.all(data == np.rint(data)))
        if not whole or data.min() < info.min or data.max() > info.max:
            raise InputError(
                f"data cannot be written as {dtype}: expected whole numbers in {info.min}..{info.max}", path=path
            )
    return WRITE_FORMATS[dtype]


def write_segy_like(
    template_path: str | os.PathLike,
    data: np.ndarray,
    out_path: str | os.PathLike,
    iline_byte: int = 189,
    xline_byte: int = 193,
    dtype: str = "float32",
) -> Path:
    """Write ``data`` (inline, crossline, sample) as a SEG-Y file with the template's geometry and
    headers: textual (and extended textual), binary and every trace header are copied in the
    template's trace order; the sample format becomes ``dtype`` (float32 → IEEE, format 5).

    ``data`` must have the template grid's shape. The file is written under a temporary name and
    renamed, so a failure leaves no partial output.
    """
    data = np.asarray(data)
    fmt = _check_write_dtype(data, dtype, template_path)
    with _open_segy(template_path) as src:
        grid, il_idx, xl_idx = _geometry(src, template_path, iline_byte, xline_byte)
        if data.shape != grid.shape:
            raise InputError(
                f"data of shape {data.shape} does not fit the template grid {grid.shape} ({grid.describe()})",
                path=template_path,
            )
        spec = segyio.spec()
        spec.iline, spec.xline = int(iline_byte), int(xline_byte)
        spec.samples = np.asarray(src.samples)
        spec.format = fmt
        spec.tracecount = src.tracecount  # unstructured: traces keep the template's order
        spec.ext_headers = src.ext_headers
        spec.endian = src.endian
        with atomic_file(out_path, suffix=".sgy") as tmp:
            with segyio.create(str(tmp), spec) as dst:
                for i in range(1 + src.ext_headers):
                    dst.text[i] = src.text[i]
                dst.bin = src.bin
                dst.bin.update({segyio.BinField.Format: fmt})
                _write_traces(dst, data, il_idx, xl_idx, dtype, lambda t: src.header[t].buf, Path(out_path).name)
    log.info("wrote %s (%s, %s)", out_path, dtype, grid.describe())
    return Path(out_path)


def _write_traces(
    dst: segyio.SegyFile,
    data: np.ndarray,
    il_idx: np.ndarray,
    xl_idx: np.ndarray,
    dtype: str,
    header_of: Callable[[int], object],
    name: str,
) -> None:
    """Write every trace ``t`` of ``dst``: header ``header_of(t)`` and the data column at
    (``il_idx[t]``, ``xl_idx[t]``), gathered with fancy indexing a batch of traces at a time."""
    batches = range(0, dst.tracecount, _BATCH_TRACES)
    for start in tqdm(batches, desc=f"write {name}", unit="batch", disable=len(batches) < 8):
        stop = min(start + _BATCH_TRACES, dst.tracecount)
        block = np.ascontiguousarray(data[il_idx[start:stop], xl_idx[start:stop]], dtype=dtype)
        # segyio writes one trace (header, samples) per call: the loop is over traces, never samples
        for t in range(start, stop):
            header = header_of(t)
            if isinstance(header, bytearray):
                # a template's raw 240 bytes (same endianness): segyio's own write path, minus
                # decoding and re-encoding 91 fields, which is 25× slower
                dst.xfd.putth(t, header)
            else:
                dst.header[t] = header
            dst.trace[t] = block[t - start]


def write_segy(
    data: np.ndarray,
    grid: Grid,
    out_path: str | os.PathLike,
    iline_byte: int = 189,
    xline_byte: int = 193,
    dtype: str = "float32",
) -> Path:
    """Write a volume without a template (e.g. from .npy input) as an inline-sorted SEG-Y rev 1 file:
    inline/crossline numbers in bytes ``iline_byte``/``xline_byte``, CDP = trace number, the time
    axis in the binary and trace headers (delay recording time needs a whole first-sample time
    in ms, the interval a whole number of µs). Written atomically."""
    data = np.asarray(data)
    fmt = _check_write_dtype(data, dtype, out_path)
    if data.shape != grid.shape:
        raise InputError(f"data of shape {data.shape} does not fit the grid {grid.shape}", path=out_path)
    dt_us = grid.sample_interval_ms * 1000.0
    if abs(dt_us - round(dt_us)) > 1e-6 or not 0 < round(dt_us) < 2**16:
        raise InputError(f"sample interval {grid.sample_interval_ms} ms is not a whole number of µs", path=out_path)
    if grid.sample_start_ms != round(grid.sample_start_ms) or abs(grid.sample_start_ms) >= 2**15:
        raise InputError(f"first sample time {grid.sample_start_ms} ms is not a whole 16-bit ms", path=out_path)
    n_il, n_xl, n_s = grid.shape
    il_idx, xl_idx = (a.ravel() for a in np.meshgrid(np.arange(n_il), np.arange(n_xl), indexing="ij"))
    spec = segyio.spec()
    spec.iline, spec.xline = int(iline_byte), int(xline_byte)
    spec.samples = grid.times_ms
    spec.format = fmt
    spec.ilines, spec.xlines = grid.inlines, grid.crosslines
    spec.sorting = segyio.TraceSortingFormat.INLINE_SORTING
    fixed = {
        segyio.TraceField.TRACE_SAMPLE_COUNT: n_s,
        segyio.TraceField.TRACE_SAMPLE_INTERVAL: round(dt_us),
        segyio.TraceField.DelayRecordingTime: round(grid.sample_start_ms),
    }
    iline_numbers, xline_numbers = grid.inlines[il_idx], grid.crosslines[xl_idx]

    def header_of(t: int) -> dict[int, int]:
        return {
            **fixed,
            iline_byte: int(iline_numbers[t]),
            xline_byte: int(xline_numbers[t]),
            segyio.TraceField.CDP: t + 1,
        }

    with atomic_file(out_path, suffix=".sgy") as tmp:
        with segyio.create(str(tmp), spec) as dst:
            dst.bin.update({segyio.BinField.Interval: round(dt_us), segyio.BinField.SortingCode: 2})
            _write_traces(dst, data, il_idx, xl_idx, dtype, header_of, Path(out_path).name)
    log.info("wrote %s (%s, %s)", out_path, dtype, grid.describe())
    return Path(out_path)
