"""EngravingGNN training throughput and memory: GraphMuse windows vs. whole-piece full-graph training.

What is compared, and why
-------------------------
``train_gnn`` trains on batches of windows of W consecutive notes (GraphMuse sampling, the paper's
§2.3); the obvious alternative trains on each whole piece as one graph (and one GRU sequence) per
step. The GRU branch runs one time step after the other, so its cost per step grows with the
sequence length and shrinks per note with the number of sequences processed side by side; the
graph branch and the heads cost about the same per note either way. This script trains the same
model (``params``-like defaults: hidden 256, 3 hybrid layers, 3 GRU layers) for ``--epochs`` epochs
on the same pieces with several settings and prints, per setting: training notes/second (all
epochs' training notes over their training seconds, from ``train_gnn``'s history), seconds per
epoch, the peak resident memory of the process (``ru_maxrss``) and its growth over the memory held
before training, then the ratio of each setting's notes/s to full-graph training's. Each setting
runs in its own subprocess, so each peak is its own. A whole-piece prediction pass (eval mode,
no_grad: what validation and ``predict_piece`` do) is timed too.

Data: the prepared pieces (``*.npz``) in ``--prepared`` when that folder exists, else ``--pieces``
random contract-valid fake pieces of ``--notes`` notes (``tests/unit/engraving_fakes.py``: a melody
over block chords, 4/4). No validation pieces; early stopping off.

Run from the repository root:  .venv/bin/python benchmarks/engraving_training.py [--pieces 15 --notes 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "unit"))

FULL = 10**9  # a window longer than any piece: one whole piece per window


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", type=Path, default=REPO / "data" / "prepared" / "engraving")
    p.add_argument("--pieces", type=int, default=15, help="fake pieces when --prepared does not exist")
    p.add_argument("--notes", type=int, default=2000, help="notes per fake piece")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--gru-layers", type=int, default=3)
    p.add_argument(
        "--settings",
        default="300x4,300x16,500x8,full",
        help="comma-separated WINDOWxBATCH_WINDOWS settings, 'full' = one whole piece per step",
    )
    p.add_argument("--threads", default="1", help="comma-separated torch thread counts to run each setting with")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def load_pieces(args: argparse.Namespace) -> tuple[list[dict], str]:
    if args.prepared.is_dir() and sorted(args.prepared.rglob("*.npz")):
        from overseer.engraving.schema import load_piece

        files = sorted(args.prepared.rglob("*.npz"))
        return [load_piece(f) for f in files], f"{len(files)} prepared pieces from {args.prepared}"
    from engraving_fakes import fake_piece

    pieces = [fake_piece(args.notes, seed=args.seed + i) for i in range(args.pieces)]
    return pieces, f"{args.pieces} fake pieces of {args.notes} notes"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args: argparse.Namespace) -> None:
    """One setting in this process; prints one JSON line."""
    import torch

    from overseer.engraving.dataset import piece_to_data
    from overseer.engraving.train import train_gnn

    setting, threads = args.child.split("@")
    window, batch = (FULL, 1) if setting == "full" else map(int, setting.split("x"))
    pieces, _ = load_pieces(args)
    torch.set_num_threads(int(threads))
    before = rss_mib()
    cfg = {
        "seed": args.seed,
        "epochs": args.epochs,
        "window": window,
        "batch_windows": batch,
        "patience": 0,
        "progress": False,
        "threads": int(threads),
        "hidden": args.hidden,
        "layers": args.layers,
        "gru_layers": args.gru_layers,
    }
    t0 = time.perf_counter()
    result = train_gnn(pieces, [], cfg, device="cpu")
    wall = time.perf_counter() - t0
    peak_train = rss_mib()
    graphs = [piece_to_data(p) for p in pieces]
    t1 = time.perf_counter()
    with torch.no_grad():
        for g in graphs:
            result.model(g)
    predict_s = time.perf_counter() - t1
    hist = result.history
    print(
        json.dumps(
            {
                "setting": setting,
                "threads": int(threads),
                "notes_per_s": float((hist["notes_per_s"] * hist["epoch_seconds"]).sum() / hist["epoch_seconds"].sum()),
                "epoch_s": float(hist["epoch_seconds"].mean()),
                "final_loss": float(hist["train_loss"].iloc[-1]),
                "wall_s": wall,
                "rss_before_mib": before,
                "rss_peak_mib": peak_train,
                "predict_notes_per_s": sum(g["note"].num_nodes for g in graphs) / predict_s,
            }
        )
    )


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    import torch
    import torch_geometric

    pieces, what = load_pieces(args)
    sizes = [len(p["x"]) for p in pieces]
    cands = sum(p["voice_cand"].shape[1] for p in pieces)
    print("== environment")
    pyg = torch_geometric.__version__
    print(f"python {platform.python_version()}  torch {torch.__version__}  torch_geometric {pyg}")
    print(f"CPUs usable: {len(os.sched_getaffinity(0))}  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"CUDA visible: {torch.cuda.is_available()} (this benchmark trains on the CPU)")
    print(f"data: {what}: {sum(sizes)} notes (min {min(sizes)}, max {max(sizes)}), {cands} voice candidates")
    print(f"model: hidden {args.hidden}, layers {args.layers}, gru_layers {args.gru_layers}; epochs {args.epochs}")
    print()
    rows = []
    forwarded = [a for a in sys.argv[1:] if not a.startswith("--child")]
    for threads in args.threads.split(","):
        for setting in args.settings.split(","):
            cmd = [sys.executable, __file__, *forwarded, "--child", f"{setting}@{threads}"]
            with tempfile.TemporaryDirectory() as tmp:
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, check=False)
            if proc.returncode:
                print(f"{setting}@{threads} failed:\n{proc.stderr[-2000:]}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"  done {setting:>8} threads {threads}: {row['notes_per_s']:.0f} notes/s "
                f"(load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    print()
    print("== training throughput and memory (CPU)")
    head = f"{'setting (W x windows/batch)':<28}{'threads':>8}{'notes/s':>10}{'s/epoch':>9}"
    head += f"{'peak RSS MiB':>14}{'+ training':>12}{'final loss':>12}{'predict notes/s':>17}"
    print(head)
    for r in rows:
        name = "full graph (1 piece/step)" if r["setting"] == "full" else r["setting"]
        print(
            f"{name:<28}{r['threads']:>8}{r['notes_per_s']:>10.0f}{r['epoch_s']:>9.1f}{r['rss_peak_mib']:>14.0f}"
            f"{r['rss_peak_mib'] - r['rss_before_mib']:>12.0f}{r['final_loss']:>12.3f}{r['predict_notes_per_s']:>17.0f}"
        )
    print()
    for threads in sorted({r["threads"] for r in rows}):
        full = [r for r in rows if r["threads"] == threads and r["setting"] == "full"]
        if not full:
            continue
        for r in rows:
            if r["threads"] == threads and r["setting"] != "full":
                ratio = r["notes_per_s"] / full[0]["notes_per_s"]
                full_mem = full[0]["rss_peak_mib"] - full[0]["rss_before_mib"]
                mem = (r["rss_peak_mib"] - r["rss_before_mib"]) / max(full_mem, 1)
                print(
                    f"ratio windows {r['setting']} / full graph, {threads} thread(s): "
                    f"{ratio:.2f}x notes/s, {mem:.2f}x training memory"
                )
    print(f"\nload average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
