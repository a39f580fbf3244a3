"""EngravingGNN graphs, windows and model: shapes of every head, induced subgraphs, the GRU layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engraving_fakes import fake_piece

from overseer.engraving import schema
from overseer.engraving.dataset import (
    CANDIDATE_EDGE_TYPES,
    INPUT_EDGE_TYPES,
    NOTE,
    collate,
    iterate_batches,
    piece_to_data,
    sample_windows,
    window,
)
from overseer.engraving.model import EngravingGNN, HeteroSAGE, ModelConfig, SequenceGRU
from overseer.errors import InputError

TINY = ModelConfig(hidden=16, layers=2, gru_layers=1, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def piece() -> dict[str, np.ndarray]:
    return fake_piece(70, seed=3)


def test_piece_to_data_layout(piece: dict[str, np.ndarray]) -> None:
    data = piece_to_data(piece)
    assert data[NOTE].x.shape == (70, schema.N_FEATURES)
    for task in schema.NODE_TASKS:
        assert data[NOTE][f"y_{task}"].dtype == torch.long
    for et in INPUT_EDGE_TYPES:
        assert torch.equal(data[et].edge_index, torch.from_numpy(piece[f"edges_{et[1]}"]))
    for kind, et in CANDIDATE_EDGE_TYPES.items():
        c = piece[f"{kind}_cand"].shape[1]
        assert data[et].edge_label.shape == (c,)
        assert data[et].edge_attr.shape == (c, 3)
        assert torch.isfinite(data[et].edge_attr).all()


def test_unsorted_piece_is_rejected(piece: dict[str, np.ndarray]) -> None:
    bad = dict(piece, onset=piece["onset"][::-1].copy())
    with pytest.raises(InputError, match="sorted"):
        piece_to_data(bad)


def test_every_head_has_its_shape(piece: dict[str, np.ndarray]) -> None:
    torch.manual_seed(0)
    model = EngravingGNN(TINY).eval()
    out = model(piece_to_data(piece))
    for task, classes in schema.NODE_TASKS.items():
        assert out[f"logits_{task}"].shape == (70, len(classes))
    assert out["logit_voice"].shape == (piece["voice_cand"].shape[1],)
    assert out["logit_chord"].shape == (piece["chord_cand"].shape[1],)
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize(
    "cfg",
    [ModelConfig(hidden=16, gru_layers=0), ModelConfig(hidden=16, pair_mode="cat_diff", pair_features=False)],
)
def test_variants_run(piece: dict[str, np.ndarray], cfg: ModelConfig) -> None:
    out = EngravingGNN(cfg)(piece_to_data(piece))
    assert out["logits_key"].shape == (70, 15)


def test_model_config_round_trip() -> None:
    cfg = ModelConfig(hidden=32, layers=2, bidirectional=False)
    assert ModelConfig.from_dict({**cfg.to_dict(), "epochs": 3}) == cfg
    with pytest.raises(ValueError, match="pair_mode"):
        ModelConfig.from_dict({"pair_mode": "dot"})


def test_window_induces_the_subgraph(piece: dict[str, np.ndarray]) -> None:
    data = piece_to_data(piece)
    start, size = 17, 30
    sub = window(data, start, size)
    assert sub[NOTE].num_nodes == size
    assert torch.equal(sub[NOTE].node_id, torch.arange(start, start + size))
    assert torch.equal(sub[NOTE].x, data[NOTE].x[start : start + size])
    for et in data.edge_types:
        full = data[et].edge_index.numpy()
        inside = np.all((full >= start) & (full < start + size), axis=0)
        ei = sub[et].edge_index.numpy()
        assert ei.size == 0 or (ei.min() >= 0 and ei.max() < size)  # nothing dangling
        got = {(int(u) + start, int(w) + start) for u, w in ei.T}
        assert got == {(int(u), int(w)) for u, w in full[:, inside].T}  # remapped, none lost
        if et in CANDIDATE_EDGE_TYPES.values():
            assert torch.equal(sub[et].edge_label, data[et].edge_label[torch.from_numpy(inside)])
            assert sub[et].edge_attr.shape[0] == ei.shape[1]


def test_window_is_clipped_at_the_end(piece: dict[str, np.ndarray]) -> None:
    sub = window(piece_to_data(piece), 60, 30)
    assert sub[NOTE].num_nodes == 10


def test_sampling_is_seeded_and_covers_each_piece() -> None:
    plan = sample_windows([70, 20, 130], 30, np.random.default_rng(4))
    assert plan == sample_windows([70, 20, 130], 30, np.random.default_rng(4))
    per_piece = [sum(1 for i, _ in plan if i == p) for p in range(3)]
    assert per_piece == [3, 1, 5]  # ceil(n / W), one window for a piece shorter than W
    assert all(0 <= s <= max(0, n - 30) for (i, s), n in ((x, [70, 20, 130][x[0]]) for x in plan))


def test_batch_keeps_windows_contiguous_in_time_order() -> None:
    graphs = [piece_to_data(fake_piece(n, seed=s)) for s, n in enumerate((50, 40, 25))]
    batches = list(iterate_batches(graphs, 20, 2, np.random.default_rng(0)))
    assert sum(int(b[NOTE].batch.max()) + 1 for b in batches) == 3 + 2 + 2
    for b in batches:
        batch = b[NOTE].batch
        assert torch.all(batch[1:] >= batch[:-1])  # each window contiguous
        for k in range(int(batch.max()) + 1):
            ids = b[NOTE].node_id[batch == k]
            assert torch.all(ids[1:] == ids[:-1] + 1)  # consecutive notes of one piece, in order
        for et in b.edge_types:
            u, w = b[et].edge_index
            assert torch.equal(batch[u], batch[w])  # no edge between windows


def test_gru_output_of_a_window_does_not_depend_on_its_batch() -> None:
    torch.manual_seed(0)
    gru = SequenceGRU(schema.N_FEATURES, 16, num_layers=2, bidirectional=True, dropout=0.0).eval()
    a, b = torch.randn(7, schema.N_FEATURES), torch.randn(12, schema.N_FEATURES)
    batch = torch.tensor([0] * 7 + [1] * 12)
    together = gru(torch.cat([a, b]), batch)
    assert torch.allclose(together[:7], gru(a, None), atol=1e-6)  # padding never reaches a note
    assert torch.allclose(together[7:], gru(b, None), atol=1e-6)


def test_bidirectional_gru_sees_the_future() -> None:
    torch.manual_seed(0)
    gru = SequenceGRU(schema.N_FEATURES, 16, num_layers=1, bidirectional=True, dropout=0.0).eval()
    x = torch.randn(10, schema.N_FEATURES)
    y = x.clone()
    y[-1] += 1.0
    assert not torch.allclose(gru(x, None)[0], gru(y, None)[0])
    forward_only = SequenceGRU(schema.N_FEATURES, 16, num_layers=1, bidirectional=False, dropout=0.0).eval()
    assert torch.allclose(forward_only(x, None)[0], forward_only(y, None)[0])


def test_collate_of_one_window_equals_the_window(piece: dict[str, np.ndarray]) -> None:
    model = EngravingGNN(TINY).eval()
    data = piece_to_data(piece)
    with torch.no_grad():
        alone = model(data)
        batched = model(collate([data]))
    for key in alone:
        assert torch.allclose(alone[key], batched[key], atol=1e-5)


def test_the_reversed_gru_stack_is_torchs_bidirectional_gru() -> None:
    """Per window, the padded forward/reversed GRU pair equals ``nn.GRU(bidirectional=True)`` on the same weights."""
    torch.manual_seed(1)
    layers, hidden = 3, 16
    gru = SequenceGRU(schema.N_FEATURES, hidden, num_layers=layers, bidirectional=True, dropout=0.0).eval()
    ref = torch.nn.GRU(schema.N_FEATURES, hidden // 2, num_layers=layers, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for k in range(layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{k}").copy_(getattr(gru.fwd[k], f"{name}_l0"))
                getattr(ref, f"{name}_l{k}_reverse").copy_(getattr(gru.bwd[k], f"{name}_l0"))
        lengths = (9, 4, 13)
        x = torch.randn(sum(lengths), schema.N_FEATURES)
        batch = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))
        got = gru(x, batch)
        want = torch.cat([ref(part.unsqueeze(0))[0][0] for part in torch.split(x, lengths)])
        assert torch.allclose(got, gru.mlp(gru.norm(want)), atol=1e-5)


def test_one_hetero_sage_layer_is_the_equation_by_hand(piece: dict[str, np.ndarray]) -> None:
    """h_i' = W_0 h_i + b_0 + Σ_r (W_r mean_{j: (j, i) ∈ E_r} h_j + b_r): mean over in-neighbours (conv_aggr),
    summed over the relations (hetero_aggr); a relation without in-neighbours adds just its bias."""
    torch.manual_seed(2)
    layer = HeteroSAGE(schema.N_FEATURES, 8)
    data = piece_to_data(piece)
    edges = {et: data[et].edge_index for et in INPUT_EDGE_TYPES}
    x = torch.randn(data[NOTE].num_nodes, schema.N_FEATURES)
    with torch.no_grad():
        got = layer(x, edges)
        want = x @ layer.root.weight.T + layer.root.bias
        for et, (src, dst) in edges.items():
            conv = layer.conv.convs[et]
            assert conv.aggr == "mean" and not conv.root_weight
            lin = conv.lin_l
            for i in range(x.shape[0]):
                nbrs = src[dst == i]
                mean = x[nbrs].mean(dim=0) if nbrs.numel() else torch.zeros(x.shape[1])
                want[i] += lin.weight @ mean + (lin.bias if lin.bias is not None else 0.0)
    assert layer.conv.aggr == "sum"
    assert sum(int(e.shape[1]) for e in edges.values()) > 0
    assert torch.allclose(got, want, atol=1e-5)


def test_hand_written_gru_backward_passes_gradcheck() -> None:
    from overseer.engraving.model import _RecurrenceGRU

    torch.manual_seed(0)
    gru = torch.nn.GRU(5, 4, batch_first=True).double()
    x = torch.randn(3, 7, 5, dtype=torch.double, requires_grad=True)
    params = (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    assert torch.autograd.gradcheck(lambda x, *p: _RecurrenceGRU.apply(x, *p, gru), (x, *params))


def test_fast_gru_training_step_equals_autograd_through_nn_gru(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same outputs and (up to rounding) the same gradients as the reference path, windows of unequal length."""
    torch.manual_seed(0)
    seq = SequenceGRU(schema.N_FEATURES, 32, 3, True, 0.0)
    x = torch.randn(50, schema.N_FEATURES, requires_grad=True)
    batch = torch.tensor([0] * 20 + [1] * 12 + [2] * 18)
    weight = torch.linspace(-1, 1, 50 * 32).view(50, 32)
    got = {}
    for mode in ("reference", "fast"):
        monkeypatch.setattr(SequenceGRU, "recurrence", mode)
        seq.zero_grad()
        x.grad = None
        y = seq(x, batch)
        (y * weight).sum().backward()
        got[mode] = (y.detach(), x.grad.clone(), [p.grad.clone() for p in seq.parameters()])
    assert torch.equal(got["fast"][0], got["reference"][0])
    torch.testing.assert_close(got["fast"][1], got["reference"][1], rtol=1e-4, atol=1e-6)
    for fast, ref in zip(got["fast"][2], got["reference"][2], strict=True):
        torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-6)


def test_fast_dropout_keeps_the_distribution_of_nn_dropout() -> None:
    from overseer.engraving.model import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.3).train()
    x = torch.ones(200, 500)
    y = drop(x)
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert torch.equal(drop.eval()(x), x)  # identity outside training, as nn.Dropout


def test_state_dict_keys_are_those_of_saved_models() -> None:
    """The speed-ups add no parameter: models saved before load unchanged (GRU weights keep their names)."""
    keys = set(EngravingGNN(TINY).state_dict())
    gru = {k for k in keys if k.startswith("encoder.sequence.")}
    expected = {f"encoder.sequence.{d}.0.{w}_l0" for d in ("fwd", "bwd") for w in ("weight_ih", "weight_hh")}
    expected |= {f"encoder.sequence.{d}.0.{b}_l0" for d in ("fwd", "bwd") for b in ("bias_ih", "bias_hh")}
    assert expected <= gru
    assert not any("dropout" in k for k in keys)
