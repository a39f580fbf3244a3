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


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the keep mask drawn by ``rand_like(x) >= p``: the same distribution.

    On the CPU ``nn.Dropout`` draws its mask with ``bernoulli_``, about 5x slower than
    ``rand_like`` (8.7 vs 1.6 ms for 1200 x 256 values, one shared EPYC core; the encoder and heads
    drop about 17 such tensors per training step). Each element is kept with probability 1 - p and
    scaled by 1 / (1 - p), as in ``nn.Dropout``; only the random stream differs (results change
    bit-wise, not in expectation). On other devices, and outside training, it is ``nn.Dropout``;
    ``fast_mask = False`` (a class attribute, for benchmarks) makes it ``nn.Dropout`` everywhere.
    """

    fast_mask: bool = True

    def forward(self, x: Tensor) -> Tensor:
        cpu_float = x.device.type == "cpu" and x.is_floating_point()
        if not (self.fast_mask and cpu_float and self.training) or self.p == 0.0:
            return super().forward(x)
        if self.p >= 1.0:
            return x * 0.0
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p))


class _RecurrenceGRU(torch.autograd.Function):
    """One unidirectional GRU layer (batch first) with a hand-written backward pass (CPU training).

    Forward: ``nn.GRU``'s own fused C++ loop, run without recording a graph. Backward (BPTT of
    PyTorch's GRU equations, ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(…)``,
    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 - z) ⊙ n + z ⊙ h``): the gates
    are recomputed for all steps at once from the saved outputs (two large matrix products), every
    per-step coefficient that does not depend on the incoming gradient is precomputed in bulk, and
    the only sequential work left is, per step, one elementwise product and one ``addmm`` with
    ``[W_hh; I]`` (which also adds the next step's output gradient); the weight, bias and input
    gradients are then one matrix product each.
    Autograd's own backward of ``nn.GRU`` on the CPU walks ~15 graph nodes per step and per layer;
    this is the same maths (results equal up to float rounding order) at a fraction of the cost.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor, gru: nn.GRU) -> Tensor:
        out, _ = gru(x)
        ctx.save_for_backward(x, out, w_ih, w_hh, b_ih, b_hh)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, out, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        with torch.autocast("cpu", enabled=False):
            return _gru_backward(ctx.needs_input_grad[0], x, out, w_ih, w_hh, b_ih, b_hh, grad_out)


def _gru_backward(
    need_x: bool, x: Tensor, out: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor, grad_out: Tensor
) -> tuple[Tensor | None, ...]:
    """Gradients of :class:`_RecurrenceGRU` (x, w_ih, w_hh, b_ih, b_hh, None), time-major inside."""
    b, t, hid = out.shape
    xt = x.transpose(0, 1).reshape(t * b, -1)  # (T·B, d)
    ht = out.transpose(0, 1)  # (T, B, H)
    h_prev = torch.cat([ht.new_zeros(1, b, hid), ht[:-1]]).reshape(t * b, hid)
    gi = nn.functional.linear(xt, w_ih, b_ih)
    gh = nn.functional.linear(h_prev, w_hh, b_hh)
    rz = torch.sigmoid(gi[:, : 2 * hid] + gh[:, : 2 * hid])
    r, z = rz[:, :hid], rz[:, hid:]
    gh_n = gh[:, 2 * hid :]
    n = torch.tanh(gi[:, 2 * hid :] + r * gh_n)
    a_n = (1 - z) * (1 - n * n)  # d h' / d(pre-activation of n), per unit of dh
    a_z = (h_prev - n) * z * (1 - z)
    c_r = a_n * gh_n * r * (1 - r)
    # per step: [d(W_h h + b_h); dh ⊙ z] = dh ⊙ coef, and dh_{t-1} = dout_{t-1} + that @ [W_hh; I]
    coef = torch.stack([c_r, a_z, a_n * r, z], dim=1).view(t, b, 4, hid)
    w_ext = torch.cat([w_hh, torch.eye(hid, dtype=w_hh.dtype, device=w_hh.device)])
    d_out = grad_out.transpose(0, 1)
    dh_all = out.new_empty(t, b, hid)
    dh_all[t - 1] = d_out[t - 1]
    dgh_all = out.new_empty(t, b, 4, hid)
    for s in range(t - 1, -1, -1):
        dgh = torch.mul(dh_all[s].unsqueeze(1), coef[s], out=dgh_all[s])
        if s:
            torch.addmm(d_out[s - 1], dgh.view(b, 4 * hid), w_ext, out=dh_all[s - 1])
    dgh = dgh_all[:, :, :3].reshape(t * b, 3 * hid)
    dgi = torch.cat([dgh[:, : 2 * hid], dh_all.view(t * b, hid) * a_n], dim=1)
    grad_x = (dgi @ w_ih).view(t, b, -1).transpose(0, 1) if need_x else None
    return grad_x, dgi.t() @ xt, dgh.t() @ h_prev, dgi.sum(0), dgh.sum(0), None


def _run_gru(gru: nn.GRU, h: Tensor) -> Tensor:
    """``gru(h)[0]``; training on the CPU in float32 through :class:`_RecurrenceGRU` (same maths, faster)."""
    params = (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    fast = SequenceGRU.recurrence == "fast" and torch.is_grad_enabled() and h.device.type == "cpu"
    if fast and h.dtype == torch.float32 and h.shape[1] > 0 and any(p.requires_grad for p in params):
        return _RecurrenceGRU.apply(h, *params, gru)
    return gru(h)[0]


class SequenceGRU(nn.Module):
    """Stacked (bi)GRU over each window's notes in time order, then LayerNorm and a 2-layer MLP (§2.3).

    The windows of a batch are padded to one (B, T, d) tensor, not packed: on CPU a packed GRU's
    backward pass slices the packed data once per time step and allocates a full-size gradient for
    every slice (quadratic in the batch's notes; 10× slower at W = 300). The backward direction
    therefore runs on each window reversed within its own length, so that padding never reaches a
    note's state; each layer feeds both directions, concatenated, to the next (as ``nn.GRU`` does).
    Training on the CPU, each GRU layer's gradient comes from :class:`_RecurrenceGRU` (the same
    maths as autograd through ``nn.GRU``, ~2x cheaper); ``recurrence = "reference"`` (a class
    attribute, for benchmarks and tests) uses autograd through ``nn.GRU`` instead.
    """

    recurrence: str = "fast"  # "fast" | "reference"

    def __init__(self, in_channels: int, hidden: int, num_layers: int, bidirectional: bool, dropout: float):
        super().__init__()
        size = hidden // 2 if bidirectional else hidden
        dims = [in_channels] + [hidden] * (num_layers - 1)
        self.fwd = nn.ModuleList(nn.GRU(d, size, batch_first=True) for d in dims)
        self.bwd = nn.ModuleList(nn.GRU(d, size, batch_first=True) for d in dims) if bidirectional else None
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.LayerNorm(hidden), Dropout(dropout), nn.Linear(hidden, hidden)
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
            out = _run_gru(gru, h)
            if self.bwd is not None:
                index = rev.unsqueeze(-1).expand(-1, -1, h.shape[-1])
                back = _run_gru(self.bwd[i], torch.gather(h, 1, index))
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
        self.dropout = Dropout(cfg.dropout)
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
            nn.Linear(hidden, hidden), nn.ReLU(), Dropout(dropout), nn.LayerNorm(hidden), nn.Linear(hidden, classes)
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
        self.out = nn.Sequential(nn.ReLU(), Dropout(dropout), nn.LayerNorm(hidden), nn.Linear(hidden, 1))

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
