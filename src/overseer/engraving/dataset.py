"""Prepared pieces (``schema``) as PyG graphs, and GraphMuse-style windows of consecutive notes.

A piece becomes one :class:`~torch_geometric.data.HeteroData` with a single node type ``note``:

* ``data["note"].x`` (n, 19) float32 — the paper's node features (§2.1) and the log2 duration (``schema.FEATURES``);
* ``data["note"].y_<task>`` (n,) int64 for every task of ``schema.NODE_TASKS`` (-1 = unknown);
* ``data["note"].node_id`` (n,) int64 — the node's index in its piece (a window keeps it);
* ``data["note", r, "note"].edge_index`` for the seven input relations ``schema.RELATIONS``;
* ``data["note", "voice_cand", "note"]`` and ``data["note", "chord_cand", "note"]`` — the
  candidate pairs Λ of the edge tasks (§2.2) with ``edge_label`` (float32, 1/0/-1) and
  ``edge_attr`` (float32, ``N_PAIR_FEATURES`` columns, see :func:`pair_features`).

Windows (GraphMuse sampling, Karystinaios & Widmer 2024, as used by the paper §2.3): ``W``
consecutive notes in the piece's node order — nodes are sorted by (onset, pitch), so a window is a
stretch of time — with the induced subgraph (every edge and candidate whose two ends are in the
window, re-indexed to the window). A batch is several windows concatenated by
``Batch.from_data_list``; ``batch["note"].batch`` says which window each note belongs to, and the
notes of a window stay contiguous and in time order, which is the sequence layout the GRU branch of
the encoder needs (:class:`overseer.engraving.model.SequenceGRU`).

Epoch sampling (:func:`sample_windows`): each piece of n notes contributes ``ceil(n / W)`` windows
with start positions drawn uniformly in ``[0, n - W]`` (a piece shorter than W is one window of
the whole piece), so an epoch sees about as many notes as the corpus holds; the windows of all
pieces are shuffled together and cut into batches. Everything is drawn from a NumPy generator, so
the batches are a function of the seed. Training may map each window before batching
(``iterate_batches(augment=...)``: transposition, :mod:`overseer.engraving.transpose`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from overseer.engraving import schema
from overseer.errors import InputError

NOTE = "note"
VOICE = (NOTE, "voice_cand", NOTE)
CHORD = (NOTE, "chord_cand", NOTE)
INPUT_EDGE_TYPES: tuple[tuple[str, str, str], ...] = tuple((NOTE, r, NOTE) for r in schema.RELATIONS)
CANDIDATE_EDGE_TYPES = {"voice": VOICE, "chord": CHORD}
# voice: 1 - tanh(gap / bar length), gap == 0, |pitch difference| / 127 (Foscarin et al. 2024, EdgeDecoder);
# chord: |pitch difference| / 127, same duration, tanh(|duration difference| / bar length)
N_PAIR_FEATURES = 3


def pair_features(piece: Mapping[str, np.ndarray], cand: np.ndarray, kind: str) -> np.ndarray:
    """Hand-made features of candidate pairs (C, 3) float32, fed to the pair decoders beside [h_u; h_w].

    For voice pairs these are the onset and pitch scores of Foscarin et al. (ISMIR 2024,
    ``EdgeDecoder``), the predecessor the paper builds on (§1, [4]): ``1 - tanh(gap / bar)`` with
    ``gap = onset(w) - offset(u)``, whether w starts exactly where u ends, and the pitch distance
    / 127. Chord pairs (same onset) get the pitch distance, whether both durations are equal and
    ``tanh(|duration difference| / bar)``. ``bar`` is the notated length of w's bar.
    """
    u, w = np.asarray(cand[0]), np.asarray(cand[1])
    onset = np.asarray(piece["onset"], dtype=np.float64)
    duration = np.asarray(piece["duration"], dtype=np.float64)
    pitch = np.asarray(piece["pitch"], dtype=np.float64)
    bar_dur = np.asarray(piece["bar_dur"], dtype=np.float64)[np.asarray(piece["bar"])]
    bar_len = np.maximum(bar_dur[w], 1e-6) if u.size else np.zeros(0)
    dpitch = np.abs(pitch[w] - pitch[u]) / 127.0
    if kind == "voice":
        gap = onset[w] - (onset[u] + duration[u])
        cols = (1.0 - np.tanh(gap / bar_len), np.isclose(gap, 0.0), dpitch)
    elif kind == "chord":
        ddur = np.abs(duration[w] - duration[u])
        cols = (dpitch, np.isclose(ddur, 0.0), np.tanh(ddur / bar_len))
    else:
        raise ValueError(f"unknown candidate kind {kind!r}")
    return np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=1).reshape(-1, N_PAIR_FEATURES)


def _edges(piece: Mapping[str, np.ndarray], name: str, n: int) -> torch.Tensor:
    e = np.asarray(piece[name], dtype=np.int64).reshape(2, -1)
    if e.size and (e.min() < 0 or e.max() >= n):
        raise InputError(f"{name} references nodes outside 0..{n - 1}")
    return torch.from_numpy(e.copy())


def piece_to_data(piece: Mapping[str, np.ndarray]) -> HeteroData:
    """One prepared piece (schema arrays) as a HeteroData graph (layout in the module docstring)."""
    x = np.asarray(piece["x"], dtype=np.float32)
    n = x.shape[0]
    if x.ndim != 2 or x.shape[1] != schema.N_FEATURES:
        raise InputError(f"x has shape {x.shape}, expected (n, {schema.N_FEATURES})")
    onset = np.asarray(piece["onset"])
    if n > 1 and np.any(np.diff(onset) < 0):
        raise InputError("nodes are not sorted by onset (the contract sorts them by onset, pitch)")
    data = HeteroData()
    data[NOTE].x = torch.from_numpy(x.copy())
    data[NOTE].node_id = torch.arange(n, dtype=torch.long)
    for task in schema.NODE_TASKS:
        data[NOTE][f"y_{task}"] = torch.from_numpy(np.asarray(piece[f"y_{task}"], dtype=np.int64).copy())
    for edge_type in INPUT_EDGE_TYPES:
        data[edge_type].edge_index = _edges(piece, f"edges_{edge_type[1]}", n)
    for kind, edge_type in CANDIDATE_EDGE_TYPES.items():
        cand = _edges(piece, f"{kind}_cand", n)
        label = np.asarray(piece[f"y_{kind}"], dtype=np.float32)
        if label.shape != (cand.shape[1],):
            raise InputError(f"y_{kind} has {label.shape} entries for {cand.shape[1]} candidates")
        data[edge_type].edge_index = cand
        data[edge_type].edge_label = torch.from_numpy(label.copy())
        data[edge_type].edge_attr = torch.from_numpy(pair_features(piece, cand.numpy(), kind))
    return data


def window(data: HeteroData, start: int, size: int) -> HeteroData:
    """The subgraph induced by nodes ``start .. start + size - 1`` (clipped to the piece), re-indexed.

    Node-level tensors are sliced; an edge (input relation or candidate) is kept iff both of its
    ends are inside the window, and its edge-level tensors follow it.
    """
    n = data[NOTE].num_nodes
    start = max(0, min(int(start), n))
    stop = min(n, start + int(size))
    out = HeteroData()
    for key, value in data[NOTE].items():
        out[NOTE][key] = value[start:stop]
    for edge_type in data.edge_types:
        store = data[edge_type]
        ei = store.edge_index
        keep = (ei[0] >= start) & (ei[0] < stop) & (ei[1] >= start) & (ei[1] < stop)
        for key, value in store.items():
            out[edge_type][key] = value[:, keep] - start if key == "edge_index" else value[keep]
    return out


def collate(windows: Sequence[HeteroData]) -> HeteroData:
    """Concatenate windows into one disconnected graph; ``["note"].batch`` numbers the windows."""
    return Batch.from_data_list(list(windows))


def sample_windows(sizes: Sequence[int], window_size: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """One epoch's windows as (piece index, start), shuffled: ``ceil(n / W)`` uniform starts per piece."""
    out: list[tuple[int, int]] = []
    for i, n in enumerate(sizes):
        if n <= 0:
            continue
        k = max(1, math.ceil(n / window_size))
        high = max(0, n - window_size)
        out.extend((i, int(s)) for s in rng.integers(0, high + 1, size=k))
    order = rng.permutation(len(out))
    return [out[j] for j in order]


def iterate_batches(
    graphs: Sequence[HeteroData],
    window_size: int,
    batch_windows: int,
    rng: np.random.Generator,
    augment: Callable[[HeteroData], HeteroData] | None = None,
) -> Iterator[HeteroData]:
    """The training batches of one epoch: ``batch_windows`` sampled windows per batch.

    ``augment`` (e.g. :class:`overseer.engraving.transpose.Transposer`) maps each window before it
    is batched, with its own randomness: the windows drawn from ``rng`` are the same with or without it.
    """
    plan = sample_windows([g[NOTE].num_nodes for g in graphs], window_size, rng)
    for b in range(0, len(plan), batch_windows):
        windows = [window(graphs[i], s, window_size) for i, s in plan[b : b + batch_windows]]
        yield collate(windows if augment is None else [augment(w) for w in windows])
