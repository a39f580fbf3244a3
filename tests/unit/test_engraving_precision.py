"""engraving.precision: the autocast choice per device, and a bf16 training run of EngravingGNN."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from engraving_fakes import fake_piece

from overseer.engraving.precision import PRECISIONS, resolve_precision
from overseer.engraving.train import train_gnn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")


def test_fp32_is_plain_float32_without_autocast() -> None:
    amp = resolve_precision("fp32", CPU)
    assert amp.dtype is None and amp.name == "fp32"
    assert isinstance(amp.autocast(), contextlib.nullcontext)
    assert not amp.grad_scaler().is_enabled()


def test_bf16_autocasts_matrix_products_on_the_cpu() -> None:
    amp = resolve_precision("bf16", "cpu")
    linear = torch.nn.Linear(8, 4)
    with amp.autocast():
        y = linear(torch.randn(3, 8))
    assert amp.name == "bf16" and y.dtype == torch.bfloat16
    assert not amp.grad_scaler().is_enabled()  # bf16 needs no loss scaling


def test_auto_on_the_cpu_is_fp32_even_with_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    from overseer.engraving import precision

    monkeypatch.setattr(precision, "cpu_has_amx", lambda: True)  # bf16 measured no faster there either
    assert resolve_precision("auto", CPU).name == "fp32"
    assert resolve_precision("bf16", CPU).name == "bf16"  # still there when asked for


def test_auto_on_cuda_prefers_bf16_else_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda").dtype is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda").dtype is torch.float16


def test_unknown_precision_names_the_params_key() -> None:
    with pytest.raises(ValueError, match=r"train_gnn\.precision must be one of auto, fp32, bf16"):
        resolve_precision("fp8", CPU)
    assert PRECISIONS == ("auto", "fp32", "bf16")


def test_bf16_training_runs_and_stays_close_to_fp32() -> None:
    """Two epochs on the same windows: finite losses, bf16 near fp32 (mixed precision changes bits only)."""
    pieces = [fake_piece(120, seed=s) for s in range(3)]
    cfg = {"hidden": 16, "layers": 1, "gru_layers": 1, "epochs": 2, "window": 60, "progress": False, "dropout": 0.0}
    hist = {
        p: train_gnn(pieces[:2], pieces[2:], {**cfg, "precision": p}, device="cpu").history for p in ("fp32", "bf16")
    }
    assert np.isfinite(hist["bf16"]["train_loss"]).all()
    np.testing.assert_allclose(hist["bf16"]["val_loss"], hist["fp32"]["val_loss"], rtol=0.05)
