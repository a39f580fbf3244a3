"""The distributed context of a train_gnn run: rank, world size and device under ``torchrun``.

Started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``) with more than one
process, :func:`process_group` initialises ``torch.distributed`` — NCCL with one GPU per process
(``cuda:LOCAL_RANK``) when training on CUDA, gloo on the CPU — and tears it down at the end; started
any other way it yields the single-process context and touches nothing. Training then wraps the model
in :class:`torch.nn.parallel.DistributedDataParallel` (PyTorch DDP, Li et al., VLDB 2020: gradients
averaged over the ranks by all-reduce after every backward pass).

Sharding (:func:`shard_steps`): every rank draws the same epoch plan of windows (same seed), and a
:class:`~torch.utils.data.DistributedSampler` (no shuffle of its own: the plan is already shuffled,
anew every epoch, by the seeded generator the single process uses) deals plan position ``p`` to rank
``p mod world``. A rank's step ``s`` takes its positions ``k`` in ``[s·b, (s+1)·b)`` with ``b =
batch_windows / world``, i.e. plan positions ``[s·B, (s+1)·B)`` over all ranks: the global batch of
step ``s`` is exactly the single process's batch ``s``. The sampler pads the plan to a multiple of the
world size with repeated windows; a padded position is never trained on, except that a rank whose
whole share of the last batch is padding still runs one (repeated) window with weight 0, so that every
rank takes part in every gradient all-reduce (DDP hangs otherwise).

``OVERSEER_TORCHRUN`` (:func:`torchrun_command`) lets ``dvc repro`` start the stage under torchrun
without changing ``dvc.yaml``: its value is torchrun's own arguments (``--standalone
--nproc_per_node 4``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import distributed as dist
from torch.utils.data import DistributedSampler

from overseer.errors import InputError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TORCHRUN_ENV = "OVERSEER_TORCHRUN"


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, its ``device``, the backend (None: alone)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """More than one process: gradients, counts and decisions go through the process group."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that validates, reports, logs and writes."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (unchanged when alone)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (any picklable object; itself when alone)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (its rank variables are set)."""
    return all(v in os.environ for v in TORCHRUN_VARS)


def env_rank() -> int:
    """This process's global rank under torchrun; 0 otherwise."""
    return int(os.environ.get("RANK", "0")) if under_torchrun() else 0


def is_main_process() -> bool:
    """Rank 0, or a process not started by torchrun: the one that logs runs and writes outputs."""
    return env_rank() == 0


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[DistContext]:
    """The run's :class:`DistContext`; under torchrun with ``WORLD_SIZE`` > 1 the process group is
    initialised (NCCL on ``cuda:LOCAL_RANK`` when ``device`` is CUDA, gloo on the CPU) and destroyed on
    exit — unless the caller had initialised it already, in which case it is left as it was."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if under_torchrun() else 1
    if world <= 1:
        yield DistContext(device=device)
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    try:
        yield DistContext(device, rank, world, local_rank, dist.get_backend())
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def per_rank_batch(batch_windows: int, world_size: int) -> int:
    """Windows per rank and step so that the global batch is ``batch_windows``; it must divide."""
    if batch_windows % world_size:
        lower = batch_windows - batch_windows % world_size
        upper = lower + world_size
        raise InputError(
            f"train_gnn.batch_windows is {batch_windows}, which {world_size} processes cannot share evenly: "
            f"the global batch must be a multiple of the number of processes (e.g. {lower or upper} or {upper})"
        )
    return batch_windows // world_size


def check_windows(n_windows: int, world_size: int, window: int) -> None:
    """More processes than windows per epoch would leave a process with nothing to train on."""
    if n_windows < world_size:
        raise InputError(
            f"torchrun started {world_size} processes but an epoch has only {n_windows} windows of "
            f"train_gnn.window = {window} notes: start at most {n_windows} processes or use smaller windows"
        )


def shard_steps(n_windows: int, batch_windows: int, rank: int, world_size: int) -> list[tuple[list[int], bool]]:
    """One rank's steps of an epoch of ``n_windows`` plan positions: (positions, active) per step.

    Every rank gets the same number of steps (the single process's ``ceil(n / batch_windows)``), and
    over the ranks step ``s`` covers plan positions ``[s·B, (s+1)·B)`` once each (module doc). An
    inactive step (``active`` False) holds one padding position, to be run with weight 0.
    """
    per_rank = per_rank_batch(batch_windows, world_size)
    sampler = DistributedSampler(range(n_windows), num_replicas=world_size, rank=rank, shuffle=False)
    positions = list(sampler)  # rank, rank + world, ... then the padding (repeats of the first positions)
    real = len(range(rank, n_windows, world_size))
    steps = []
    for start in range(0, len(positions), per_rank):
        chunk = positions[start : start + per_rank]
        n_real = max(0, min(len(chunk), real - start))
        steps.append((chunk[:n_real], True) if n_real else (chunk[:1], False))
    return steps  # ceil(ceil(n / world) / per_rank) == ceil(n / batch_windows) steps


def torchrun_command(script: str | os.PathLike, argv: Sequence[str] = ()) -> list[str] | None:
    """``python -m torch.distributed.run $OVERSEER_TORCHRUN script argv…`` when ``OVERSEER_TORCHRUN`` is set
    and this process is not a torchrun worker already; None otherwise (run as usual, one process)."""
    extra = os.environ.get(TORCHRUN_ENV, "").strip()
    if not extra or under_torchrun():
        return None
    return [sys.executable, "-m", "torch.distributed.run", *shlex.split(extra), os.fspath(script), *argv]
