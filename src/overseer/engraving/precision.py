"""Training precision of EngravingGNN: which float type the forward pass computes in, per device.

``precision`` (the ``train_gnn.precision`` param) is one of :data:`PRECISIONS`:

* ``fp32`` — plain float32 everywhere (no autocast);
* ``bf16`` — ``torch.autocast`` with bfloat16: matrix products (``Linear``, the SAGE projections) run
  in bf16, reductions, norms, losses and the optimiser stay float32 (autocast's own op lists); on
  CUDA the same with the GPU's bf16;
* ``auto`` — on CUDA, bf16 where the GPU supports it, else fp16 with a gradient scaler; on the CPU,
  fp32, by measurement (``benchmarks/engraving_epoch.py``, hidden 256, one epoch over the 222 DCML
  training pieces, 375,557 notes, 2 threads, quiet cores): on a Xeon with AMX bf16 tiles
  (:func:`cpu_has_amx`) an epoch took 114.1 s in bf16 and 109.3 s in fp32 (0.96x); on an EPYC with
  AVX-512 BF16 it was 1.00-1.04x. A lone 1200 x 256 x 256 product is 4.6x faster in bf16 and the
  graph convolutions gain ~1.3-1.9x, but the float32 GRU, the heads and the casts eat it.
  ``precision: bf16`` forces it; the validation losses stayed within run-to-run noise of fp32.

The GRU of the sequence branch is not on CPU autocast's bf16 list, so it runs in float32 whatever
the choice; on CUDA autocast runs cuDNN's GRU in the lower precision. Mixed precision changes
results bit-wise, not in expectation (parity check: ``benchmarks/engraving_epoch.py --parity-epochs 3``).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    return set(cpuinfo.read_text(errors="replace").split()) if cpuinfo.exists() else set()


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX bf16 tiles that torch can use (oneDNN's fastest bf16 matmul path)."""
    check = getattr(torch._C._cpu, "_is_amx_tile_supported", None)
    if check is not None:
        return bool(check())
    return {"amx_bf16", "amx_tile"} <= _cpu_flags()


@dataclass(frozen=True)
class Precision:
    """The resolved choice for one device: ``dtype`` None means float32 without autocast."""

    device: torch.device
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The context to run forward pass and loss in (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for CUDA fp16 (bf16 has float32's range and needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)


def resolve_precision(precision: str, device: torch.device | str) -> Precision:
    """The :class:`Precision` of ``precision`` (one of :data:`PRECISIONS`) on ``device`` (rules: module doc)."""
    dev = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"train_gnn.precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32" or dev.type not in ("cpu", "cuda"):
        return Precision(dev, None)
    if precision == "bf16":
        return Precision(dev, torch.bfloat16)
    if dev.type == "cuda":
        return Precision(dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return Precision(dev, None)  # the CPU: fp32 (module doc: bf16 measured no faster, even with AMX)
