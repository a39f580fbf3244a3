"""GTM facies probabilities over a survey: ``GTMClassifier.predict_proba`` vs. a straightforward
cdist + softmax implementation, and vs. the random forest through ``predict_volume``.

What is compared, and why
-------------------------
The GTM workflow (AASPI) gives every voxel of a survey facies probabilities: the Bhattacharyya
coefficient between its responsibilities over the K latent nodes and each facies' latent PDF. A
voxel costs K squared distances and K exponentials, so at K = 400 (a 20 × 20 grid) the projection,
not the fit, decides whether a survey takes minutes or hours. This script fits one
``overseer.seismic.gtm.GTMClassifier`` (``--grid``², ``--rbf-grid``² basis functions,
``--attributes`` attributes) and then classifies the same memory-mapped float32 volumes, chunk by
chunk (``--chunk-voxels``, the chunks of ``predict_volume.plan_chunks``), in the ways named in
``--ways``, each in its own subprocess so that each memory peak is its own:

1. **gtm** — per chunk: stack the attribute slabs into a float32 chunk × attributes matrix,
   ``model.predict_proba`` (float32, sub-blocks of ``block_rows`` rows, ``--n-jobs`` threads),
   argmax, write the int8 facies into a ``.npy`` memory map.
2. **gtm_pv** — the same model through ``overseer.seismic.predict_volume.predict_volume``
   (``engine="sklearn"``: the model's own ``predict_proba``), i.e. the harness the forest uses.
3. **naive** — per chunk, in sub-chunks of ``--naive-rows`` rows (a whole 2·10⁶-row chunk would be a
   6.4 GB float64 distance matrix, and softmax makes two more of them): standardise,
   ``scipy.spatial.distance.cdist(x, centres, "sqeuclidean")``, ``scipy.special.softmax`` of
   −β/2·d² (the responsibilities), ``sqrt(R) @ sqrt(P)ᵀ`` normalised over facies. Only the first
   ``--naive-voxels`` voxels (whole chunks), as it is slow; its rate is per voxel as the others'.
4. **forest** — the rfc3d random forest (``overseer.seismic.forest.build_pipeline``: ``--trees``
   trees of ``--max-depth``, normalised, balanced class weights, trained on the same picks) through
   ``predict_volume`` with ``--forest-engine`` (default ``auto``: the forest compiled for ONNX
   Runtime when it checks out, else scikit-learn).

Printed per way: seconds, voxels/second, the heap it added (peak ``RssAnon`` sampled every 10 ms
from ``/proc/self/status`` minus ``RssAnon`` just before the way started: memory that cannot be
dropped; not tracemalloc, which misses BLAS and thread buffers), and peak RSS (VmHWM, which also
counts the memory-mapped pages touched); then the ratios of voxels/s against **gtm**, in how many
voxels each facies volume differs from **gtm**'s (on the voxels both classified), and each way's
accuracy against the true facies on ``--check-voxels`` random voxels.

The data: the layered survey of ``benchmarks/seismic_prediction.py`` (its ``build_survey``:
undulating layers plus an ellipsoidal body, each attribute a facies-dependent mean plus Gaussian
noise), shape (n, n, ``--samples``) with about ``--voxels`` voxels, written to a temporary folder
that is deleted at the end. The GTM is fitted to ``--train-samples`` random voxels (unlabelled)
plus ``--picks`` random voxels labelled with their true facies; the forest to the picks.

Run from the repository root:
    .venv/bin/python benchmarks/seismic_gtm.py [--voxels 1e7] [--ways gtm,gtm_pv,naive,forest]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
WAYS = ("gtm", "gtm_pv", "naive", "forest")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voxels", type=float, default=1e8, help="voxels per attribute volume (at least)")
    parser.add_argument("--samples", type=int, default=400, help="samples per trace")
    parser.add_argument("--attributes", type=int, default=4)
    parser.add_argument("--facies", type=int, default=4)
    parser.add_argument("--grid", type=int, default=20, help="latent grid side (K = grid²)")
    parser.add_argument("--rbf-grid", type=int, default=5, help="basis-function grid side (M = rbf_grid²)")
    parser.add_argument("--likelihood", choices=("bhattacharyya", "bayes"), default="bhattacharyya")
    parser.add_argument("--train-samples", type=int, default=50_000, help="unlabelled voxels the GTM is fitted to")
    parser.add_argument("--picks", type=int, default=5_000, help="labelled voxels (true facies)")
    parser.add_argument("--chunk-voxels", type=int, default=2_000_000)
    parser.add_argument("--block-rows", type=int, default=None, help="GTMClassifier.block_rows (default: its own)")
    parser.add_argument("--n-jobs", type=int, default=2, help="threads of every way (GTM sub-blocks, forest)")
    parser.add_argument("--naive-voxels", type=float, default=1e7, help="voxels the naive way classifies")
    parser.add_argument("--naive-rows", type=int, default=250_000, help="sub-chunk rows of the naive way")
    parser.add_argument("--trees", type=int, default=20)
    parser.add_argument("--max-depth", type=int, default=10)
    parser.add_argument("--forest-engine", choices=("auto", "compiled", "sklearn"), default="auto")
    parser.add_argument("--check-voxels", type=int, default=1_000_000, help="random voxels checked against truth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the scratch folder (default: $TMPDIR)")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated: {', '.join(WAYS)}")
    parser.add_argument("--worker", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------- training


def train_models(args: argparse.Namespace, scratch: Path, shape: tuple[int, int, int], names: list[str]) -> dict:
    from seismic_prediction import truth

    from overseer.seismic.forest import build_pipeline
    from overseer.seismic.gtm import GTMClassifier

    rng = np.random.default_rng(args.seed + 1)
    n_rows = args.train_samples + args.picks
    flat = np.sort(rng.choice(math.prod(shape), size=n_rows, replace=False))
    il, xl, s = np.unravel_index(flat, shape)
    facies = truth(il, xl, s, shape, args.facies).astype(np.int64)
    x = np.column_stack([np.load(scratch / f"{n}.npy", mmap_mode="r").reshape(-1)[flat] for n in names])
    picked = np.zeros(n_rows, dtype=bool)
    picked[rng.choice(n_rows, size=args.picks, replace=False)] = True
    y = np.where(picked, facies, -1)

    options: dict[str, Any] = {"grid": (args.grid, args.grid), "rbf_grid": (args.rbf_grid, args.rbf_grid)}
    if args.block_rows:
        options["block_rows"] = args.block_rows
    gtm = GTMClassifier(**options, likelihood=args.likelihood, n_jobs=args.n_jobs)
    t0 = time.perf_counter()
    gtm.fit(x, y)
    gtm_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    forest = build_pipeline(args.trees, args.max_depth, True, "balanced", args.seed, args.n_jobs)
    forest.fit(x[picked], facies[picked])
    forest_seconds = time.perf_counter() - t0
    for name, model in (("gtm", gtm), ("forest", forest)):
        with open(scratch / f"{name}.pkl", "wb") as f:
            pickle.dump(model, f)
    return {
        "gtm_fit_seconds": gtm_seconds,
        "gtm_n_iter": gtm.gtm_.n_iter_,
        "gtm_converged": gtm.gtm_.converged_,
        "gtm_beta": gtm.gtm_.beta_,
        "gtm_rows": n_rows,
        "forest_fit_seconds": forest_seconds,
    }


# ---------------------------------------------------------------------------- the ways (subprocesses)


def naive_proba(model: Any, x: np.ndarray, rows: int) -> np.ndarray:
    """cdist + softmax responsibilities (float64), then the likelihood over facies, ``rows`` at a time."""
    from scipy.spatial.distance import cdist
    from scipy.special import softmax

    from overseer.seismic.gtm import PDF_FLOOR

    g = model.gtm_
    p = np.maximum(model.facies_pdfs_, PDF_FLOOR)
    out = np.empty((x.shape[0], p.shape[0]))
    for start in range(0, x.shape[0], rows):
        xs = (x[start : start + rows].astype(np.float64) - g.mean_) / g.scale_
        r = softmax(-0.5 * g.beta_ * cdist(xs, g.centers_, "sqeuclidean"), axis=1)
        score = np.sqrt(r) @ np.sqrt(p).T if model.likelihood == "bhattacharyya" else r @ (model.priors_[:, None] * p).T
        out[start : start + rows] = score / score.sum(axis=1, keepdims=True)
    return out


def chunk_loop(way: str, model: Any, volumes: list[np.ndarray], out_path: Path, meta: dict) -> dict:
    from overseer.seismic.predict_volume import plan_chunks

    shape = tuple(meta["shape"])
    plan = plan_chunks(shape, meta["chunk_voxels"])
    if way == "naive":
        per_chunk = math.prod(shape[1:]) * (plan[0][0].stop - plan[0][0].start)
        plan = plan[: max(1, math.ceil(meta["naive_voxels"] / per_chunk))]
    facies = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.int8, shape=shape)
    facies[:] = -1
    voxels = 0
    for il, xl in plan:
        block = (il.stop - il.start, xl.stop - xl.start, shape[2])
        n = math.prod(block)
        x = np.empty((n, len(volumes)), dtype=np.float32)
        for j, volume in enumerate(volumes):
            x[:, j] = np.asarray(volume[il, xl, :]).reshape(-1)
        proba = model.predict_proba(x) if way == "gtm" else naive_proba(model, x, meta["naive_rows"])
        facies[il, xl, :] = model.classes_[np.argmax(proba, axis=1)].astype(np.int8).reshape(block)
        voxels += n
        del x, proba
    facies.flush()
    return {"voxels": voxels, "chunks": len(plan)}


def worker(args: argparse.Namespace) -> None:
    from seismic_prediction import PeakSampler, max_rss_bytes

    from overseer.seismic.predict_volume import predict_volume

    scratch = args.scratch
    meta = json.loads((scratch / "meta.json").read_text())
    names = meta["names"]
    with open(scratch / ("forest.pkl" if args.worker == "forest" else "gtm.pkl"), "rb") as f:
        model = pickle.load(f)
    volumes = {n: np.load(scratch / f"{n}.npy", mmap_mode="r") for n in names}
    result: dict[str, Any] = {"way": args.worker}
    anon_before = rss_anon()
    with PeakSampler() as sampler:
        start = time.perf_counter()
        out_path = scratch / f"{args.worker}.npy"
        if args.worker in ("gtm_pv", "forest"):
            engine = meta["forest_engine"] if args.worker == "forest" else "sklearn"
            stats = predict_volume(
                model, volumes, names, out_path, chunk_voxels=meta["chunk_voxels"], progress=False,
                n_jobs=meta["n_jobs"], engine=engine,
            )  # fmt: skip
            result.update(voxels=stats["voxels"], chunks=stats["chunks"], engine=stats["engine"])
        else:
            result.update(chunk_loop(args.worker, model, [volumes[n] for n in names], out_path, meta))
        result["seconds"] = time.perf_counter() - start
    result["heap_added"] = sampler.peak["RssAnon"] - anon_before
    result["peak_rss"] = max_rss_bytes()
    print(json.dumps(result))


def run_worker(way: str, scratch: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", way, "--scratch", str(scratch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{way} worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    if proc.stderr.strip():
        print(f"({way} stderr: {proc.stderr.strip()[-500:]})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- comparison


def differing(a_path: Path, b_path: Path) -> tuple[int, int]:
    """(differing voxels, voxels both classified) of two int8 volumes (-1: not classified)."""
    a, b = np.load(a_path, mmap_mode="r"), np.load(b_path, mmap_mode="r")
    step = max(1, 50_000_000 // math.prod(a.shape[1:]))
    diff = both = 0
    for i in range(0, a.shape[0], step):
        sa, sb = np.asarray(a[i : i + step]), np.asarray(b[i : i + step])
        ok = (sa >= 0) & (sb >= 0)
        both += int(ok.sum())
        diff += int(np.count_nonzero((sa != sb) & ok))
    return diff, both


def accuracy(path: Path, args: argparse.Namespace, shape: tuple[int, int, int]) -> float:
    from seismic_prediction import truth

    rng = np.random.default_rng(args.seed + 2)
    flat = np.sort(rng.choice(math.prod(shape), size=min(args.check_voxels, math.prod(shape)), replace=False))
    got = np.load(path, mmap_mode="r").reshape(-1)[flat]
    ok = got >= 0
    il, xl, s = np.unravel_index(flat[ok], shape)
    return float(np.mean(got[ok] == truth(il, xl, s, shape, args.facies)))


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    import scipy
    import sklearn
    from seismic_prediction import build_survey, mem_available

    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown or not ways:
        sys.exit(f"--ways: choose from {', '.join(WAYS)}; got {args.ways!r}")
    n_side = math.ceil(math.sqrt(args.voxels / args.samples))
    shape = (n_side, n_side, args.samples)
    n_vox = math.prod(shape)
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    need = n_vox * (4 * args.attributes + len(ways)) * 1.1
    free = shutil.disk_usage(parent).free
    if free < need:
        sys.exit(f"need {gib(need)} GiB free in {parent}, have {gib(free)} GiB: use --voxels or --workdir")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"scikit-learn {sklearn.__version__}")  # fmt: skip
    print(f"cores: {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), load average: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip
    print(f"MemAvailable {gib(mem_available())} GiB; disk free {gib(free)} GiB in {parent}")
    print(
        f"survey: {args.attributes} float32 attributes of shape {shape} = {n_vox:.3g} voxels ({gib(4 * n_vox)} GiB "
        f"each); {args.facies} facies; GTM {args.grid}x{args.grid} nodes, {args.rbf_grid}x{args.rbf_grid} basis "
        f"functions, {args.likelihood}; forest {args.trees} trees, max_depth {args.max_depth}; chunk_voxels "
        f"{args.chunk_voxels:,}; n_jobs {args.n_jobs}; ways: {', '.join(ways)}"
    )

    scratch = Path(tempfile.mkdtemp(prefix="seismic_gtm_", dir=parent))
    try:
        t0 = time.perf_counter()
        names = build_survey(args, scratch, shape)
        print(f"wrote the volumes in {time.perf_counter() - t0:.1f} s")
        fit = train_models(args, scratch, shape, names)
        print(
            f"GTMClassifier fitted to {fit['gtm_rows']:,} voxels ({args.picks:,} picked) in "
            f"{fit['gtm_fit_seconds']:.1f} s ({fit['gtm_n_iter']} EM iterations, converged {fit['gtm_converged']}, "
            f"beta {fit['gtm_beta']:.3g}); "
            f"forest fitted to the picks in {fit['forest_fit_seconds']:.1f} s"
        )
        meta = {
            "names": names, "shape": list(shape), "chunk_voxels": args.chunk_voxels, "n_jobs": args.n_jobs,
            "naive_voxels": args.naive_voxels, "naive_rows": args.naive_rows, "forest_engine": args.forest_engine,
        }  # fmt: skip
        (scratch / "meta.json").write_text(json.dumps(meta))

        results = {}
        for way in ways:
            results[way] = run_worker(way, scratch)
            r = results[way]
            print(f"{way}: {r['seconds']:.1f} s for {r['voxels']:,} voxels, load average {os.getloadavg()[0]:.2f}")

        print()
        print(f"{'way':<8} {'voxels':>12} {'seconds':>8} {'Mvoxel/s':>9} {'heap added GiB':>15} {'peak RSS GiB':>13} "
              f"{'accuracy':>9}")  # fmt: skip
        for way, r in results.items():
            r["rate"] = r["voxels"] / r["seconds"]
            r["accuracy"] = accuracy(scratch / f"{way}.npy", args, shape)
            print(
                f"{way:<8} {r['voxels']:>12,} {r['seconds']:>8.1f} {r['rate'] / 1e6:>9.2f} {gib(r['heap_added']):>15} "
                f"{gib(r['peak_rss']):>13} {r['accuracy']:>9.4f}"
            )
        if "forest" in results:
            print(f"forest engine: {results['forest']['engine']}")
        base = results.get("gtm")
        if base is not None:
            for way, r in results.items():
                if way == "gtm":
                    continue
                diff, both = differing(scratch / "gtm.npy", scratch / f"{way}.npy")
                heap = base["heap_added"] / max(r["heap_added"], 1)
                print(
                    f"ratio gtm/{way}: voxels/s {base['rate'] / r['rate']:.2f}x, heap added {heap:.2f}; "
                    f"facies differ from gtm in {diff:,} of {both:,} voxels"
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
