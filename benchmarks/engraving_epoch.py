"""EngravingGNN training epoch time: the straightforward training step ("before") vs. ours ("after").

What is compared, and why
-------------------------
An epoch over the DCML training corpus (~550k notes) took 4.5-14 minutes on two CPU cores; the
paper trains 100 epochs (§2.5). Two thirds of a step went to the GRU branch (§2.3), most of it to
autograd's backward through ``nn.GRU`` (about 15 graph nodes per time step, per layer and per
direction), and a tenth to dropout masks (``bernoulli_``). Variants, all on the same windows:

* ``before`` — autograd through ``nn.GRU``, ``nn.Dropout``, float32 (the code before this change);
* ``after-fp32`` — the hand-written GRU backward (``model._RecurrenceGRU``) and the fast dropout
  mask (``model.Dropout``), float32;
* ``after-bf16`` — the same under ``torch.autocast("cpu", bfloat16)`` (``precision: bf16``);
* ``after-auto`` — ``precision: auto`` as resolved on this machine (``engraving.precision``).

For each variant: training epochs through ``train_gnn`` (hidden 256, 3 + 3 layers, W 300, 4 windows
per batch: params.yaml), seconds per epoch, notes/s and the epoch time extrapolated to
``--corpus-notes`` notes; then a breakdown of one step over ``--batches`` batches, each part timed
alone forward + backward: data (sampling + collation), GRU branch, graph convolutions, heads + loss,
optimizer. ``--parity-epochs N`` trains each variant N epochs with the validation split and prints
the validation loss and accuracies side by side (mixed precision and the new random streams change
results bit-wise, not in expectation).

Data: ``--prepared`` (an ingest@engraving folder: train/ and validation/ ``*.npz``) when it exists,
else ``--pieces`` fake pieces of ``--notes`` notes (``tests/unit/engraving_fakes.py``).

Run from the repository root:  .venv/bin/python benchmarks/engraving_epoch.py [--prepared DIR] [--parity-epochs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "unit"))

VARIANTS = {  # name: (GRU recurrence, fast dropout mask, precision)
    "before": ("reference", False, "fp32"),
    "after-fp32": ("fast", True, "fp32"),
    "after-bf16": ("fast", True, "bf16"),
    "after-auto": ("fast", True, "auto"),  # bf16 with AMX, else fp32
}
METRICS = ("val_loss", "val_acc_staff", "val_acc_duration", "val_f1_voice", "val_f1_chord")  # + every other val_acc_*


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", type=Path, default=REPO / "data" / "prepared" / "engraving")
    p.add_argument("--pieces", type=int, default=6, help="fake pieces when --prepared does not exist")
    p.add_argument("--notes", type=int, default=2000, help="notes per fake piece")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--variants", default="before,after-fp32,after-bf16,after-auto")
    p.add_argument("--batches", type=int, default=8, help="batches timed in the per-part breakdown")
    p.add_argument("--parity-epochs", type=int, default=0)
    p.add_argument("--parity-only", action="store_true", help="skip the timing, run the parity check only")
    p.add_argument("--corpus-notes", type=int, default=375_557, help="notes to extrapolate to (DCML train split)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_data(args: argparse.Namespace) -> tuple[list[dict], list[dict], str]:
    if (args.prepared / "train").is_dir():
        from overseer.engraving.schema import load_split

        _, train = load_split(args.prepared, "train")
        val = load_split(args.prepared, "validation")[1] if (args.prepared / "validation").is_dir() else []
        return train, val, f"prepared pieces from {args.prepared}"
    from engraving_fakes import fake_piece

    pieces = [fake_piece(args.notes, seed=args.seed + i) for i in range(args.pieces + 2)]
    return pieces[:-2], pieces[-2:], f"{args.pieces} fake pieces of {args.notes} notes"


def use_variant(name: str) -> str:
    """Set the model's switches for ``name``; return its precision key."""
    from overseer.engraving.model import Dropout, SequenceGRU

    recurrence, fast_mask, precision = VARIANTS[name]
    SequenceGRU.recurrence, Dropout.fast_mask = recurrence, fast_mask
    return precision


def cfg(args: argparse.Namespace, precision: str, epochs: int) -> dict:
    return {
        "precision": precision,
        "seed": args.seed,
        "epochs": epochs,
        "patience": 0,
        "progress": False,
        "threads": args.threads,
    }


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def breakdown(args: argparse.Namespace, train: list[dict], precision: str) -> dict[str, float]:
    """Seconds per batch of each part of a training step, each timed alone (forward + backward)."""
    import numpy as np
    import torch

    from overseer.engraving.dataset import INPUT_EDGE_TYPES, NOTE, iterate_batches, piece_to_data
    from overseer.engraving.model import EngravingGNN, ModelConfig
    from overseer.engraving.precision import resolve_precision
    from overseer.engraving.train import task_losses, total_loss

    torch.manual_seed(args.seed)
    amp = resolve_precision(precision, "cpu")
    graphs = [piece_to_data(p) for p in train]
    model = EngravingGNN(ModelConfig()).train()
    enc, opt = model.encoder, torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(args.seed)
    batches: list = []
    t_data = timed(lambda: batches.extend(iterate_batches(graphs, 300, 4, rng)))  # one epoch's batches
    t_data /= max(len(batches), 1)
    batches = batches[: args.batches + 1]
    parts = dict.fromkeys(("data", "GRU branch", "graph convs", "heads + loss", "optimizer", "full step"), 0.0)
    parts["data"] = t_data * len(batches[1:])  # per batch below, as the other parts

    def gru(b: object) -> None:
        with amp.autocast():
            y = enc.sequence(b[NOTE].x, b[NOTE].batch)
        y.float().square().mean().backward()

    def convs(b: object) -> None:
        with amp.autocast():
            h = b[NOTE].x
            ei = {et: b[et].edge_index for et in INPUT_EDGE_TYPES if et in b.edge_types}
            for conv, norm in zip(enc.convs, enc.norms, strict=True):
                h = norm(enc.dropout(torch.relu(conv(h, ei))))
        h.float().square().mean().backward()

    def heads(b: object) -> None:
        h = torch.randn(b[NOTE].num_nodes, model.cfg.hidden, requires_grad=True)
        with amp.autocast():
            loss = total_loss(task_losses(model.decode(h, b), b))
        loss.backward()

    def full(b: object) -> None:
        opt.zero_grad(set_to_none=True)
        with amp.autocast():
            loss = total_loss(task_losses(model(b), b))
        loss.backward()
        parts["optimizer"] += timed(opt.step)

    full(batches[0])  # warm-up
    parts["optimizer"] = 0.0
    for b in batches[1:]:
        parts["GRU branch"] += timed(lambda b=b: gru(b))
        parts["graph convs"] += timed(lambda b=b: convs(b))
        parts["heads + loss"] += timed(lambda b=b: heads(b))
        parts["full step"] += timed(lambda b=b: full(b))
    n = max(len(batches) - 1, 1)
    return {k: v / n for k, v in parts.items()}


def run_variant(args: argparse.Namespace, name: str, train: list[dict]) -> dict:
    from overseer.engraving.precision import resolve_precision
    from overseer.engraving.train import train_gnn

    precision = use_variant(name)
    res = train_gnn(train, [], cfg(args, precision, args.epochs), device="cpu")
    hist = res.history
    seconds = float(hist["epoch_seconds"].mean())
    nps = float((hist["notes_per_s"] * hist["epoch_seconds"]).sum() / hist["epoch_seconds"].sum())
    return {
        "name": name,
        "resolved": resolve_precision(precision, "cpu").name,
        "epoch_s": seconds,
        "notes_per_s": nps,
        "corpus_min": args.corpus_notes / nps / 60,
        "loss": float(hist["train_loss"].iloc[-1]),
        "parts": breakdown(args, train, precision),
    }


def main() -> None:
    args = parse_args()
    import torch

    from overseer.engraving.precision import cpu_has_amx, resolve_precision

    torch.set_num_threads(args.threads)
    train, val, what = load_data(args)
    names = args.variants.split(",")
    print("== environment")
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"python {platform.python_version()}  torch {torch.__version__}  CPU capability {capability}")
    auto = resolve_precision("auto", "cpu").name
    print(f"AMX: {cpu_has_amx()}  precision auto -> {auto} on the CPU")
    cpus, load = len(os.sched_getaffinity(0)), os.getloadavg()[0]
    print(f"CPUs usable: {cpus}  torch threads {args.threads}  load average {load:.2f}")
    n_train = sum(len(p["x"]) for p in train)
    print(f"data: {what}: {len(train)} training pieces, {n_train} notes; {len(val)} validation pieces")
    print()
    if not args.parity_only:
        timing(args, names, train)
    if args.parity_epochs and val:
        parity(args, names, train, val)
    print(f"\nload average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def timing(args: argparse.Namespace, names: list[str], train: list[dict]) -> None:
    """Epoch time and notes/s of each variant, then the per-part breakdown, side by side."""
    rows = []
    for name in names:
        rows.append(run_variant(args, name, train))
        print(f"  done {name}: {rows[-1]['notes_per_s']:.0f} notes/s (load {os.getloadavg()[0]:.2f})", flush=True)
    base = rows[0]
    print(f"\n== training epoch ({args.epochs} epoch(s) each; hidden 256, W 300 x 4 windows)")
    print(f"{'variant':<12}{'precision':>10}{'s/epoch':>9}{'notes/s':>9}{'corpus min':>11}{'x before':>9}{'loss':>8}")
    for r in rows:
        print(
            f"{r['name']:<12}{r['resolved']:>10}{r['epoch_s']:>9.1f}{r['notes_per_s']:>9.0f}"
            f"{r['corpus_min']:>11.2f}{r['notes_per_s'] / base['notes_per_s']:>9.2f}{r['loss']:>8.3f}"
        )
    print(f"(corpus min: one epoch over {args.corpus_notes} notes at the measured notes/s)")
    print(f"\n== one training step, ms per batch (each part alone, forward + backward; {args.batches} batches)")
    parts = list(base["parts"])
    print(f"{'part':<14}" + "".join(f"{r['name']:>18}" for r in rows))
    for part in parts:
        cells = []
        for r in rows:
            total = max(sum(v for k, v in r["parts"].items() if k != "full step"), 1e-12)
            share = "" if part == "full step" else f" ({100 * r['parts'][part] / total:3.0f}%)"
            cells.append(f"{1e3 * r['parts'][part]:>11.1f}{share:>7}")
        print(f"{part:<14}" + "".join(cells))


def parity(args: argparse.Namespace, names: list[str], train: list[dict], val: list[dict]) -> None:
    """Validation loss and accuracies per epoch of each variant, side by side."""
    from overseer.engraving.train import train_gnn

    print(f"\n== parity: {args.parity_epochs} epochs each, same windows, validation split ({len(val)} pieces)")
    hists = {}
    for name in names:
        precision = use_variant(name)
        c = cfg(args, precision, args.parity_epochs)
        hists[name] = train_gnn(train, val, c, device="cpu").history
    print(f"{'epoch':<6}{'metric':<18}" + "".join(f"{n:>12}" for n in names))
    first = hists[names[0]]
    metrics = [*METRICS, *sorted(c for c in first if c.startswith("val_acc_") and c not in METRICS)]
    for e in range(args.parity_epochs):
        for m in metrics:
            print(f"{e + 1:<6}{m:<18}" + "".join(f"{float(hists[n][m].iloc[e]):>12.4f}" for n in names))


if __name__ == "__main__":
    main()
