"""Facies prediction of a survey larger than a worker's memory: Dask on 1 and 2 workers vs the memory map.

A synthetic survey of ``--attributes`` float32 volumes of ``--voxels`` voxels each is written under
``--dir`` (a temporary folder, deleted afterwards) twice: as the memory-mapped ``.npy`` store of small
surveys and as the chunked Zarr store of large ones. A small random forest classifies every voxel

- the straightforward way: :func:`overseer.seismic.predict_volume.predict_volume` over the memory maps
  in this process (scikit-learn engine, one thread),
- the Dask way: :func:`overseer.seismic.dask_volume.predict_volume_dask` over the Zarr store on a
  ``LocalCluster`` of 1, then 2 single-threaded worker processes, each limited to ``--memory-limit``,

and prints voxels/s, peak resident memory per worker (``ru_maxrss``), the ratios to the memory map
and whether the facies volumes are identical. The free disk space is checked first.

    .venv/bin/python benchmarks/seismic_dask.py --voxels 5e8 --attributes 4 --memory-limit 2GiB
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class PeakSampler:
    """Largest resident memory seen per process while a block runs: ``sample()`` returns a mapping
    of process → MiB, polled every ``interval`` s on a thread (``ru_maxrss`` would carry the
    parent's peak into forked workers)."""

    def __init__(self, sample: Callable[[], dict], interval: float = 0.25) -> None:
        self.sample, self.interval, self.peaks = sample, interval, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, mib in self.sample().items():
                self.peaks[key] = max(self.peaks.get(key, 0.0), mib)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _shape(voxels: float) -> tuple[int, int, int]:
    n_s = 500
    side = max(1, round((voxels / n_s) ** 0.5))
    return side, side, n_s


def _write_survey(base: Path, shape: tuple[int, int, int], n_attr: int, chunks: tuple[int, int, int]) -> list[str]:
    from overseer.seismic.data.grid import Grid
    from overseer.seismic.data.volumes import save_volumes
    from overseer.seismic.data.zarr_store import save_volumes_zarr

    names = [f"attr{i}" for i in range(n_attr)]
    raw = base / "raw"
    raw.mkdir()
    layers = (np.arange(shape[2]) // 50 % 4).astype(np.float32)
    for i, name in enumerate(names):  # slab by slab: never a whole volume in memory
        out = np.lib.format.open_memmap(raw / f"{name}.npy", mode="w+", dtype=np.float32, shape=shape)
        rng = np.random.default_rng(i)
        for start in range(0, shape[0], 16):
            slab = out[start : start + 16]
            slab[:] = layers * (i + 1) + rng.normal(0, 0.5, slab.shape).astype(np.float32)
        out.flush()
        del out
    maps = {n: np.load(raw / f"{n}.npy", mmap_mode="r") for n in names}
    grid = Grid.regular(shape)
    save_volumes(base / "npy", maps, grid)
    save_volumes_zarr(base / "zarr", maps, grid, chunks=chunks)
    shutil.rmtree(raw)
    return names


def _forest(base: Path, names: list[str], shape: tuple[int, int, int]) -> RandomForestClassifier:
    from overseer.seismic.data.volumes import load_volumes

    vols, _ = load_volumes(base / "npy", names)
    x = np.stack([np.asarray(vols[n][:4]).reshape(-1) for n in names], axis=1)
    y = np.broadcast_to((np.arange(shape[2]) // 50 % 4), (4, shape[1], shape[2])).reshape(-1)
    keep = slice(None, None, max(1, len(x) // 20000))
    return RandomForestClassifier(n_estimators=20, max_depth=10, random_state=0, n_jobs=1).fit(x[keep], y[keep])


def _dask_run(model, base: Path, names: list[str], workers: int, memory_limit: str) -> tuple[dict, list[float]]:
    from overseer.seismic.dask_volume import LOCAL, dask_scheduler, open_volumes, predict_volume_dask

    with dask_scheduler(LOCAL, n_workers=workers, memory_limit=memory_limit) as client:
        vols, _ = open_volumes(base / "zarr", names)
        with PeakSampler(lambda: client.run(_rss_mib)) as sampler:
            stats = predict_volume_dask(model, vols, names, base / f"facies_{workers}.npy")
    return stats, sorted(sampler.peaks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=float, default=5e8, help="voxels per attribute volume")
    parser.add_argument("--attributes", type=int, default=4)
    parser.add_argument("--memory-limit", default="2GiB", help="memory limit of each Dask worker")
    parser.add_argument(
        "--chunks", type=int, nargs=3, default=[64, 64, -1], help="Zarr/Dask chunk (inline crossline sample)"
    )
    parser.add_argument("--dir", default=None, help="where the survey is written (default: a folder under /tmp)")
    args = parser.parse_args(argv)

    from overseer.seismic.data.volumes import load_volumes
    from overseer.seismic.predict_volume import predict_volume

    shape = _shape(args.voxels)
    n_vox = int(np.prod(shape))
    survey_bytes = n_vox * 4 * args.attributes
    base = Path(tempfile.mkdtemp(prefix="seismic_dask_", dir=args.dir))
    free = shutil.disk_usage(base).free
    need = 2 * survey_bytes + 3 * n_vox  # the .npy and Zarr stores (Zarr compresses a little), 3 int8 facies
    print(f"survey {shape} × {args.attributes} attributes = {survey_bytes / 2**30:.2f} GiB float32 per store; "
          f"needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free at {base}")  # fmt: skip
    if need > 0.9 * free:
        shutil.rmtree(base)
        print("not enough free disk: lower --voxels")
        return 1
    try:
        t0 = time.perf_counter()
        names = _write_survey(base, shape, args.attributes, tuple(args.chunks))
        print(f"wrote both stores in {time.perf_counter() - t0:.0f} s")
        model = _forest(base, names, shape)
        vols, _ = load_volumes(base / "npy", names)
        with PeakSampler(lambda: {"self": _rss_mib()}) as sampler:
            ref = predict_volume(model, vols, names, base / "facies_memmap.npy", progress=False, engine="sklearn")
        ref_peak = sampler.peaks["self"]  # counts the mapped file pages it touched (page cache, reclaimable)
        print(f"{'path':<28}{'voxels/s':>12}{'ratio':>8}{'peak MiB/worker':>18}  identical")
        print(f"{'memmap, 1 process':<28}{ref['voxels_per_second']:>12.3g}{1.0:>8.2f}{ref_peak:>18.0f}  -")
        reference = np.load(base / "facies_memmap.npy", mmap_mode="r")
        for workers in (1, 2):
            stats, peaks = _dask_run(model, base, names, workers, args.memory_limit)
            result = np.load(base / f"facies_{workers}.npy", mmap_mode="r")
            same = all(np.array_equal(reference[i : i + 64], result[i : i + 64]) for i in range(0, shape[0], 64))
            label = f"dask, {workers} worker{'s' if workers > 1 else ''} ({args.memory_limit})"
            ratio = stats["voxels_per_second"] / ref["voxels_per_second"]
            peak = max(peaks)
            print(f"{label:<28}{stats['voxels_per_second']:>12.3g}{ratio:>8.2f}{peak:>18.0f}  {same}"
                  f"  (chunks {stats['chunks']}, peaks {[round(p) for p in peaks]})")  # fmt: skip
        print(f"survey / worker memory limit: {survey_bytes / _bytes(args.memory_limit):.1f}×")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def _bytes(text: str) -> float:
    from dask.utils import parse_bytes

    return float(parse_bytes(text))


if __name__ == "__main__":
    sys.exit(main())
