"""Seismic attribute selection: ours (batched k-means → SEM → CEM) vs. the straightforward loop.

What is compared, and why
-------------------------
AASPI's attribute_selection fits a Gaussian mixture of up to J clusters to every facies in every
one of the 2^N − 1 attribute combinations, then ranks the combinations by the average cumulative
Bhattacharyya distance between the clusters of different facies (notes eqs. 1–9). This script
runs, on the same generated training table (``make_selection_data``: N attributes of which a few
separate M facies, the first facies bimodal, the rest noise):

1. **ours** — ``GMMAttributeSelector`` (exhaustive search): all combinations of one size and all
   facies fitted as one batch (k-means, 200 SEM iterations, CEM of all covariance models at once,
   BIC over K = 1 … J and eight Celeux–Govaert models); every E- and M-step of a facies is one
   float64 GEMM against its shared augmented data (``gmm.SharedRowsData``), chunks spread over
   cores by joblib.
   Timed on one core and on all (``--jobs``), the latter once including the start of joblib's
   worker processes and once with them running (as in a session that fits more than once).
2. **straightforward** — a Python loop over combinations and facies calling
   ``sklearn.mixture.GaussianMixture`` once per number of clusters K = 1 … J and covariance_type
   (spherical, diag, tied, full), keeping the lowest scikit-learn BIC, then the same eq. 7–9
   scoring (``average_cumulative_distance``). Run with BLAS/OpenMP limited to one thread: on a
   shared 2-core machine scikit-learn's k-means initialisation otherwise spends ~50× longer in
   thread start-up than in the fit.

Printed: the wall time of each, the ratio, whether both chose the same overall winner (eq. 9) and
the same winner per size n, and the rank correlation of all 2^N − 1 scores. Then ours alone at
larger N (exhaustive at N = 12, beam search at N = 16) with wall time and peak memory (peak of
NumPy/Python allocations traced by tracemalloc in a separate one-core run, since joblib's
workers are separate processes), and N = 16 exhaustive (65,535 combinations) on all cores
(``--exhaustive-n``; with ``--sample F`` only a fraction F of each size class is timed and the
total extrapolated from it, per size class — printed as such).

Run from the repository root:  .venv/bin/python benchmarks/seismic_selection.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd
from joblib import effective_n_jobs
from scipy.stats import spearmanr
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from overseer.seismic.bhattacharyya import average_cumulative_distance
from overseer.seismic.selection import DegenerateAttributeWarning, GMMAttributeSelector, make_selection_data

SKLEARN_TYPES = ("spherical", "diag", "tied", "full")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-attributes", type=int, default=9, help="N of the head-to-head comparison")
    parser.add_argument("--informative", type=int, default=3, help="attributes that separate the facies")
    parser.add_argument("--facies", type=int, default=3, help="M")
    parser.add_argument("--per-facies", type=int, default=300, help="training samples per facies")
    parser.add_argument("--max-clusters", type=int, default=2, help="J")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=-1, help="joblib workers for ours (-1: all cores)")
    parser.add_argument("--scale", type=int, nargs="*", default=[12, 16], help="larger N for ours alone")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--reference", help="CSV (combination as a|b|c, score) of an earlier version's scores")
    parser.add_argument("--write-scores", help="write ours' head-to-head scores as such a CSV")
    parser.add_argument("--skip-memory", action="store_true", help="no one-core tracemalloc runs")
    parser.add_argument("--exhaustive-n", type=int, default=16, help="N of the exhaustive timing (0: skip)")
    parser.add_argument(
        "--sample", type=float, default=1.0, help="fraction of each size class timed for --exhaustive-n (1: all)"
    )
    return parser.parse_args()


def full_covariances(gm: GaussianMixture, n: int) -> np.ndarray:
    """scikit-learn's covariances_ of any covariance_type as (K, n, n)."""
    k = gm.n_components
    cov = gm.covariances_
    if gm.covariance_type == "spherical":
        return cov[:, None, None] * np.eye(n)
    if gm.covariance_type == "diag":
        return cov[:, :, None] * np.eye(n)
    if gm.covariance_type == "tied":
        return np.broadcast_to(cov, (k, n, n))
    return cov


def straightforward_selection(x: pd.DataFrame, y: np.ndarray, max_clusters: int, seed: int) -> pd.DataFrame:
    """The plain way: one GaussianMixture per (combination, facies, K, covariance_type); lowest
    scikit-learn BIC wins; eqs. 7–8 on the winners. Returns combination, n, score."""
    values = x.to_numpy(dtype=np.float64)
    z = (values - values.mean(axis=0)) / values.std(axis=0)  # the same standardisation as ours
    names = list(x.columns)
    facies = np.unique(y)
    rows = []
    for n in range(1, len(names) + 1):
        for combo in itertools.combinations(range(len(names)), n):
            means = np.zeros((1, len(facies), max_clusters, n))
            covs = np.broadcast_to(np.eye(n), (1, len(facies), max_clusters, n, n)).copy()
            active = np.zeros((1, len(facies), max_clusters), dtype=bool)
            for m, label in enumerate(facies):
                data = z[y == label][:, combo]
                best, best_bic = None, np.inf
                for k in range(1, max_clusters + 1):
                    for covariance_type in SKLEARN_TYPES:
                        gm = GaussianMixture(k, covariance_type=covariance_type, random_state=seed).fit(data)
                        bic = gm.bic(data)
                        if bic < best_bic:
                            best, best_bic = gm, bic
                k = best.n_components
                means[0, m, :k] = best.means_
                covs[0, m, :k] = full_covariances(best, n)
                active[0, m, :k] = True
            score = float(average_cumulative_distance(means, covs, active)[0])
            rows.append({"combination": tuple(names[i] for i in combo), "n": n, "score": score})
    return pd.DataFrame(rows)


def per_n_winners(scores: pd.DataFrame) -> pd.Series:
    return scores.loc[scores.groupby("n")["score"].idxmax()].set_index("n")["combination"]


def run_ours(
    x: pd.DataFrame, y: np.ndarray, max_clusters: int, seed: int, jobs: int
) -> tuple[GMMAttributeSelector, float]:
    selector = GMMAttributeSelector(max_clusters=max_clusters, random_state=seed, n_jobs=jobs, progress=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateAttributeWarning)
        selector.fit(x, y)
    return selector, time.perf_counter() - start


def traced_peak_mib(x: pd.DataFrame, y: np.ndarray, max_clusters: int, seed: int) -> float:
    tracemalloc.start()
    try:
        run_ours(x, y, max_clusters, seed, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def exhaustive_timing(n_attr: int, args: argparse.Namespace) -> None:
    """Ours, exhaustive over all 2^N − 1 combinations on ``--jobs`` cores: the whole search, or a
    random fraction ``--sample`` of every size class timed and scaled up per class."""
    x, y, _ = make_selection_data(n_attr, args.informative, args.facies, args.per_facies, seed=args.seed)
    total = 2**n_attr - 1
    if args.sample >= 1.0:
        selector = GMMAttributeSelector(
            max_clusters=args.max_clusters,
            search="exhaustive",
            random_state=args.seed,
            n_jobs=args.jobs,
            progress=False,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateAttributeWarning)
            selector.fit(x, y)
        seconds = time.perf_counter() - start
        print(
            f"N={n_attr} exhaustive: {len(selector.scores_)} combinations in {seconds:.1f} s "
            f"({seconds / 60:.1f} min) on {effective_n_jobs(args.jobs)} core(s); winner "
            f"{fmt_combo(selector.best_combination_)}, best per n: "
            + ", ".join(f"{n}:{selector.best_per_n_.loc[n, 'score']:.3f}" for n in selector.best_per_n_.index)
        )
        return
    from overseer.seismic import selection as sel_mod  # the search internals, for a sample of each size

    values, labels, names, _ = sel_mod._as_table(x, y)
    prep, _ = sel_mod.prepare_data(
        values,
        labels,
        names,
        max_clusters=args.max_clusters,
        variance_floor=1e-3,
        resolution_floor=True,
        sem_iter=200,
        random_state=args.seed,
    )
    cfg = sel_mod.FitConfig(args.max_clusters, sel_mod.COVARIANCE_MODELS, 200, 100, 300)
    rng = np.random.default_rng(args.seed)
    groups, scale = [], []
    for n in range(1, n_attr + 1):
        combos = np.array(list(itertools.combinations(range(n_attr), n)), dtype=np.int64)
        keep = max(1, round(args.sample * len(combos)))
        groups.append(combos[np.sort(rng.choice(len(combos), keep, replace=False))])
        scale.append(len(combos) / keep)
    start = time.perf_counter()
    sel_mod._evaluate_many(prep, groups, cfg, args.jobs, False, "sample")
    seconds = time.perf_counter() - start
    timed = sum(len(g) for g in groups)
    # per-class cost from a one-core pass over each sampled class, to weight the extrapolation
    per_class = []
    with threadpool_limits(limits=1):
        for g in groups:
            t0 = time.perf_counter()
            sel_mod.evaluate_combinations(prep, g, cfg)
            per_class.append(time.perf_counter() - t0)
    factor = sum(c * f for c, f in zip(per_class, scale, strict=True)) / sum(per_class)
    print(
        f"N={n_attr} exhaustive, EXTRAPOLATED: {timed} of {total} combinations (fraction {args.sample} of each size) "
        f"took {seconds:.1f} s on {effective_n_jobs(args.jobs)} core(s); scaled per size class: "
        f"≈ {seconds * factor:.0f} s ({seconds * factor / 60:.1f} min) for all {total}"
    )


def fmt_combo(combo: tuple[str, ...]) -> str:
    return "(" + ", ".join(combo) + ")"


def main() -> None:
    args = parse_args()
    cores = effective_n_jobs(args.jobs)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; ours with {cores} worker(s)")
    x, y, informative = make_selection_data(
        args.n_attributes, args.informative, args.facies, args.per_facies, seed=args.seed
    )
    print(
        f"data: N={args.n_attributes} attributes ({2**args.n_attributes - 1} combinations), M={args.facies} facies × "
        f"{args.per_facies} samples, J={args.max_clusters}; informative: {fmt_combo(informative)}\n"
    )

    ours1, t_ours1 = run_ours(x, y, args.max_clusters, args.seed, 1)
    ours, t_cold = run_ours(x, y, args.max_clusters, args.seed, args.jobs)  # starts the worker processes
    ours, t_ours = run_ours(x, y, args.max_clusters, args.seed, args.jobs)  # workers already running
    assert ours.scores_.equals(ours1.scores_), "ours must not depend on n_jobs"
    if args.write_scores:
        out = ours.scores_[["combination", "score"]].assign(combination=lambda d: d["combination"].map("|".join))
        out.to_csv(args.write_scores, index=False, float_format="%.17g")

    rows = [("ours, 1 core", t_ours1, ours1.best_combination_, ours1.best_score_)]
    rows.append((f"ours, {cores} cores (incl. worker start)", t_cold, ours.best_combination_, ours.best_score_))
    rows.append((f"ours, {cores} cores (workers running)", t_ours, ours.best_combination_, ours.best_score_))
    if not args.skip_baseline:
        start = time.perf_counter()
        with threadpool_limits(limits=1):
            base = straightforward_selection(x, y, args.max_clusters, args.seed)
        t_base = time.perf_counter() - start
        winner = base.loc[base["score"].idxmax()]
        rows.append(("straightforward (sklearn loop)", t_base, winner["combination"], winner["score"]))

    print(f"{'implementation':40s} {'wall s':>8s}  {'winner (eq. 9)':40s} {'score':>7s}")
    for name, seconds, combo, score in rows:
        print(f"{name:40s} {seconds:8.1f}  {fmt_combo(combo):40s} {score:7.3f}")
    if not args.skip_baseline:
        ours_winners, base_winners = per_n_winners(ours.scores_), per_n_winners(base)
        same_n = [n for n in ours_winners.index if set(ours_winners[n]) == set(base_winners[n])]
        merged = ours.scores_.merge(base, on="combination", suffixes=("_ours", "_sklearn"))
        rho = spearmanr(merged["score_ours"], merged["score_sklearn"]).statistic
        ratios = f"{t_base / t_ours1:.1f}× (1 core), {t_base / t_cold:.1f}× / {t_base / t_ours:.1f}× ({cores} cores)"
        print(f"\nratio straightforward / ours: {ratios}")
        print(f"same overall winner: {set(ours.best_combination_) == set(winner['combination'])}")
        if args.reference:
            ref = pd.read_csv(args.reference)
            ref["combination"] = ref["combination"].map(lambda c: tuple(c.split("|")))
            both = ours.scores_.merge(ref, on="combination", suffixes=("", "_ref"))
            diff = (both["score"] - both["score_ref"]).abs() / both["score_ref"].abs().clip(lower=1e-3)
            same = ref.loc[ref["score"].idxmax(), "combination"] == ours.best_combination_
            print(
                f"vs reference scores ({args.reference}): {len(both)} combinations, max relative difference "
                f"{diff.max():.1e}, winner {'same' if same else 'DIFFERENT'}"
            )
        print(f"same winner per size n: {len(same_n)} of {len(ours_winners)} sizes (n = {', '.join(map(str, same_n))})")
        print(f"Spearman rank correlation of all {len(merged)} scores: {rho:.3f}")
        size_k = args.informative
        print(
            f"size-{size_k} winner = informative set: ours {set(ours_winners[size_k]) == set(informative)}, "
            f"straightforward {set(base_winners[size_k]) == set(informative)}"
        )

    if args.scale:
        print(f"\n{'ours at larger N':18s} {'search':>10s} {'evaluated':>10s} {'wall s':>8s} {'peak MiB':>9s}  winner")
    for n_attr in args.scale:
        xs, ys, _ = make_selection_data(n_attr, args.informative, args.facies, args.per_facies, seed=args.seed)
        sel, seconds = run_ours(xs, ys, args.max_clusters, args.seed, args.jobs)
        peak = float("nan") if args.skip_memory else traced_peak_mib(xs, ys, args.max_clusters, args.seed)
        print(
            f"N={n_attr:<16d} {sel.search_:>10s} {len(sel.scores_):>10d} {seconds:8.1f} {peak:9.1f}  "
            f"{fmt_combo(sel.best_combination_)}"
        )
    if args.scale and not args.skip_memory:
        print("(peak MiB: NumPy/Python allocations traced during a separate one-core run)")
    if args.exhaustive_n:
        print()
        exhaustive_timing(args.exhaustive_n, args)


if __name__ == "__main__":
    main()
