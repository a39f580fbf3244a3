"""train_gnn: end-to-end multi-task training of EngravingGNN on windows of prepared pieces (paper §2.5).

The loss is the unweighted sum of every task's loss (§2.2, §2.5): cross-entropy for each node task
of ``schema.NODE_TASKS`` and binary cross-entropy for the voice and chord candidates, each averaged
over that task's labelled items in the batch (labels -1 are masked out; a task with no labelled item
adds exactly 0). Adam, lr 1e-3, weight decay 5e-4 (§2.5, the defaults of ``DEFAULTS``).

An epoch draws GraphMuse windows of ``window`` consecutive notes (``dataset.sample_windows``) and
trains on batches of ``batch_windows`` of them; with ``transpose.enabled`` each training window is
transposed on the fly (:class:`overseer.engraving.transpose.Transposer`: with probability
``transpose.probability`` by a representable shift within ±``transpose.max_fifths`` fifths).
Validation pieces are evaluated whole (the full graph, the GRU over the whole piece: what
prediction does), in eval mode, after every epoch; early stopping watches the validation loss (the
training loss when there is no validation piece) and the best epoch's weights are restored at the end.

Seeding (``seed``) covers Python, NumPy, torch and the window sampling: on the CPU two runs give
identical histories; CUDA's scatter-add is not deterministic, so GPU runs agree only closely.
``device=None`` trains on CUDA when available. On the CPU, ``threads`` (default 1) sets torch's
thread count for the run: on two shared cores two OpenMP threads made training 10-20x *slower*
(workers spin waiting for a busy core; measured with ``benchmarks/engraving_training.py``).
``threads`` and ``progress`` (the epoch bar) are ``RUN_OPTIONS``: how a run goes, never what it
learns, so they stay out of the resolved cfg that the model folder records (the stage takes them
from :mod:`overseer.settings`, not from params).

Started by ``torchrun`` with several processes, training is data-parallel (PyTorch
DistributedDataParallel; process group, sharding and helpers in
:mod:`overseer.engraving.distributed`): every step's global batch is the single process's batch,
dealt over the ranks, and each task's loss is averaged over its labelled items of the whole global
batch, so the gradient — and without dropout the whole history — matches a single process up to
floating-point summation order. ``batch_windows`` must be a multiple of the number of processes.
Rank 0 alone validates, calls ``on_epoch`` and decides to stop; every rank follows its numbers.
Dropout masks (and transposition draws) are drawn per rank, so with dropout the two runs agree in
distribution only.

``on_epoch(epoch, metrics)`` is called after every epoch with the flat metric dict (see
:func:`train_gnn`); the stage logs it to MLflow, an Optuna objective reports it. Raising
:class:`StopTraining` from it ends training normally (best weights restored, ``stopped =
"callback"``); any other exception (``optuna.TrialPruned``, …) propagates out of ``train_gnn``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as nnf
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import HeteroData
from tqdm import tqdm

from overseer.engraving import schema
from overseer.engraving.dataset import (
    CANDIDATE_EDGE_TYPES,
    NOTE,
    collate,
    iterate_batches,
    piece_to_data,
    sample_windows,
    window,
)
from overseer.engraving.distributed import DistContext, check_windows, per_rank_batch, process_group, shard_steps
from overseer.engraving.model import EngravingGNN, ModelConfig
from overseer.engraving.precision import resolve_precision
from overseer.engraving.scoring import labels_from_predictions, score_pieces
from overseer.engraving.transpose import Transposer
from overseer.io import atomic_file, split_run_time, write_json

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = (*schema.NODE_TASKS, *schema.EDGE_TASKS)
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "epochs": 100,  # §2.5
    "lr": 1e-3,  # §2.5
    "weight_decay": 5e-4,  # §2.5
    "window": 300,  # notes per GraphMuse window
    "batch_windows": 4,  # windows per batch (more steps per epoch on a small corpus; 16 = 1.4x notes/s)
    "patience": 20,  # epochs without a better monitored loss before stopping; 0 = never stop early
    "min_delta": 0.0,  # an improvement smaller than this does not count
    "pos_weight_voice": 1.0,  # BCE positive-class weight of the voice candidates
    "pos_weight_chord": 1.0,
    "grad_clip": 0.0,  # max gradient norm; 0 = off
    "precision": "auto",  # training autocast (precision.resolve_precision): auto, fp32 or bf16
    # transposition augmentation of the training windows (transpose.Transposer); off: as before
    "transpose": {"enabled": False, "max_fifths": 6, "probability": 0.5},
    **ModelConfig().to_dict(),
}
# how a run goes, not what it learns: accepted in cfg, kept out of TrainResult.cfg (overseer.settings)
RUN_OPTIONS: dict[str, Any] = {
    "threads": 1,  # torch CPU threads during training (restored after); 0 = leave torch's setting
    "progress": True,  # tqdm bar over epochs
}
WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"


class StopTraining(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raise from ``on_epoch`` to end training early; the best weights so far are kept."""


@dataclass
class TrainResult:
    model: EngravingGNN  # best weights restored, eval mode
    model_config: ModelConfig
    cfg: dict[str, Any]  # the resolved training cfg (DEFAULTS updated by the given cfg; no RUN_OPTIONS)
    history: pd.DataFrame  # one row per epoch: epoch and every metric passed to on_epoch
    best_epoch: int
    best_loss: float  # the monitored loss (validation, else training) at best_epoch
    stopped: str  # "epochs", "early_stopping" or "callback"
    n_train: int
    n_val: int
    n_train_notes: int
    n_val_notes: int
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The best epoch's validation numbers and the run's size and time."""
        best = self.history.loc[self.history["epoch"] == self.best_epoch].iloc[0].to_dict() if len(self.history) else {}
        return {
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_train_notes": self.n_train_notes,
            "n_val_notes": self.n_val_notes,
            "epochs_run": len(self.history),
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss,
            "stopped": self.stopped,
            **{k: float(v) for k, v in best.items() if k.startswith("val_")},
            **{f"seconds_{k}": round(v, 2) for k, v in self.timings.items()},
        }


def resolve_cfg(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS updated by ``cfg``; ``RUN_OPTIONS`` are left out (see :func:`run_options`), other
    unknown keys are ignored with a warning (typos show in the log)."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS) - set(RUN_OPTIONS))
    if unknown:
        log.warning("train_gnn ignores unknown cfg keys %s", unknown)
    out = {**DEFAULTS, **{k: v for k, v in cfg.items() if k in DEFAULTS}}
    for key, default in DEFAULTS.items():  # a sub-mapping (transpose) is completed key by key
        if isinstance(default, Mapping):
            out[key] = {**default, **dict(cfg.get(key) or {})}
    return out


def run_options(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """RUN_OPTIONS updated by the ``threads`` and ``progress`` of ``cfg``."""
    return {**RUN_OPTIONS, **{k: v for k, v in (cfg or {}).items() if k in RUN_OPTIONS}}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU thread count set to ``threads`` inside the block (0: unchanged), restored after."""
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_augment(c: Mapping[str, Any], rank: int = 0) -> Transposer | None:
    """The window augmentation of a resolved cfg: a :class:`Transposer` when ``transpose.enabled``,
    seeded from ``seed`` apart from the window sampling (same windows with it on or off); each
    process of a distributed run (``rank`` > 0) draws its own shifts."""
    t = c["transpose"]
    if not t["enabled"]:
        return None
    seed = [int(c["seed"]), 1, *([rank] if rank else [])]
    return Transposer(int(t["max_fifths"]), float(t["probability"]), seed=seed)


def pick_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def task_losses(
    out: Mapping[str, torch.Tensor], data: HeteroData, pos_weight: Mapping[str, float] | None = None
) -> dict[str, tuple[torch.Tensor, int]]:
    """Per task (summed loss over labelled items, number of labelled items); labels -1 are masked.

    Node tasks: cross-entropy of ``logits_<task>`` against ``y_<task>``; edge tasks: binary
    cross-entropy (with ``pos_weight[task]``) of ``logit_<task>`` against the candidates' labels.
    """
    pos_weight = pos_weight or {}
    losses: dict[str, tuple[torch.Tensor, int]] = {}
    store = data[NOTE]
    for task in schema.NODE_TASKS:
        y = store[f"y_{task}"]
        count = int((y >= 0).sum())
        loss = nnf.cross_entropy(out[f"logits_{task}"], y, ignore_index=-1, reduction="sum") if count else None
        losses[task] = (loss if loss is not None else out[f"logits_{task}"].sum() * 0.0, count)
    for task, et in CANDIDATE_EDGE_TYPES.items():
        y = data[et].edge_label
        known = y >= 0
        count = int(known.sum())
        logit = out[f"logit_{task}"]
        if count:
            weight = torch.tensor(float(pos_weight.get(task, 1.0)), device=logit.device)
            loss = nnf.binary_cross_entropy_with_logits(logit[known], y[known], pos_weight=weight, reduction="sum")
        else:
            loss = logit.sum() * 0.0
        losses[task] = (loss, count)
    return losses


def total_loss(losses: Mapping[str, tuple[torch.Tensor, int]]) -> torch.Tensor:
    """The unweighted sum over tasks of each task's mean loss (§2.5)."""
    return torch.stack([loss / max(count, 1) for loss, count in losses.values()]).sum()


class _Meter:
    """Accumulates per-task loss sums and counts over batches or pieces."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(TASKS, 0.0)
        self.counts = dict.fromkeys(TASKS, 0)

    def add(self, losses: Mapping[str, tuple[torch.Tensor, int]]) -> None:
        for task, (loss, count) in losses.items():
            self.sums[task] += float(loss.detach())
            self.counts[task] += count

    def reduce(self, ctx: DistContext) -> None:
        """Sums and counts over every process of a distributed run (unchanged when alone)."""
        if not ctx.enabled:
            return
        both = torch.tensor([[self.sums[t], self.counts[t]] for t in TASKS], dtype=torch.float64, device=ctx.device)
        both = ctx.all_reduce_sum(both).cpu().tolist()
        self.sums = {t: s for t, (s, _) in zip(TASKS, both, strict=True)}
        self.counts = {t: round(n) for t, (_, n) in zip(TASKS, both, strict=True)}

    def means(self, prefix: str) -> dict[str, float]:
        per_task = {t: self.sums[t] / self.counts[t] if self.counts[t] else 0.0 for t in TASKS}
        out = {f"{prefix}loss": float(sum(per_task.values()))}
        out.update({f"{prefix}loss_{t}": v for t, v in per_task.items()})
        return out


def graph_outputs(out: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Model outputs as ``predict`` gives them: ``logits_<task>`` and ``p_<kind>`` = sigmoid(logit), numpy."""
    pred = {f"logits_{t}": out[f"logits_{t}"].float().cpu().numpy() for t in schema.NODE_TASKS}
    for kind in schema.EDGE_TASKS:
        pred[f"p_{kind}"] = torch.sigmoid(out[f"logit_{kind}"]).float().cpu().numpy()
    return pred


def graph_truth(data: HeteroData) -> dict[str, np.ndarray]:
    """The scoring side of a graph (``scoring.score_piece``): ``x``, ``y_<task>``, ``<kind>_cand``, ``y_<kind>``."""
    store = data[NOTE]
    truth = {"x": store.x.cpu().numpy()}
    truth.update({f"y_{t}": store[f"y_{t}"].cpu().numpy() for t in schema.NODE_TASKS})
    for kind, et in CANDIDATE_EDGE_TYPES.items():
        truth[f"{kind}_cand"] = data[et].edge_index.cpu().numpy()
        truth[f"y_{kind}"] = data[et].edge_label.cpu().numpy().astype(np.int8)
    return truth


@torch.no_grad()
def evaluate_graphs(
    model: EngravingGNN,
    graphs: Sequence[HeteroData],
    device: torch.device,
    pos_weight: Mapping[str, float] | None = None,
    prefix: str = "val_",
    threshold: float = 0.5,
) -> dict[str, float]:
    """Whole-graph losses and quick metrics in eval mode: per-task loss, accuracy, voice/chord F1.

    The metrics are :mod:`overseer.engraving.scoring`'s, on raw model outputs (before
    post-processing): the outputs become labels with ``scoring.labels_from_predictions`` (argmax;
    a candidate is predicted when sigmoid(logit) >= ``threshold``, as for evaluate@gnn's raw row)
    and are scored with ``scoring.score_pieces``, micro-averaged over ``graphs``. Names:
    ``<prefix>loss``, ``<prefix>loss_<task>``, ``<prefix>acc_<node task>``, ``<prefix>acc_duration``,
    ``<prefix>f1_voice`` (homophonic), ``<prefix>f1_chord`` (NaN when undefined: no true and no
    predicted edge in any graph).
    """
    was_training = model.training
    model.eval()
    meter = _Meter()
    labels, truths = [], []
    for graph in graphs:
        data = graph.to(device)
        out = model(data)
        meter.add(task_losses(out, data, pos_weight))
        truth = graph_truth(data)
        labels.append(labels_from_predictions(graph_outputs(out), truth, threshold))
        truths.append(truth)
    model.train(was_training)
    scores = score_pieces(labels, truths)
    metrics = meter.means(prefix)
    metrics.update({f"{prefix}acc_{t}": scores[f"acc_{t}"] for t in schema.NODE_TASKS})
    metrics[f"{prefix}acc_duration"] = scores["acc_duration"]
    metrics[f"{prefix}f1_voice"] = scores["voice_f1"]
    metrics[f"{prefix}f1_chord"] = scores["chord_f1"]
    return metrics


def train_gnn(
    train_pieces: Sequence[Mapping[str, np.ndarray]],
    val_pieces: Sequence[Mapping[str, np.ndarray]],
    cfg: Mapping[str, Any] | None = None,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train EngravingGNN on prepared pieces (schema arrays); cfg keys and defaults: ``DEFAULTS``, and
    ``RUN_OPTIONS`` (``threads``, ``progress``), which change how the run goes but not its result.

    Per-epoch metrics passed to ``on_epoch(epoch, metrics)`` (epochs count from 1): ``train_loss``
    and ``train_loss_<task>`` (mean over the epoch's labelled items), ``val_loss``,
    ``val_loss_<task>``, ``val_acc_<node task>``, ``val_acc_duration`` (all three duration heads
    right), ``val_f1_voice`` (homophonic), ``val_f1_chord`` (both ``scoring``'s, NaN when undefined),
    ``notes_per_s`` (training notes per second of the epoch's training loop), ``epoch_seconds``,
    ``lr``. Without validation pieces the ``val_*`` keys are absent and early stopping watches
    ``train_loss``.
    """
    c, run = resolve_cfg(cfg), run_options(cfg)
    if not train_pieces:
        raise ValueError("train_gnn needs at least one training piece")
    if int(c["epochs"]) < 1:
        raise ValueError(f"epochs must be at least 1, not {c['epochs']}")
    with torch_threads(int(run["threads"])), process_group(pick_device(device)) as ctx:
        return _train(train_pieces, val_pieces, c, on_epoch, ctx, progress=bool(run["progress"]) and ctx.is_main)


def _data_parallel(
    model: EngravingGNN, ctx: DistContext, graphs: Sequence[HeteroData], c: Mapping[str, Any]
) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when the run has several processes (itself otherwise).

    Checks first that the epoch's windows can be shared (``distributed.check_windows``,
    ``distributed.per_rank_batch``), then reseeds torch per rank so that dropout masks differ between
    ranks (DDP has already broadcast rank 0's initial weights). ``find_unused_parameters`` stays off:
    every head is in every step's graph, even with no labelled item (its loss is ``logits.sum() * 0``).
    """
    if not ctx.enabled:
        return model
    size = int(c["window"])
    n_windows = sum(max(1, math.ceil(g[NOTE].num_nodes / size)) for g in graphs if g[NOTE].num_nodes)
    check_windows(n_windows, ctx.world_size, size)
    per_rank_batch(int(c["batch_windows"]), ctx.world_size)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    net = DistributedDataParallel(model, device_ids=ids)
    torch.manual_seed(int(c["seed"]) + ctx.rank)
    return net


def _epoch_batches(
    graphs: Sequence[HeteroData],
    c: Mapping[str, Any],
    rng: np.random.Generator,
    augment: Callable[[HeteroData], HeteroData] | None,
    ctx: DistContext,
) -> Iterator[tuple[HeteroData, bool]]:
    """This process's training batches of one epoch, each with whether it counts (``active``).

    Alone: ``dataset.iterate_batches``. Distributed: the same epoch plan (``dataset.sample_windows``
    from the same generator), each step's global batch dealt over the ranks by
    ``distributed.shard_steps``; on CUDA the batch is pinned for an asynchronous copy.
    """
    size, per_batch = int(c["window"]), int(c["batch_windows"])
    if not ctx.enabled:
        yield from ((batch, True) for batch in iterate_batches(graphs, size, per_batch, rng, augment))
        return
    plan = sample_windows([g[NOTE].num_nodes for g in graphs], size, rng)
    for positions, active in shard_steps(len(plan), per_batch, ctx.rank, ctx.world_size):
        windows = [window(graphs[plan[p][0]], plan[p][1], size) for p in positions]
        batch = collate(windows if augment is None else [augment(w) for w in windows])
        yield (batch.pin_memory() if ctx.device.type == "cuda" else batch), active


def _step_loss(losses: Mapping[str, tuple[torch.Tensor, int]], active: bool, ctx: DistContext) -> torch.Tensor:
    """The loss to back-propagate: :func:`total_loss`, alone. Distributed, each task's loss sum is
    divided by the task's labelled items over *all* ranks (all-reduced) and multiplied by the world
    size, which DDP's gradient average divides out: the gradient is the single process's on the same
    global batch. An inactive (padding) step weighs 0 and adds no labelled item."""
    if not ctx.enabled:
        return total_loss(losses)
    local = [float(count) if active else 0.0 for _, count in losses.values()]
    counts = ctx.all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=ctx.device)).tolist()
    merged = {task: (loss, int(n)) for (task, (loss, _)), n in zip(losses.items(), counts, strict=True)}
    return total_loss(merged) * (float(ctx.world_size) if active else 0.0)


def _train(
    train_pieces: Sequence[Mapping[str, np.ndarray]],
    val_pieces: Sequence[Mapping[str, np.ndarray]],
    c: dict[str, Any],
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    ctx: DistContext,
    *,
    progress: bool = True,
) -> TrainResult:
    dev = ctx.device
    seed_everything(int(c["seed"]))
    t0 = time.perf_counter()
    train_graphs = [piece_to_data(p) for p in train_pieces]
    val_graphs = [piece_to_data(p) for p in val_pieces]
    t_data = time.perf_counter() - t0

    model_cfg = ModelConfig.from_dict(c)
    model = EngravingGNN(model_cfg).to(dev)
    net = _data_parallel(model, ctx, train_graphs, c)  # the model itself in a single process
    amp = resolve_precision(str(c["precision"]), dev)  # autocast dtype of the training steps
    scaler = amp.grad_scaler()  # enabled only for CUDA fp16
    optimizer = torch.optim.Adam(model.parameters(), lr=float(c["lr"]), weight_decay=float(c["weight_decay"]))
    pos_weight = {"voice": float(c["pos_weight_voice"]), "chord": float(c["pos_weight_chord"])}
    rng = np.random.default_rng(int(c["seed"]))
    augment = make_augment(c, ctx.rank)
    monitor = "val_loss" if val_graphs else "train_loss"
    patience = int(c["patience"])
    best_loss, best_epoch, best_state = float("inf"), 0, None
    history: list[dict[str, float]] = []
    stopped = "epochs"
    t_train = 0.0

    bar = tqdm(range(1, int(c["epochs"]) + 1), desc="train_gnn", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        meter = _Meter()
        notes = 0
        t_epoch = time.perf_counter()
        for batch, active in _epoch_batches(train_graphs, c, rng, augment, ctx):
            batch = batch.to(dev, non_blocking=True)
            with amp.autocast():
                losses = task_losses(net(batch), batch, pos_weight)
                loss = _step_loss(losses, active, ctx)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if float(c["grad_clip"]) > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(c["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            if active:
                meter.add(losses)
                notes += batch[NOTE].num_nodes
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t_epoch
        t_train += seconds
        meter.reduce(ctx)  # all ranks' windows: the global epoch means
        notes = int(ctx.all_reduce_sum(torch.tensor(notes, dtype=torch.int64, device=dev)))
        metrics = {"epoch": float(epoch), **meter.means("train_")}
        metrics["notes_per_s"] = notes / seconds if seconds > 0 else 0.0
        metrics["epoch_seconds"] = seconds
        metrics["lr"] = float(optimizer.param_groups[0]["lr"])
        if val_graphs and ctx.is_main:
            metrics.update(evaluate_graphs(model, val_graphs, dev, pos_weight))
        metrics = ctx.broadcast(metrics)  # rank 0's validation: every rank decides on the same numbers
        history.append(metrics)

        current = metrics[monitor]
        if not np.isfinite(current):
            raise FloatingPointError(f"{monitor} is {current} at epoch {epoch}")
        if current < best_loss - float(c["min_delta"]):
            best_loss, best_epoch = current, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        bar.set_postfix(train=f"{metrics['train_loss']:.3f}", val=f"{metrics.get('val_loss', float('nan')):.3f}")
        callback_stop = False
        try:
            if on_epoch is not None and ctx.is_main:  # rank 0 reports (MLflow, Optuna)
                on_epoch(epoch, {k: v for k, v in metrics.items() if k != "epoch"})
        except StopTraining:
            callback_stop = True
        if ctx.broadcast(callback_stop):  # decided once, on rank 0
            stopped = "callback"
            break
        if patience > 0 and epoch - best_epoch >= patience:
            stopped = "early_stopping"
            break
    bar.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        model_config=model_cfg,
        cfg=c,
        history=pd.DataFrame(history),
        best_epoch=best_epoch,
        best_loss=best_loss,
        stopped=stopped,
        n_train=len(train_graphs),
        n_val=len(val_graphs),
        n_train_notes=sum(g[NOTE].num_nodes for g in train_graphs),
        n_val_notes=sum(g[NOTE].num_nodes for g in val_graphs),
        timings={"data": t_data, "train": t_train, "total": time.perf_counter() - t0},
    )


def save_model(result: TrainResult | EngravingGNN, directory: str | os.PathLike) -> dict[str, Path]:
    """Write ``model.pt`` (state_dict) and ``config.json`` (model config, training cfg, summary), atomically;
    the same weights always give the same ``model.pt`` bytes."""
    out = Path(directory)
    model = result.model if isinstance(result, TrainResult) else result
    meta: dict[str, Any] = {"format": 1, "model": model.cfg.to_dict(), "torch": torch.__version__}
    if isinstance(result, TrainResult):
        meta["train"] = result.cfg
        meta["summary"] = split_run_time(result.summary())[0]  # timings would change the model folder's hash
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_file(out / WEIGHTS_FILE) as tmp, open(tmp, "wb") as f:
        # a file object, not a path: torch names the archive's records after the file written to
        # (here a temporary, random name); for a stream it uses the fixed "archive/". Member times
        # and the serialization id are already fixed (zero date, content checksum): same bytes.
        torch.save(state, f)
    write_json(out / CONFIG_FILE, meta)
    return {"weights": out / WEIGHTS_FILE, "config": out / CONFIG_FILE}


def load_model(directory: str | os.PathLike, device: str | torch.device | None = "cpu") -> EngravingGNN:
    """The model saved by :func:`save_model`, in eval mode on ``device`` (``None``: CUDA if available)."""
    src = Path(directory)
    meta = json.loads((src / CONFIG_FILE).read_text())
    model = EngravingGNN(ModelConfig.from_dict(meta["model"]))
    state = torch.load(src / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(pick_device(device)).eval()
