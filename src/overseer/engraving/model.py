"""The EngravingGNN model: a HybridGNN encoder (paper §2.3, §2.6) and multi-task decoders (§2.2, §2.4).

Encoder (:class:`HybridGNN`), after GraphMuse's ``HybridGNN`` (Karystinaios & Widmer, ISMIR 2024),
the "[6]" the paper takes it from:

* graph branch — L (``layers``, default 3) heterogeneous GraphSAGE layers (:class:`HeteroSAGE`),
  each ``h~_u = W_0 h_u + Σ_r AGG_{v ∈ N_r(u)} W_r h_v`` (the paper's §2.3 equation: one
  ``SAGEConv`` without root weight per relation in a PyG ``HeteroConv``, relation outputs combined
  by ``hetero_aggr`` = sum as in the equation, neighbours by ``conv_aggr`` = mean as in
  GraphSAGE/GraphMuse; the shared root weight W_0 is one ``Linear``), followed by ReLU, dropout 0.5
  and LayerNorm (§2.6);
* sequence branch (:class:`SequenceGRU`) — in parallel, a stack of ``gru_layers`` (default 3, "one
  GRU per graph convolution layer", §2.3) GRU layers over the *initial* features h^(0) of each
  window's notes in time order (§2.3: "in parallel, we feed the initial feature vectors into a
  GRU"), bidirectional with hidden/2 units per direction as in GraphMuse (a note's engraving
  depends on what follows as much as on what precedes), then LayerNorm and a 2-layer MLP;
* combination — ``Linear([h_graph; h_seq])`` to ``hidden`` (256, §2.6), as GraphMuse's ``cat_proj``.

§2.6 also mentions dropout "before [the conv output] enters the GRU", which would put the GRU after
the convolutions; §2.3 and GraphMuse feed the GRU the initial features in parallel — we follow the
latter. PyTorch's GRU has no LayerNorm inside its cell; the LayerNorm follows the GRU stack.

Decoders (§2.4): a 2-layer MLP per node task of ``schema.NODE_TASKS`` (:class:`NodeHead`; staff is
a 2-class softmax, equivalent to the paper's sigmoid), and for the voice and chord candidates a
2-layer MLP on the pair ``[h_u; h_w]`` (:class:`PairHead`), plus — ``pair_features`` on, the default —
three hand-made pair features of Foscarin et al. (``dataset.pair_features``); ``pair_mode="cat_diff"``
adds ``|h_u - h_w|``. The first layer of the pair MLP on ``[h_u; h_w]`` is split into
``W_a h_u + W_b h_w``, computed per node and gathered per pair: the same function, far cheaper
when there are many more candidates than notes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, SAGEConv

from overseer.engraving import schema
from overseer.engraving.dataset import CANDIDATE_EDGE_TYPES, INPUT_EDGE_TYPES, N_PAIR_FEATURES, NOTE


@dataclass
class ModelConfig:
    """Architecture hyperparameters; ``to_dict``/``from_dict`` round-trip through JSON."""

    in_features: int = schema.N_FEATURES
    hidden: int = 256
    layers: int = 3
    gru_layers: int = 3  # 0: no sequence branch (graph only)
    bidirectional: bool = True
    dropout: float = 0.5
    conv_aggr: str = "mean"  # neighbour aggregation inside each SAGEConv
    hetero_aggr: str = "sum"  # combination of the relations (the §2.3 equation sums them)
    pair_mode: str = "cat"  # "cat": [h_u; h_w] (§2.2); "cat_diff": plus |h_u - h_w|
    pair_features: bool = True  # hand-made pair features of Foscarin et al. beside [h_u; h_w]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> ModelConfig:
        """Pick the known keys of ``cfg`` (a ``train_gnn`` cfg holds training keys too)."""
        known = {f.name for f in fields(cls)}
        cfg = {k: v for k, v in cfg.items() if k in known}
        out = cls(**cfg)
        if out.pair_mode not in ("cat", "cat_diff"):
            raise ValueError(f"pair_mode must be 'cat' or 'cat_diff', not {out.pair_mode!r}")
        if out.bidirectional and out.hidden % 2:
            raise ValueError("a bidirectional GRU needs an even hidden size")
        return out


class HeteroSAGE(nn.Module):
    """One heterogeneous GraphSAGE layer, the §2.3 equation: ``W_0 h_u + AGG_r AGG_{N_r(u)} W_r h_v``."""

    def __init__(self, in_channels: int, out_channels: int, conv_aggr: str = "mean", hetero_aggr: str = "sum"):
        super().__init__()
        self.root = nn.Linear(in_channels, out_channels)
        self.conv = HeteroConv(
            {et: SAGEConv(in_channels, out_channels, aggr=conv_aggr, root_weight=False) for et in INPUT_EDGE_TYPES},
            aggr=hetero_aggr,
        )

    def forward(self, x: Tensor, edge_index_dict: dict[tuple[str, str, str], Tensor]) -> Tensor:
        out = self.conv({NOTE: x}, edge_index_dict)
        return self.root(x) + out[NOTE] if NOTE in out else self.root(x)


class SequenceGRU(nn.Module):
    """Stacked (bi)GRU over each window's notes in time order, then LayerNorm and a 2-layer MLP (§2.3).

    The windows of a batch are padded to one (B, T, d) tensor, not packed: on CPU a packed GRU's
    backward pass slices the packed data once per time step and allocates a full-size gradient for
    every slice (quadratic in the batch's notes; 10× slower at W = 300). The backward direction
    therefore runs on each window reversed within its own length, so that padding never reaches a
    note's state; each layer feeds both directions, concatenated, to the next (as ``nn.GRU`` does).
    """

    def __init__(self, in_channels: int, hidden: int, num_layers: int, bidirectional: bool, dropout: float):
        super().__init__()
        size = hidden // 2 if bidirectional else hidden
        dims = [in_channels] + [hidden] * (num_layers - 1)
        self.fwd = nn.ModuleList(nn.GRU(d, size, batch_first=True) for d in dims)
        self.bwd = nn.ModuleList(nn.GRU(d, size, batch_first=True) for d in dims) if bidirectional else None
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.LayerNorm(hidden), nn.Dropout(dropout), nn.Linear(hidden, hidden)
        )

    def forward(self, x: Tensor, batch: Tensor | None) -> Tensor:
        """``x`` (n, d): the notes of several windows, each contiguous and in time order; ``batch`` (n,)."""
        if batch is None or x.shape[0] == 0 or int(batch[-1]) == int(batch[0]):
            lengths = torch.tensor([x.shape[0]])
        else:
            lengths = torch.bincount(batch).cpu()
            lengths = lengths[lengths > 0]
        n_seq, t_max = len(lengths), int(lengths.max()) if len(lengths) else 0
        steps = torch.arange(t_max).unsqueeze(0)
        valid = (steps < lengths.unsqueeze(1)).to(x.device)  # (B, T)
        # position of step t of the reversed sequence: L - 1 - t inside the sequence, t in the padding
        rev = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps).to(x.device)
        h = x.new_zeros(n_seq, t_max, x.shape[1])
        h[valid] = x
        for i, gru in enumerate(self.fwd):
            if i:
                h = self.dropout(h)
            out, _ = gru(h)
            if self.bwd is not None:
                index = rev.unsqueeze(-1).expand(-1, -1, h.shape[-1])
                back, _ = self.bwd[i](torch.gather(h, 1, index))
                back = torch.gather(back, 1, rev.unsqueeze(-1).expand(-1, -1, back.shape[-1]))
                out = torch.cat([out, back], dim=-1)
            h = out
        return self.mlp(self.norm(h[valid]))


class HybridGNN(nn.Module):
    """The encoder: graph branch ∥ sequence branch, concatenated and projected to ``hidden`` (§2.3)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dims = [cfg.in_features] + [cfg.hidden] * cfg.layers
        self.convs = nn.ModuleList(HeteroSAGE(a, b, cfg.conv_aggr, cfg.hetero_aggr) for a, b in pairwise(dims))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.hidden) for _ in range(cfg.layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.sequence = (
            SequenceGRU(cfg.in_features, cfg.hidden, cfg.gru_layers, cfg.bidirectional, cfg.dropout)
            if cfg.gru_layers > 0
            else None
        )
        self.proj = nn.Linear(2 * cfg.hidden, cfg.hidden) if self.sequence is not None else None

    def forward(self, x: Tensor, edge_index_dict: dict[tuple[str, str, str], Tensor], batch: Tensor | None) -> Tensor:
        h = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(self.dropout(torch.relu(conv(h, edge_index_dict))))
        if self.sequence is None:  # gru_layers = 0: the graph branch alone (an ablation, Foscarin et al.)
            return h
        return self.proj(torch.cat([h, self.sequence(x, batch)], dim=-1))


class NodeHead(nn.Module):
    """2-layer MLP decoder of one node task (§2.4): Linear, ReLU, dropout, LayerNorm, Linear."""

    def __init__(self, hidden: int, classes: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.LayerNorm(hidden), nn.Linear(hidden, classes)
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.mlp(h)


class PairHead(nn.Module):
    """2-layer MLP on candidate pairs ``[h_u; h_w]`` (+ features, + |h_u - h_w|) → one logit (§2.2, §2.4)."""

    def __init__(self, hidden: int, dropout: float, pair_mode: str = "cat", n_features: int = 0):
        super().__init__()
        self.src = nn.Linear(hidden, hidden)
        self.dst = nn.Linear(hidden, hidden, bias=False)
        self.diff = nn.Linear(hidden, hidden, bias=False) if pair_mode == "cat_diff" else None
        self.feat = nn.Linear(n_features, hidden, bias=False) if n_features else None
        self.out = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.LayerNorm(hidden), nn.Linear(hidden, 1))

    def forward(self, h: Tensor, pairs: Tensor, features: Tensor | None = None) -> Tensor:
        u, w = pairs[0], pairs[1]
        z = self.src(h)[u] + self.dst(h)[w]
        if self.diff is not None:
            z = z + self.diff((h[u] - h[w]).abs())
        if self.feat is not None and features is not None:
            z = z + self.feat(features)
        return self.out(z).view(-1)


class EngravingGNN(nn.Module):
    """HybridGNN encoder + the decoders of every task; ``forward(data)`` returns logits by name.

    Output keys: ``logits_<task>`` (n, classes) for every node task, ``logit_voice`` (C,) and
    ``logit_chord`` (K,) over the graph's candidate pairs (sigmoid gives the probability).
    """

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or ModelConfig()
        c = self.cfg
        self.encoder = HybridGNN(c)
        self.node_heads = nn.ModuleDict(
            {task: NodeHead(c.hidden, len(classes), c.dropout) for task, classes in schema.NODE_TASKS.items()}
        )
        n_feat = N_PAIR_FEATURES if c.pair_features else 0
        self.pair_heads = nn.ModuleDict(
            {kind: PairHead(c.hidden, c.dropout, c.pair_mode, n_feat) for kind in CANDIDATE_EDGE_TYPES}
        )

    def encode(self, data: HeteroData) -> Tensor:
        """Note embeddings h (n, hidden) of a graph or a batch of windows."""
        store = data[NOTE]
        edge_index_dict = {et: data[et].edge_index for et in INPUT_EDGE_TYPES if et in data.edge_types}
        return self.encoder(store.x, edge_index_dict, getattr(store, "batch", None))

    def decode(self, h: Tensor, data: HeteroData) -> dict[str, Tensor]:
        """Every head on embeddings ``h`` of the notes of ``data`` (its candidates index into h)."""
        out = {f"logits_{task}": head(h) for task, head in self.node_heads.items()}
        for kind, et in CANDIDATE_EDGE_TYPES.items():
            store = data[et]
            feats = store.edge_attr if self.cfg.pair_features else None
            out[f"logit_{kind}"] = self.pair_heads[kind](h, store.edge_index, feats)
        return out

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        return self.decode(self.encode(data), data)
