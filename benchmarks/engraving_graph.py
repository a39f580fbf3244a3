"""Score-graph construction: ours (vectorised searchsorted ranges) vs. a pairwise Python double loop.

What is compared, and why
-------------------------
The EngravingGNN input graph (paper §2.1) has onset, during, follow and silence edges (plus
inverses) between notes, and the model scores voice candidates (same bar, offset(u) <= onset(w))
and chord candidates (same onset, u < w) (§2.2). The straightforward way to build them — as
piano_svsep's ``hetero_graph_from_note_array`` does — visits every pair of notes. Both ways run
on the same pieces, parsed once beforehand (parsing is not timed):

1. **ours** — ``overseer.engraving.data.graph.build_graph``: node features, the seven relations
   and both candidate sets from the sorted note arrays, each relation a contiguous index range
   per note found with ``np.searchsorted`` and expanded with one ragged ``arange``.
2. **pairwise** — a Python double loop over notes (u, w) testing each definition on the same
   quantized integer times (no features: it does strictly less work than ours).

Printed per piece and in total: notes, wall time of each (best of ``--repeats`` for ours, one run
of the pairwise loop), notes/second and the ratio; and whether both produce identical edge sets
for every relation and both candidate sets (the run stops with an error if they differ).

Run from the repository root:
    .venv/bin/python benchmarks/engraving_graph.py                       # the default corpus
    .venv/bin/python benchmarks/engraving_graph.py --corpus ../shared/data/dcml_train --limit 20
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

from overseer.engraving import schema
from overseer.engraving.data.corpus import default_corpus
from overseer.engraving.data.ingest import find_scores
from overseer.engraving.data.labels import graph_from_table
from overseer.engraving.data.scores import ScoreTable, load_score_table
from overseer.engraving.notation import quantize
from overseer.errors import InputError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="default", help="'default' (music21 piano scores) or a folder of scores")
    parser.add_argument("--limit", type=int, default=0, help="at most this many scores (0: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours; the best is kept")
    parser.add_argument("--silence", default="gap", choices=("gap", "rest"))
    return parser.parse_args()


def pairwise_graph(table: ScoreTable, silence: str = "gap") -> dict[str, set[tuple[int, int]]]:
    """Every relation and candidate set by testing all pairs (u, w) in Python."""
    on = quantize(table.onset).tolist()
    off = quantize(table.onset + table.duration).tolist()
    bar = table.bar.tolist()
    n = len(on)
    edges: dict[str, set[tuple[int, int]]] = {k: set() for k in ("onset", "during", "follow", "silence")}
    voice_cand, chord_cand = set(), set()
    for u in range(n):
        starts_at_off = False
        sounds_across = False
        next_onset = None
        for w in range(n):
            if on[w] == off[u]:
                starts_at_off = True
            if on[w] < off[u] < off[w]:
                sounds_across = True
            if on[w] > off[u] and (next_onset is None or on[w] < next_onset):
                next_onset = on[w]
            if u == w:
                continue
            if on[w] == on[u]:
                edges["onset"].add((u, w))
                if u < w:
                    chord_cand.add((u, w))
            if on[u] < on[w] < off[u]:
                edges["during"].add((u, w))
            if on[w] == off[u]:
                edges["follow"].add((u, w))
            if bar[u] == bar[w] and off[u] <= on[w]:
                voice_cand.add((u, w))
        gap = not starts_at_off and next_onset is not None and (silence == "rest" or not sounds_across)
        if gap:
            for w in range(n):
                if on[w] == next_onset:
                    edges["silence"].add((u, w))
    for base in ("during", "follow", "silence"):
        edges[f"rev_{base}"] = {(w, u) for u, w in edges[base]}
    edges["voice_cand"] = voice_cand
    edges["chord_cand"] = chord_cand
    return edges


def as_sets(graph: dict[str, np.ndarray]) -> dict[str, set[tuple[int, int]]]:
    names = [f"edges_{r}" for r in schema.RELATIONS] + ["voice_cand", "chord_cand"]
    return {name.removeprefix("edges_"): set(map(tuple, graph[name].T.tolist())) for name in names}


def run_ours(table: ScoreTable, silence: str) -> dict[str, np.ndarray]:
    return graph_from_table(table, silence)


def load_tables(corpus: str, limit: int) -> list[tuple[str, ScoreTable]]:
    if corpus == "default":
        sources = [(p, e.part, e.path) for p, e in default_corpus()]
    else:
        sources = [(p, None, p.relative_to(corpus).as_posix()) for p in find_scores(corpus)]
    if limit:
        sources = sources[:limit]
    tables = []
    for path, part, name in sources:
        try:
            tables.append((name, load_score_table(path, part=part)))
        except InputError as exc:
            print(f"  skipped {name}: {exc}")
    return tables


def main() -> int:
    args = parse_args()
    warnings.filterwarnings("ignore")
    print("== environment")
    print(f"python {platform.python_version()}  numpy {np.__version__}  platform {platform.platform()}")
    print(f"CPUs usable: {len(os.sched_getaffinity(0))}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\n== parsing {args.corpus} (not timed)")
    tables = load_tables(args.corpus, args.limit)
    print(f"{len(tables)} pieces, {sum(t.n_notes for _, t in tables)} notes; silence rule {args.silence!r}")

    print("\n== graph construction: features + 7 relations + voice/chord candidates")
    print(f"{'piece':45s} {'notes':>6s} {'ours ms':>9s} {'pairwise s':>11s} {'ratio':>8s}  same")
    total_ours = total_pair = 0.0
    total_notes = 0
    for name, table in tables:
        best = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            graph = run_ours(table, args.silence)
            best = min(best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        reference = pairwise_graph(table, args.silence)
        pair = time.perf_counter() - t0
        ours = as_sets(graph)
        differ = [k for k in reference if reference[k] != ours[k]]
        if differ:
            print(f"{name}: edge sets differ for {differ}", file=sys.stderr)
            return 1
        total_ours += best
        total_pair += pair
        total_notes += table.n_notes
        print(f"{name[:45]:45s} {table.n_notes:6d} {best * 1e3:9.2f} {pair:11.2f} {pair / best:7.0f}x  yes")
    print(
        f"\ntotal: {total_notes} notes; ours {total_ours:.3f} s ({total_notes / total_ours:,.0f} notes/s), "
        f"pairwise {total_pair:.1f} s ({total_notes / total_pair:,.0f} notes/s)"
    )
    print(f"ratio pairwise/ours (wall time): {total_pair / total_ours:.0f}x; identical edge sets: yes")
    print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
