"""Transposition along the line of fifths (issue 13): theory on hand-made cases, inverses, representability, wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engraving_fakes import fake_piece

from overseer.engraving import schema
from overseer.engraving.data.graph import node_features
from overseer.engraving.dataset import NOTE, iterate_batches, piece_to_data, window
from overseer.engraving.notation import pitch_consistent_spellings
from overseer.engraving.train import make_augment, resolve_cfg, train_gnn
from overseer.engraving.transpose import (
    SPELLING_FIFTHS,
    Transposer,
    allowed_shifts,
    data_shifts,
    pitch_from_features,
    semitones,
    transpose_data,
    transpose_key,
    transpose_piece,
    transpose_spelling,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sp(name: str) -> int:
    """Spelling class of a name like "F#", "Eb", "Bx", "Fbb"."""
    alter = {"": 0, "#": 1, "x": 2, "b": -1, "bb": -2}[name[1:]]
    return schema.spelling_index(name[0], alter)


def key(fifths: int) -> int:
    return schema.KEY_FIFTHS.index(fifths)


def hand_piece(names: list[str], pitches: list[int], fifths: int) -> dict[str, np.ndarray]:
    """One note per spelled pitch, a quarter apart in 4/4, all in the key with ``fifths``."""
    n = len(names)
    onset = np.arange(n, dtype=np.float64)
    bar = (onset // 4).astype(np.int32)
    n_bars = int(bar.max()) + 1
    pitch = np.array(pitches, dtype=np.int16)
    bar_start = np.arange(n_bars) * 4.0
    x = node_features(onset, np.ones(n), pitch, bar, bar_start, np.full(n_bars, 4.0), [4] * n_bars, [4] * n_bars)
    return {
        "x": x,
        "onset": onset,
        "pitch": pitch,
        "bar": bar,
        "y_spelling": np.array([sp(s) for s in names], dtype=np.int16),
        "y_key": np.full(n, key(fifths), dtype=np.int16),
        "y_stem": np.zeros(n, dtype=np.int16),
        "grace_pitch": np.array([63], dtype=np.int16),
        "grace_spelling": np.array([sp("Eb")], dtype=np.int16),
    }


C_MAJOR = (["C", "D", "E", "F", "G", "A", "B"], [60, 62, 64, 65, 67, 69, 71])


def test_the_line_of_fifths() -> None:
    assert [SPELLING_FIFTHS[sp(s)] for s in ("F", "C", "G", "D", "A", "E", "B", "F#", "Bb", "Fbb", "Bx")] == [
        -1, 0, 1, 2, 3, 4, 5, 6, -2, -15, 19,
    ]  # fmt: skip
    assert [semitones(k) for k in range(8)] == [0, -5, 2, -3, 4, -1, 6, 1]  # a fifth up is a fourth down
    assert all(semitones(-k) == -semitones(k) for k in range(-14, 15))
    assert all((semitones(k) - 7 * k) % 12 == 0 and abs(semitones(k)) <= 6 for k in range(-14, 15))


def test_c_major_to_g_major_moves_every_spelling_a_fifth() -> None:
    piece = hand_piece(*C_MAJOR, fifths=0)
    out = transpose_piece(piece, 1)
    assert [schema.SPELLINGS[s] for s in out["y_spelling"]] == ["G", "A", "B", "C", "D", "E", "F#"]
    assert (out["y_key"] == key(1)).all()  # one sharp
    assert out["pitch"].tolist() == [55, 57, 59, 60, 62, 64, 66]  # down a fourth (within a tritone)
    assert out["grace_spelling"].tolist() == [sp("Bb")] and out["grace_pitch"].tolist() == [58]  # Eb -> Bb
    assert (out["y_stem"] == piece["y_stem"]).all()  # other labels as they were


def test_c_major_to_c_sharp_major_sharpens_every_note() -> None:
    out = transpose_piece(hand_piece(*C_MAJOR, fifths=0), 7)  # an augmented unison
    assert [schema.SPELLINGS[s] for s in out["y_spelling"]] == ["C#", "D#", "E#", "F#", "G#", "A#", "B#"]
    assert (out["y_key"] == key(7)).all()
    assert out["pitch"].tolist() == [61, 63, 65, 66, 68, 70, 72]


def test_flat_keys_move_the_other_way() -> None:
    piece = hand_piece(["Eb", "Bb", "Ab", "F"], [63, 58, 68, 65], fifths=-3)  # E-flat major
    up = transpose_piece(piece, 1)  # B-flat major
    assert [schema.SPELLINGS[s] for s in up["y_spelling"]] == ["Bb", "F", "Eb", "C"]
    assert (up["y_key"] == key(-2)).all()
    down = transpose_piece(piece, -2)  # D-flat major: Eb -> Db, F -> Eb
    assert [schema.SPELLINGS[s] for s in down["y_spelling"]] == ["Db", "Ab", "Gb", "Eb"]
    assert (down["y_key"] == key(-5)).all() and down["pitch"].tolist() == [61, 56, 66, 63]


def test_features_follow_the_moved_pitch_and_agree_with_the_spelling() -> None:
    piece = fake_piece(80, seed=3, unknown=0.1)
    for k in allowed_shifts(piece["y_spelling"], piece["y_key"], piece["pitch"]):
        out = transpose_piece(piece, int(k))
        assert (pitch_from_features(out["x"]) == out["pitch"]).all()
        assert np.array_equal(out["x"][:, 13:], piece["x"][:, 13:])  # duration, position, downbeat
        known = out["y_spelling"] >= 0
        assert (out["y_spelling"] >= 0).sum() == (piece["y_spelling"] >= 0).sum()  # unknown stays unknown
        assert pitch_consistent_spellings(out["pitch"][known])[np.arange(known.sum()), out["y_spelling"][known]].all()


@pytest.mark.parametrize("k", [-6, -3, -1, 1, 2, 5, 6])
def test_a_transposition_and_its_inverse_give_back_the_piece(k: int) -> None:
    piece = fake_piece(60, seed=k + 20)
    piece["y_key"] = np.where(piece["y_key"] >= 0, key(0), -1).astype(np.int16)  # C major: room both ways
    assert k in allowed_shifts(piece["y_spelling"], piece["y_key"], piece["pitch"])
    back = transpose_piece(transpose_piece(piece, k), -k)
    assert back.keys() == piece.keys()
    for name, value in piece.items():
        assert back[name].dtype == value.dtype and np.array_equal(back[name], value), name

    data = piece_to_data(piece)
    there = transpose_data(data, k)
    again = transpose_data(there, -k)
    for name in ("x", "y_spelling", "y_key"):
        assert not torch.equal(there[NOTE][name], data[NOTE][name]), name
        assert torch.equal(again[NOTE][name], data[NOTE][name]), name
    assert torch.equal(there[NOTE].x, torch.from_numpy(transpose_piece(piece, k)["x"]))


def test_unrepresentable_shifts_are_refused_and_never_drawn() -> None:
    sharpest = hand_piece(["F#", "Bx"], [66, 73], fifths=7)  # seven sharps, a double sharp on B (19)
    assert allowed_shifts(sharpest["y_spelling"], sharpest["y_key"], max_fifths=14).max() == 0
    for k in (1, 3):
        with pytest.raises(ValueError, match="fifths"):
            transpose_piece(sharpest, k)
    flattest = hand_piece(["Fbb", "Cb"], [63, 59], fifths=-7)
    assert allowed_shifts(flattest["y_spelling"], flattest["y_key"], max_fifths=14).min() == 0
    with pytest.raises(ValueError, match="spelling"):
        transpose_spelling(flattest["y_spelling"], -1)
    with pytest.raises(ValueError, match="key"):
        transpose_key(flattest["y_key"], -1)
    both = hand_piece(["C", "Eb"], [60, 63], fifths=2)  # spellings 0, -3; key +2
    assert allowed_shifts(both["y_spelling"], both["y_key"]).tolist() == list(range(-9, 6))
    assert allowed_shifts(both["y_spelling"], both["y_key"], max_fifths=3).tolist() == list(range(-3, 4))
    assert allowed_shifts(pitch=[1, 120], max_fifths=14).tolist() == [k for k in range(-14, 15) if semitones(k) >= -1]

    graph = piece_to_data(_rest_of_contract(flattest) | flattest)
    transposer = Transposer(max_fifths=14, probability=1.0, seed=0)
    assert {transposer.draw(graph) for _ in range(200)} <= set(range(1, 15))  # never 0 or negative here
    edge = piece_to_data(_rest_of_contract(sharpest) | sharpest)
    assert {transposer.draw(edge) for _ in range(50)} <= set(range(-14, 0))


def _rest_of_contract(piece: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays ``piece_to_data`` needs besides those of :func:`hand_piece` (no edges, no candidates)."""
    n = piece["pitch"].size
    empty = np.zeros((2, 0), dtype=np.int64)
    out = {f"edges_{r}": empty for r in schema.RELATIONS}
    out |= {"voice_cand": empty, "chord_cand": empty, "y_voice": np.zeros(0, np.int8), "y_chord": np.zeros(0, np.int8)}
    out |= {f"y_{t}": np.zeros(n, np.int16) for t in schema.NODE_TASKS}
    out |= {"duration": np.ones(n), "bar_dur": np.full(int(piece["bar"].max()) + 1, 4.0)}
    return out


def test_the_transposer_is_seeded_leaves_its_input_alone_and_draws_the_declared_share() -> None:
    data = piece_to_data(fake_piece(120, seed=5))
    win = window(data, 10, 60)
    before = {k: v.clone() for k, v in data[NOTE].items()}
    a, b = Transposer(6, 0.5, seed=3), Transposer(6, 0.5, seed=3)
    draws = [a.draw(win) for _ in range(400)]
    assert draws == [b.draw(win) for _ in range(400)]
    assert 0.4 < np.mean(np.array(draws) != 0) < 0.6
    assert set(draws) - {0} <= set(data_shifts(win, 6).tolist()) - {0}
    assert all(Transposer(6, 0.0, seed=s)(win) is win for s in range(5))
    moved = Transposer(6, 1.0, seed=1)(win)
    assert not torch.equal(moved[NOTE].x, win[NOTE].x)
    for name, value in data[NOTE].items():  # the window's tensors are views of the piece's: untouched
        assert torch.equal(value, before[name]), name
    with pytest.raises(ValueError, match="max_fifths"):
        Transposer(15)


def test_augmented_batches_hold_the_same_windows() -> None:
    graphs = [piece_to_data(fake_piece(90, seed=s)) for s in range(3)]
    plain = list(iterate_batches(graphs, 40, 2, np.random.default_rng(0)))
    moved = list(iterate_batches(graphs, 40, 2, np.random.default_rng(0), Transposer(6, 1.0, seed=0)))
    assert len(plain) == len(moved)
    changed = 0
    for p, m in zip(plain, moved, strict=True):
        assert torch.equal(p[NOTE].node_id, m[NOTE].node_id) and torch.equal(p[NOTE].y_stem, m[NOTE].y_stem)
        changed += int(not torch.equal(p[NOTE].y_key, m[NOTE].y_key))
        known = p[NOTE].y_key >= 0
        shift = m[NOTE].y_key[known] - p[NOTE].y_key[known]
        assert shift.numel() == 0 or (shift.abs() <= 6).all()
    assert changed > 0


def test_train_gnn_takes_the_transpose_cfg() -> None:
    assert resolve_cfg({})["transpose"] == {"enabled": False, "max_fifths": 6, "probability": 0.5}
    assert resolve_cfg({"transpose": {"enabled": True}})["transpose"] == {
        "enabled": True, "max_fifths": 6, "probability": 0.5,
    }  # fmt: skip
    assert make_augment(resolve_cfg({})) is None
    assert isinstance(make_augment(resolve_cfg({"transpose": {"enabled": True}})), Transposer)

    tiny = {"hidden": 16, "layers": 1, "gru_layers": 1, "epochs": 2, "window": 40, "progress": False, "seed": 7}
    train, val = [fake_piece(60, seed=s) for s in range(2)], [fake_piece(40, seed=10)]
    off = train_gnn(train, val, tiny)
    off_explicit = train_gnn(train, val, {**tiny, "transpose": {"enabled": False, "max_fifths": 3}})
    assert off.history.drop(columns=["notes_per_s", "epoch_seconds"]).equals(
        off_explicit.history.drop(columns=["notes_per_s", "epoch_seconds"])
    )
    cfg = {**tiny, "transpose": {"enabled": True, "probability": 1.0}}
    on, again = train_gnn(train, val, cfg), train_gnn(train, val, cfg)
    timing = ["notes_per_s", "epoch_seconds"]
    assert on.history.drop(columns=timing).equals(again.history.drop(columns=timing))  # seeded
    assert not np.isclose(on.history["train_loss"].iloc[0], off.history["train_loss"].iloc[0])
    assert on.cfg["transpose"]["enabled"] is True
