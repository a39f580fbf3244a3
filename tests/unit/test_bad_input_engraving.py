"""`overseer engrave` on bad or awkward input (issue 10), through the CLI's main in-process.

Every bad input exits 2 with a message naming the user's file (or option), without a traceback,
and leaves nothing in (or as) the --out folder: no folder, no empty folder, no temporary file
beside it. A MIDI file with performed timing is quantized, with a warning, and every one of its
notes is written.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import engraving_scores as es
import mido
import numpy as np
import partitura
import pytest

from overseer.cli import MIDI_GRIDS, main
from overseer.engraving import engrave as eg
from overseer.engraving.export import readback

TPQ = 480


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny untrained EngravingGNN saved as `overseer engrave --model` expects it."""
    from overseer.engraving.model import EngravingGNN, ModelConfig
    from overseer.engraving.train import save_model

    folder = tmp_path_factory.mktemp("model") / "model"
    save_model(EngravingGNN(ModelConfig(hidden=16, layers=1, gru_layers=1)), folder)
    return folder


def write_midi(path: Path, notes, *, channel: int = 0, close: bool = True) -> Path:
    """A type-0 MIDI file of (onset, duration, pitch) notes given in ticks of 1/TPQ quarter, 4/4."""
    mid = mido.MidiFile(ticks_per_beat=TPQ)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    events = [(on, 1, p) for on, _, p in notes] + ([(on + d, 0, p) for on, d, p in notes] if close else [])
    now = 0
    for tick, kind, pitch in sorted(events):
        track.append(mido.Message("note_on", channel=channel, note=pitch, velocity=64 * kind, time=tick - now))
        now = tick
    mid.save(path)
    return path


def run(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and stdout+stderr of `overseer engrave ARGV` (argparse errors exit through SystemExit)."""
    try:
        code = main(["engrave", *map(str, argv)])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_refused(capsys, out: Path, *argv, names: str, says: str) -> str:
    """Exit 2, the message names ``names`` and says ``says``, no traceback, nothing at or beside ``out``."""
    code, text = run(capsys, *argv, "--out", out)
    assert code == 2, text
    assert names in text and says in text, text
    assert "Traceback" not in text
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no staging folder
    return text


def read_back(path: Path) -> list[tuple[float, float, int]]:
    """(onset, duration, pitch) of every note partitura reads from a written score (tied parts as one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        na = np.concatenate([p.note_array() for p in partitura.load_score(str(path)).parts])
    return sorted(
        zip(
            np.round(na["onset_quarter"], 6).tolist(),
            np.round(na["duration_quarter"], 6).tolist(),
            na["pitch"].tolist(),
            strict=True,
        )
    )


# --- a performed MIDI file: quantized, every note written -------------------------------------------------


def performed(rng: np.random.Generator) -> tuple[list, list, np.ndarray]:
    """A 120-note score (80 eighths over 40 quarters, 10 bars of 4/4), its performance in ticks and
    how far each onset was played from the score's (ticks).

    Onsets are played up to 0.1 quarter early or late and offsets 0.08 early to 0.03 late: off
    every grid, but each within a 32nd of its sixteenth, so quantizing gives the score back.
    """
    score = [(i * 0.5, 0.5, 60 + (5 * i) % 24) for i in range(80)]
    score += [(i * 1.0, 1.0, 36 + (7 * i) % 12) for i in range(40)]
    played, shift = [], []
    for on, dur, pitch in score:
        start = round((on + rng.uniform(-0.1, 0.1) if on > 0 else rng.uniform(0, 0.1)) * TPQ)
        end = round((on + dur + rng.uniform(-0.08, 0.03)) * TPQ)
        played.append((start, end - start, pitch))
        shift.append(abs(start - round(on * TPQ)))
    return sorted(score), played, np.array(shift)


def test_performed_midi_is_quantized_to_sixteenths_and_every_note_is_written(capsys, model, tmp_path) -> None:
    score, played, shift = performed(np.random.default_rng(10))
    src = write_midi(tmp_path / "played.mid", played)
    out = tmp_path / "out"
    code, text = run(capsys, src, "--model", model, "--out", out, "--pages", "0")
    assert code == 0, text
    assert "Traceback" not in text
    assert "engraved 120 notes" in text
    # the warning names the file, the grid and how many onsets moved how far
    found = re.search(
        r"warning: (\S+): not quantized .*1/4-quarter grid \(sixteenth notes\): (\d+) of 120 onsets moved by at most "
        r"([\d.]+) quarter",
        text,
    )
    assert found, text
    assert found[1] == str(src)
    assert int(found[2]) == int((shift > 1).sum()) and int(found[2]) > 100
    assert float(found[3]) == pytest.approx(shift.max() / TPQ, rel=1e-2) and float(found[3]) <= 0.125
    # both scores hold the 120 notes of the score, onsets and lengths exactly
    for name in ("played.musicxml", "played.mei"):
        assert read_back(out / name) == score, name
    assert sorted(p.name for p in out.iterdir()) == ["played.mei", "played.musicxml"]


def test_performed_midi_as_mei_only_counts_notes_not_tied_parts(capsys, model, tmp_path) -> None:
    _, played, _ = performed(np.random.default_rng(11))
    src = write_midi(tmp_path / "played.mid", played)
    out = tmp_path / "out"
    code, text = run(capsys, src, "--model", model, "--out", out, "--formats", "mei", "--pages", "1", "--grid", "12")
    assert code == 0, text
    assert "engraved 120 notes" in text and "1/12-quarter grid (32nd-note triplets)" in text
    assert len(read_back(out / "played.mei")) == 120
    assert sorted(p.name for p in out.iterdir()) == ["page-1.svg", "played.mei"]


def test_the_cli_grids_are_the_engravers() -> None:
    assert MIDI_GRIDS == eg.GRIDS


# --- bad MIDI files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (np.random.default_rng(0).bytes(300), "not a Standard MIDI File: header is not MThd"),
        (b"C D E F G, a text file renamed\n", "not a Standard MIDI File: header is not MThd (it starts with b'C D '"),
        (b"", "not a Standard MIDI File: header is not MThd (the file is empty)"),
        (b"MThd\x00\x00\x00\x06\x00\x01", "cannot read MIDI file (EOFError: the file ends inside a chunk (truncated))"),
    ],
    ids=["random-bytes", "text", "empty", "truncated"],
)
def test_garbage_midi(capsys, model, tmp_path, content: bytes, says: str) -> None:
    src = tmp_path / "garbage.mid"
    src.write_bytes(content)
    assert_refused(capsys, tmp_path / "out", src, "--model", model, names=str(src), says=says)


def test_truncated_track_gives_the_reason(capsys, model, tmp_path) -> None:
    good = write_midi(tmp_path / "good.mid", [(0, TPQ, 60)]).read_bytes()
    src = tmp_path / "cut.mid"
    src.write_bytes(good[:-6])
    text = assert_refused(
        capsys, tmp_path / "out", src, "--model", model, names=str(src), says="cannot read MIDI file ("
    )
    assert "cannot read MIDI file ()" not in text


@pytest.mark.parametrize(
    ("patch", "says"),
    [
        (lambda b: b[:12] + b"\xe7\x28" + b[14:], "SMPTE timing (frames per second) is not supported"),
        (lambda b: b.replace(b"\xff\x58\x04\x04", b"\xff\x58\x04\x00"), "time signature 0/4 at tick 0"),
    ],
    ids=["smpte", "zero-beats"],
)
def test_midi_timing_that_cannot_be_engraved(capsys, model, tmp_path, patch, says: str) -> None:
    src = write_midi(tmp_path / "odd.mid", [(0, TPQ, 60)])
    src.write_bytes(patch(src.read_bytes()))
    assert_refused(capsys, tmp_path / "out", src, "--model", model, names=str(src), says=says)


@pytest.mark.parametrize(
    ("notes", "kwargs", "says"),
    [
        ([], {}, "no notes (percussion, channel 10, excluded)"),
        ([(0, TPQ, 36), (TPQ, TPQ, 38)], {"channel": 9}, "no notes (percussion, channel 10, excluded)"),
        ([(0, TPQ, 60), (TPQ, TPQ, 62)], {"close": False}, "no notes (2 note-ons without a note-off)"),
    ],
    ids=["empty", "drums-only", "no-note-offs"],
)
def test_midi_without_notes(capsys, model, tmp_path, notes, kwargs, says: str) -> None:
    src = write_midi(tmp_path / "silent.mid", notes, **kwargs)
    assert_refused(capsys, tmp_path / "out", src, "--model", model, names=str(src), says=says)


# --- bad scores and paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("three.musicxml", es.three_staves(), "more than two staves (Voice: 1, Piano: 2); a piano score has two"),
        ("empty.musicxml", "", "empty file"),
        ("garbage.musicxml", "this is not music", "cannot parse score (XMLSyntaxError"),
        ("garbage.krn", "C D E\n", "not a Humdrum kern file (no **kern spine)"),
        ("garbage.mei", "<mei>", "cannot parse score ("),
        ("notes.txt", "C D E", "not a score or MIDI file (expected one of .musicxml"),
    ],
)
def test_bad_scores(capsys, model, tmp_path, name: str, text: str, says: str) -> None:
    src = es.write(tmp_path, name, text)
    assert_refused(capsys, tmp_path / "out", src, "--model", model, names=str(src), says=says)


def test_one_staff_score(capsys, model, tmp_path) -> None:
    one = es.score(
        es.part(
            "P1", es.measure(1, es.attributes(staves=1, clefs=(("G", 2),)), es.note("C", 4, 4 * es.Q, kind="whole"))
        )
    )
    src = es.write(tmp_path, "one.musicxml", one)
    assert_refused(capsys, tmp_path / "out", src, "--model", model, names=str(src), says="only one staff")


def test_an_empty_folder_is_refused(capsys, model, tmp_path) -> None:
    """A folder is a batch (tests/unit/test_engraving_corpus.py); one without scores or MIDI files is bad input."""
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a score")
    assert_refused(capsys, tmp_path / "out", empty, "--model", model, names=str(empty),
                   says="no score or MIDI files to engrave")  # fmt: skip


def test_missing_score(capsys, model, tmp_path) -> None:
    src = tmp_path / "missing.mid"
    assert_refused(capsys, tmp_path / "out", src, "--model", model, names=str(src), says="no such file")


def test_missing_or_broken_model(capsys, tmp_path) -> None:
    src = write_midi(tmp_path / "ok.mid", [(0, TPQ, 60), (0, TPQ, 48)])
    missing = tmp_path / "no-model"
    assert_refused(capsys, tmp_path / "out", src, "--model", missing, names=str(missing),
                   says="--model: no trained EngravingGNN here")  # fmt: skip
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model": {"hidden": 16}}')
    (broken / "model.pt").write_text("not weights")
    assert_refused(capsys, tmp_path / "out", src, "--model", broken, names=str(broken),
                   says="cannot load the engraving model (model.pt is not a saved state dict)")  # fmt: skip
    (broken / "config.json").write_text("{")
    assert_refused(capsys, tmp_path / "out", src, "--model", broken, names=str(broken),
                   says="cannot load the engraving model (JSONDecodeError")  # fmt: skip


def test_out_is_a_file(capsys, model, tmp_path) -> None:
    src = write_midi(tmp_path / "ok.mid", [(0, TPQ, 60), (0, TPQ, 48)])
    out = tmp_path / "taken"
    out.write_text("mine")
    code, text = run(capsys, src, "--model", model, "--out", out)
    assert code == 2 and f"{out}: the output folder is a file" in text and "Traceback" not in text
    assert out.read_text() == "mine"


# --- bad options -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--pages", "-1"], "argument --pages: -1: expected 0 or more SVG pages (0: none)"),
        (["--pages", "two"], "argument --pages: 'two' is not a whole number"),
        (["--formats", "pdf"], "argument --formats: invalid choice: 'pdf' (choose from 'musicxml', 'mei')"),
        (["--formats"], "argument --formats: expected at least one argument"),
        (["--grid", "5"], "argument --grid: invalid choice: 5 (choose from 1, 2, 3, 4, 6, 8, 12, 16, 24, 48)"),
    ],
)
def test_bad_options(capsys, model, tmp_path, option: list[str], says: str) -> None:
    src = write_midi(tmp_path / "ok.mid", [(0, TPQ, 60), (0, TPQ, 48)])
    assert_refused(capsys, tmp_path / "out", src, "--model", model, *option, names=option[0], says=says)


def test_zero_pages_is_allowed(capsys, model, tmp_path) -> None:
    src = write_midi(tmp_path / "ok.mid", [(0, TPQ, 60), (0, TPQ, 48)])
    code, text = run(capsys, src, "--model", model, "--out", tmp_path / "out", "--pages", "0", "--formats", "mei")
    assert code == 0, text
    assert "warning" not in text  # a quantized file: nothing moved
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.mei"]


# --- an export that does not read back: exit 1, the final path named, nothing written --------------------


def test_an_export_failure_names_the_file_and_leaves_nothing(capsys, model, tmp_path, monkeypatch) -> None:
    def fail(path, expected):
        raise readback.ExportError(f"{path}: read back 1 notes, wrote {expected[0].shape[0]}")

    monkeypatch.setattr(readback, "check_readback", fail)
    src = write_midi(tmp_path / "ok.mid", [(0, TPQ, 60), (0, TPQ, 48)])
    out = tmp_path / "out"
    code, text = run(capsys, src, "--model", model, "--out", out)
    assert code == 1 and "Traceback" not in text
    assert f"overseer: error: {out / 'ok.musicxml'}: read back 1 notes, wrote 2" in text, text
    assert ".ok.musicxml" not in text and ".out." not in text  # no temporary name
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["ok.mid"]
