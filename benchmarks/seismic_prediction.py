"""Seismic facies prediction: chunked ``predict_volume`` with scikit-learn or the compiled forest,
vs. one ``predict`` on the whole array.

What is compared, and why
-------------------------
rfc3d classifies every voxel of a survey. The obvious way stacks all attribute volumes into one
n_voxels × n_attributes feature matrix and calls ``model.predict`` once; its memory grows with the
survey (the float32 matrix, plus scikit-learn's float64 n × n_classes probability sums and one
per-tree probability array per worker thread). ``overseer.seismic.predict_volume`` reads the
memory-mapped volumes a few inline slabs at a time (``--chunk-voxels``), so its heap memory is
bounded by the chunk, whatever the survey size; its probabilities come from scikit-learn's
``predict_proba`` or from the forest compiled for ONNX Runtime (``overseer.seismic.compiled_forest``,
which must give the same facies on every voxel). This script measures the ways named in ``--ways``
on the same volumes with the same model, each in its own subprocess so that each peak is its own:

1. **sklearn** — ``predict_volume(model, memmaps, names, out.npy, chunk_voxels, engine="sklearn")``:
   reads, predicts with ``model.predict_proba`` and writes the int8 facies volume (memory-mapped,
   renamed atomically at the end).
2. **compiled** — the same with ``engine="compiled"``: the forest compiled for ONNX Runtime and
   checked against scikit-learn on the first chunk (the worker fails if it fell back). Its time
   includes compiling and checking (printed separately too).
3. **whole** — ``x = column_stack(volumes)`` (float32), ``model.predict(x)``, saved as int8 ``.npy``.
   Timed from the first read to the saved file; the predict call alone is printed too.

Printed per way: wall seconds, voxels/second, peak RSS (VmHWM, which also counts the pages of the
memory-mapped inputs and output that the process touched: file pages that the kernel can drop or
write back at any time), and the peak of anonymous RSS (``RssAnon`` sampled every 10 ms from
``/proc/self/status``: the heap memory that cannot be dropped, the number that decides whether a
survey fits), then the ratio of voxels/s compiled/sklearn and the ratios whole/sklearn, and in how
many voxels each facies volume differs from the sklearn one (the requirement: none).

The data: ``--attributes`` float32 volumes of about ``--voxels`` voxels (default 4 × 10^8 bytes per
attribute), shape (n, n, ``--samples``), written as ``.npy`` memory maps to a temporary folder that
is deleted at the end: a layered facies model (undulating layers plus an ellipsoidal "chaotic
body"), each attribute a facies-dependent mean plus Gaussian noise; no undefined voxels. The
forest (``--trees`` trees of ``--max-depth``, normalised, balanced class weights) is trained on
``--train-samples`` random voxels. The volumes were just written, so both ways read them from the
page cache (the machine has the RAM for it); on a cold cache both would wait for the disk alike.

Run from the repository root:
    .venv/bin/python benchmarks/seismic_prediction.py [--voxels 2e7] [--ways sklearn,compiled]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
WAYS = ("sklearn", "compiled", "whole")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voxels", type=float, default=1e8, help="voxels per attribute volume (at least)")
    parser.add_argument("--samples", type=int, default=400, help="samples per trace")
    parser.add_argument("--attributes", type=int, default=4)
    parser.add_argument("--facies", type=int, default=4)
    parser.add_argument("--trees", type=int, default=20)
    parser.add_argument("--max-depth", type=int, default=10)
    parser.add_argument("--train-samples", type=int, default=20_000)
    parser.add_argument("--chunk-voxels", type=int, default=2_000_000)
    parser.add_argument("--n-jobs", type=int, default=2, help="forest threads in both ways")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the scratch folder (default: $TMPDIR)")
    parser.add_argument(
        "--ways", default="sklearn,compiled,whole", help="comma-separated: sklearn, compiled, whole (skipped "
        "anyway when it would not fit in memory)",
    )  # fmt: skip
    parser.add_argument("--skip-whole", action="store_true", help="leave out the whole-array way")
    parser.add_argument("--worker", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


# ---------------------------------------------------------------------------- memory measurement


class PeakSampler:
    """Peak VmRSS and RssAnon of this process, sampled from /proc/self/status every ``interval`` s."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = {"VmRSS": 0, "RssAnon": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        with open("/proc/self/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(line.split()[1]) * 1024)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def max_rss_bytes() -> int:
    """Peak RSS of this process image (VmHWM). Not ``getrusage``'s ru_maxrss: after fork + exec
    that also holds the parent's RSS at the fork, which here is the survey builder's."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------- the synthetic survey


def truth(il: np.ndarray, xl: np.ndarray, s: np.ndarray, shape: tuple[int, int, int], k: int) -> np.ndarray:
    """Facies at (inline, crossline, sample): undulating layers of facies 0..k-2, a body of facies k-1."""
    ni, nx, ns = shape
    t = s + 0.06 * ns * np.sin(3 * np.pi * il / ni) + 0.045 * ns * np.cos(2 * np.pi * xl / nx)
    layers = (np.floor(t / (0.15 * ns)).astype(np.int64) % (k - 1)).astype(np.int8)
    body = ((il - ni / 2) / (0.2 * ni)) ** 2 + ((xl - nx / 2) / (0.25 * nx)) ** 2 + ((s - ns / 2) / (0.1 * ns)) ** 2
    return np.where(body < 1.0, np.int8(k - 1), layers)


def build_survey(args: argparse.Namespace, scratch: Path, shape: tuple[int, int, int]) -> list[str]:
    """Write the attribute volumes as .npy memory maps, a slab of inlines at a time."""
    rng = np.random.default_rng(args.seed)
    means = rng.normal(0.0, 1.0, (args.facies, args.attributes)).astype(np.float32)
    names = [f"attr{j}" for j in range(args.attributes)]
    vols = [np.lib.format.open_memmap(scratch / f"{n}.npy", mode="w+", dtype=np.float32, shape=shape) for n in names]
    ni, nx, ns = shape
    step = max(1, 5_000_000 // (nx * ns))
    xl, s = np.meshgrid(np.arange(nx), np.arange(ns), indexing="ij")
    for start in range(0, ni, step):
        il = np.arange(start, min(start + step, ni))[:, None, None]
        facies = truth(il, xl[None], s[None], shape, args.facies)
        for j, vol in enumerate(vols):
            noise = rng.standard_normal(facies.shape, dtype=np.float32)
            noise *= 0.8
            noise += means[facies, j]
            vol[start : start + il.shape[0]] = noise
    for vol in vols:
        vol.flush()
    del vols
    return names


def train_model(args: argparse.Namespace, scratch: Path, shape: tuple[int, int, int], names: list[str]) -> Any:
    from overseer.seismic.forest import build_pipeline

    rng = np.random.default_rng(args.seed + 1)
    flat = np.sort(rng.choice(math.prod(shape), size=args.train_samples, replace=False))
    il, xl, s = np.unravel_index(flat, shape)
    y = truth(il, xl, s, shape, args.facies)
    x = np.column_stack([np.load(scratch / f"{n}.npy", mmap_mode="r").reshape(-1)[flat] for n in names])
    model = build_pipeline(args.trees, args.max_depth, True, "balanced", args.seed, args.n_jobs).fit(x, y)
    with open(scratch / "model.pkl", "wb") as f:
        pickle.dump(model, f)
    return model


# ---------------------------------------------------------------------------- the two ways (subprocesses)


def worker(args: argparse.Namespace) -> None:
    from overseer.seismic.predict_volume import predict_volume

    scratch = args.scratch
    meta = json.loads((scratch / "meta.json").read_text())
    names = meta["names"]
    with open(scratch / "model.pkl", "rb") as f:
        model = pickle.load(f)
    volumes = {n: np.load(scratch / f"{n}.npy", mmap_mode="r") for n in names}
    result: dict[str, Any] = {"way": args.worker, "rss_before": max_rss_bytes()}
    with PeakSampler() as sampler:
        start = time.perf_counter()
        if args.worker in ("sklearn", "compiled"):
            stats = predict_volume(
                model, volumes, names, scratch / f"{args.worker}.npy", chunk_voxels=meta["chunk_voxels"],
                progress=False, n_jobs=meta["n_jobs"], engine=args.worker,
            )  # fmt: skip
            if args.worker == "compiled" and stats["engine"] != "onnxruntime":
                sys.exit(f"the compiled way fell back to {stats['engine']}")
            result["chunks"] = stats["chunks"]
            result["engine"] = stats["engine"]
            result["compile_seconds"] = stats["compile_seconds"]
            result["predict_seconds"] = float("nan")
        else:
            shape = tuple(meta["shape"])
            x = np.empty((math.prod(shape), len(names)), dtype=np.float32)
            for j, n in enumerate(names):
                x[:, j] = volumes[n].reshape(-1)
            t0 = time.perf_counter()
            pred = model.predict(x)
            result["predict_seconds"] = time.perf_counter() - t0
            del x
            np.save(scratch / "whole.npy", pred.astype(np.int8).reshape(shape))
        result["seconds"] = time.perf_counter() - start
    result["peak_rss"] = max_rss_bytes()
    result["peak_anon_rss"] = sampler.peak["RssAnon"]
    print(json.dumps(result))


def run_worker(way: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-W", "error::UserWarning", str(Path(__file__).resolve()), "--worker", way]
    cmd += ["--scratch", str(scratch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{way} worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def agreement(a_path: Path, b_path: Path) -> tuple[int, int]:
    """(differing voxels, voxels) of two int8 volumes, compared a slab at a time."""
    a, b = np.load(a_path, mmap_mode="r"), np.load(b_path, mmap_mode="r")
    step = max(1, 50_000_000 // math.prod(a.shape[1:]))
    diff = sum(int(np.count_nonzero(a[i : i + step] != b[i : i + step])) for i in range(0, a.shape[0], step))
    return diff, a.size


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    import sklearn

    n_side = math.ceil(math.sqrt(args.voxels / args.samples))
    shape = (n_side, n_side, args.samples)
    n_vox = math.prod(shape)
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown or not ways:
        sys.exit(f"--ways: choose from {', '.join(WAYS)}; got {args.ways!r}")
    need = n_vox * (4 * args.attributes + len(ways)) * 1.1  # attribute volumes + one int8 facies volume per way
    free = shutil.disk_usage(parent).free
    if free < need:
        sys.exit(f"need {gib(need)} GiB free in {parent}, have {gib(free)} GiB: use --voxels or --workdir")
    # the whole-array way: float32 x, float64 probability sum, one float64 per-tree array per thread
    whole_estimate = n_vox * (4 * args.attributes + 8 * args.facies * (1 + args.n_jobs) + 16)
    whole_fits = whole_estimate <= mem_available() - 2 * 2**30  # leave others 2 GiB
    if "whole" in ways and (args.skip_whole or not whole_fits):
        ways.remove("whole")
        if not args.skip_whole:
            print(f"whole-array way skipped: it needs about {gib(whole_estimate)} GiB")
    import onnxruntime

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"onnxruntime {onnxruntime.__version__}"
    )
    print(f"cores: {os.cpu_count()}, load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"MemAvailable {gib(mem_available())} GiB; disk free {gib(free)} GiB in {parent}")
    print(
        f"survey: {args.attributes} float32 attributes of shape {shape} = {n_vox:.3g} voxels "
        f"({gib(4 * n_vox)} GiB each); {args.facies} facies; forest: {args.trees} trees, max_depth "
        f"{args.max_depth}, n_jobs {args.n_jobs}; chunk_voxels {args.chunk_voxels:,}; ways: {', '.join(ways)}"
    )

    scratch = Path(tempfile.mkdtemp(prefix="seismic_prediction_", dir=parent))
    try:
        t0 = time.perf_counter()
        names = build_survey(args, scratch, shape)
        print(f"wrote the volumes in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        train_model(args, scratch, shape, names)
        print(f"trained on {args.train_samples:,} voxels in {time.perf_counter() - t0:.1f} s")
        meta = {"names": names, "shape": list(shape), "chunk_voxels": args.chunk_voxels, "n_jobs": args.n_jobs}
        (scratch / "meta.json").write_text(json.dumps(meta))

        results = {}
        for way in ways:
            results[way] = run_worker(way, args, scratch)
            print(f"{way}: {results[way]['seconds']:.1f} s, load average {os.getloadavg()[0]:.2f}", flush=True)

        print()
        print(f"{'way':<8} {'seconds':>8} {'predict s':>9} {'Mvoxel/s':>9} {'peak RSS GiB':>13} {'peak anon GiB':>14}")
        for r in results.values():
            print(
                f"{r['way']:<8} {r['seconds']:>8.1f} {r['predict_seconds']:>9.1f} {n_vox / r['seconds'] / 1e6:>9.2f} "
                f"{gib(r['peak_rss']):>13} {gib(r['peak_anon_rss']):>14}"
            )
        chunked = [r for r in results.values() if "chunks" in r]
        if chunked:
            before = gib(chunked[0]["rss_before"])
            print(f"(chunked ways: {chunked[0]['chunks']} chunks; a worker's RSS before predicting: {before} GiB)")
        if "compiled" in results:
            c = results["compiled"]
            print(f"compiled: engine {c['engine']}; compiling + checking the forest took {c['compile_seconds']:.2f} s")
        base = results.get("sklearn")
        if base is not None and "compiled" in results:
            c = results["compiled"]
            rss, anon = c["peak_rss"] / base["peak_rss"], c["peak_anon_rss"] / base["peak_anon_rss"]
            speed = base["seconds"] / c["seconds"]
            print(f"ratio compiled/sklearn: voxels/s {speed:.2f}x, peak RSS {rss:.2f}, peak anon RSS {anon:.2f}")
        if base is not None and "whole" in results:
            w = results["whole"]
            rss, anon = w["peak_rss"] / base["peak_rss"], w["peak_anon_rss"] / base["peak_anon_rss"]
            slower = w["seconds"] / base["seconds"]
            print(f"ratio whole/sklearn: time {slower:.2f}, peak RSS {rss:.2f}, peak anon RSS {anon:.2f}")
        reference = ways[0]
        for way in ways[1:]:
            diff, total = agreement(scratch / f"{reference}.npy", scratch / f"{way}.npy")
            print(f"label agreement {way} vs {reference}: {total - diff} of {total} voxels the same, {diff} differ")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
