"""predict_piece: a trained EngravingGNN on one prepared piece → the contract's "Model predictions".

Output (``schema`` module docstring): ``logits_<task>`` (n, classes) float32 for every node task,
``p_voice`` (C,) float32 over ``voice_cand`` and ``p_chord`` (K,) over ``chord_cand``, in the piece's
own order.

The whole piece is one graph and one GRU sequence, in eval mode under ``torch.no_grad`` (the GRU
then sees the whole piece, as validation does in training). For very long pieces ``max_notes``
switches to overlapping windows: windows of ``max_notes`` consecutive notes every
``max_notes - overlap`` notes; each note takes its embedding from the window in which it lies
farthest from a window edge (so it has context on both sides), and all heads then run once on the
assembled embeddings of the whole piece — candidate pairs that span two windows are scored too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from overseer.engraving.dataset import NOTE, piece_to_data, window
from overseer.engraving.model import EngravingGNN
from overseer.engraving.train import pick_device, torch_threads


def pip_requirements() -> list[str]:
    """What a served copy needs: the exact torch (without a local build tag) and PyTorch Geometric."""
    import torch_geometric

    return [f"torch=={torch.__version__.split('+')[0]}", f"torch-geometric=={torch_geometric.__version__}"]


def _window_starts(n: int, size: int, overlap: int) -> list[int]:
    if n <= size:
        return [0]
    stride = max(1, size - overlap)
    starts = list(range(0, n - size, stride))
    return [*starts, n - size]


def predict_piece(
    model: EngravingGNN,
    piece: Mapping[str, np.ndarray],
    *,
    device: str | torch.device | None = None,
    max_notes: int | None = None,
    overlap: int | None = None,
    threads: int = 1,
) -> dict[str, np.ndarray]:
    """Logits and candidate probabilities of one piece (see the module docstring).

    ``device`` ``None`` keeps the model's device. ``max_notes`` (None: no limit) bounds the notes of
    one forward pass of the encoder; ``overlap`` defaults to a quarter of it. ``threads``: torch CPU
    threads for the call (0: unchanged; one is much faster than two on shared cores, see ``train``).
    """
    with torch_threads(threads):
        return _predict(model, piece, device, max_notes, overlap)


@torch.no_grad()
def _predict(
    model: EngravingGNN,
    piece: Mapping[str, np.ndarray],
    device: str | torch.device | None,
    max_notes: int | None,
    overlap: int | None,
) -> dict[str, np.ndarray]:
    dev = pick_device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev).eval()
    data = piece_to_data(piece).to(dev)
    n = data[NOTE].num_nodes
    if max_notes is None or n <= max_notes:
        h = model.encode(data)
    else:
        ov = max_notes // 4 if overlap is None else int(overlap)
        h = torch.empty(n, model.cfg.hidden, device=dev)
        best = torch.full((n,), -1, dtype=torch.long)
        for start in _window_starts(n, int(max_notes), ov):
            stop = min(n, start + int(max_notes))
            pos = torch.arange(start, stop)
            # distance from the window's inner edges (a piece edge is no window edge)
            left = pos - start if start > 0 else torch.full_like(pos, n)
            right = stop - 1 - pos if stop < n else torch.full_like(pos, n)
            margin = torch.minimum(left, right)
            take = margin > best[start:stop]
            hw = model.encode(window(data, start, stop - start))
            h[start:stop][take.to(dev)] = hw[take.to(dev)]
            best[start:stop] = torch.maximum(best[start:stop], margin)
    out = model.decode(h, data)
    result = {k: v.float().cpu().numpy() for k, v in out.items() if k.startswith("logits_")}
    for kind in ("voice", "chord"):
        result[f"p_{kind}"] = torch.sigmoid(out[f"logit_{kind}"]).float().cpu().numpy()
    return result


def predict_pieces(
    model: EngravingGNN, pieces: Sequence[Mapping[str, np.ndarray]], **kwargs: object
) -> list[dict[str, np.ndarray]]:
    """``predict_piece`` for every piece (keyword arguments passed on)."""
    return [predict_piece(model, piece, **kwargs) for piece in pieces]
