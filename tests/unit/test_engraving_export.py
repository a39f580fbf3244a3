"""Score export and the engrave function: MusicXML/MEI round trips, the read-back check, SVG, MIDI input."""

from __future__ import annotations

import warnings

import mido
import numpy as np
import partitura
import partitura.score as ps
import pytest
from engraving_truth import noisy, oracle, rich_piece, two_voice_bar
from lxml import etree

from overseer.engraving import engrave as eg
from overseer.engraving import export as ex
from overseer.engraving import postprocess as pp
from overseer.engraving import schema
from overseer.errors import InputError


def _load(path) -> list[ps.Part]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(partitura.load_score(str(path)).parts)


def _written_notes(parts: list[ps.Part]) -> np.ndarray:
    """(onset, duration, pitch, staff) of every written non-grace note (ties not merged), sorted.

    Onsets count from the first barline (partitura's quarter map puts a pickup before 0).
    """
    rows = []
    for p in parts:
        zero = p.quarter_map(next(p.iter_all(ps.Measure)).start.t)
        for n in p.iter_all(ps.Note):
            if not isinstance(n, ps.GraceNote):
                on, off = p.quarter_map(n.start.t) - zero, p.quarter_map(n.end.t) - zero
                rows.append((float(on), float(off - on), n.midi_pitch, n.staff))
    return np.array(sorted(rows))


def _truth_notes(piece: dict, res: dict) -> np.ndarray:
    rows = zip(piece["onset"], piece["duration"], piece["pitch"], res["staff"], strict=True)
    return np.array(sorted((float(a), float(b), int(c), int(d)) for a, b, c, d in rows))


@pytest.fixture(scope="module")
def rich_export(tmp_path_factory):
    piece = rich_piece()
    res = pp.postprocess(piece, oracle(piece))
    out = tmp_path_factory.mktemp("rich")
    return piece, res, ex.export_score(piece, res, out, "rich", pages=2)


def test_round_trip_keeps_notes_staves_and_signatures(rich_export):
    piece, res, written = rich_export
    want = _truth_notes(piece, res)
    xml_parts = _load(written["musicxml"])
    np.testing.assert_allclose(_written_notes(xml_parts), want, atol=1e-4)
    (part,) = xml_parts
    assert [k.fifths for k in part.iter_all(ps.KeySignature)] == [0, -3]
    assert [(t.beats, t.beat_type) for t in part.iter_all(ps.TimeSignature)] == [(3, 4), (6, 8)]
    clefs = [(c.staff, c.sign, float(part.quarter_map(c.start.t)) + 1) for c in part.iter_all(ps.Clef)]
    assert sorted(clefs) == [(1, "G", 0.0), (2, "F", 0.0), (2, "F", 13.0), (2, "G", 7.0)]  # +1: the pickup
    assert sum(1 for _ in part.iter_all(ps.GraceNote)) == 1
    shifts = list(part.iter_all(ps.OctaveShiftDirection))
    assert [(o.shift_type, o.shift_size, o.staff) for o in shifts] == [("down", 8, 1)]
    # voices as written: two in the lower staff of the 6/8 bar
    lower = {n.voice for n in part.iter_all(ps.Note) if n.staff == 2 and part.quarter_map(n.start.t) + 1 >= 13}
    assert len(lower) == 2
    # MEI: the double-dotted quarter is written as tied notes, so merge ties before comparing
    mei_parts = _load(written["mei"])
    got = np.concatenate([p.note_array(include_staff=True) for p in mei_parts])
    got = np.array(sorted(zip(got["onset_quarter"], got["duration_quarter"], got["pitch"], got["staff"], strict=True)))
    got[:, 0] -= got[0, 0]  # the pickup starts the piece
    np.testing.assert_allclose(got[got[:, 1] > 0], want, atol=1e-4)


def test_musicxml_carries_accidentals_beams_and_the_bracket(rich_export):
    _, _, written = rich_export
    root = etree.parse(str(written["musicxml"])).getroot()
    assert [s.text for s in root.iter("staves")] == ["2"]  # partitura repeats <staves> at clef changes
    assert {a.text for a in root.iter("accidental")} == {"sharp", "flat"}  # B#4, Cb5
    assert sorted(b.text for b in root.iter("beam")).count("begin") == 3
    assert [o.get("type") for o in root.iter("octave-shift")] == ["down", "stop"]


def test_mei_is_fixed_up(rich_export):
    _, _, written = rich_export
    root = etree.parse(str(written["mei"])).getroot()
    ns = {"m": ex.MEI_NS}
    assert root.xpath("//m:scoreDef[@key.sig='3f']", namespaces=ns)
    assert root.xpath("//m:note[@grace='acc']", namespaces=ns)
    assert {c.get("shape") for c in root.xpath("//m:layer/m:clef", namespaces=ns)} == {"G", "F"}
    assert root.xpath("//m:tuplet[@num='5'][@numbase='4']/m:beam", namespaces=ns)
    assert not root.xpath("//m:octave", namespaces=ns)  # octave shifts are left out of MEI (module docstring)


def test_svg_pages(rich_export, tmp_path):
    _, _, written = rich_export
    (svg,) = written["svg"]
    assert svg.name == "page-1.svg"
    text = svg.read_text()
    assert text.lstrip().startswith("<svg") and text.rstrip().endswith("</svg>")
    (tmp_path / "page-7.svg").write_text("old")
    pages = ex.render_svg(written["musicxml"], tmp_path, pages=2, options={"pageWidth": 1000, "pageHeight": 800})
    assert [p.name for p in pages] == ["page-1.svg", "page-2.svg"]  # 3 pages, the first 2 rendered
    assert not (tmp_path / "page-7.svg").exists()


@pytest.mark.parametrize("seed", range(3))
def test_noisy_predictions_still_export(seed, tmp_path):
    rng = np.random.default_rng(seed)
    piece = [two_voice_bar, rich_piece][seed % 2]()
    res = pp.postprocess(piece, noisy(piece, rng))
    written = ex.export_score(piece, res, tmp_path, "noisy", pages=1)
    np.testing.assert_allclose(_written_notes(_load(written["musicxml"])), _truth_notes(piece, res), atol=1e-4)


@pytest.mark.parametrize("fmt", ["musicxml", "mei"])
def test_readback_check_catches_a_broken_writer(fmt, tmp_path, monkeypatch):
    piece = two_voice_bar()
    res = pp.postprocess(piece, oracle(piece))
    target = tmp_path / f"x{ex.SUFFIX[fmt]}"
    target.write_text("an older score")
    module = getattr(ex, fmt)  # the writer's module: its part-to-bytes function is broken
    writer = getattr(module, f"{fmt}_from_part")

    def drop_a_note(*args):
        return _drop_first_note(writer(*args))

    monkeypatch.setattr(module, f"{fmt}_from_part", drop_a_note)
    with pytest.raises(ex.ExportError, match="read back") as info:
        ex.export_score(piece, res, tmp_path, "x", formats=(fmt,), pages=0)
    assert str(info.value).startswith(f"{target}: ")  # the file it was to be, not its temporary name
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def _drop_first_note(data: bytes) -> bytes:
    root = etree.fromstring(data)
    note = next(el for el in root.iter("{*}note") if el.find("{*}grace") is None and el.get("grace") is None)
    note.getparent().remove(note)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize("fmt", ["musicxml", "mei"])
def test_each_writer_builds_its_part_once(fmt, tmp_path, monkeypatch):
    piece = two_voice_bar()
    res = pp.postprocess(piece, oracle(piece))
    module = getattr(ex, fmt)
    built = []

    def counting_build_part(*args, **kwargs):
        built.append(kwargs)
        return ex.build_part(*args, **kwargs)

    monkeypatch.setattr(module, "build_part", counting_build_part)
    getattr(ex, f"write_{fmt}")(piece, res, tmp_path / f"x{ex.SUFFIX[fmt]}")
    assert len(built) == 1  # the same part gives the bytes and the read-back table


def test_unreadable_output_is_an_export_error(tmp_path, monkeypatch):
    piece = two_voice_bar()
    res = pp.postprocess(piece, oracle(piece))
    monkeypatch.setattr(ex.musicxml, "musicxml_from_part", lambda *args: b"<score-partwise><part-list/>")
    with pytest.raises(ex.ExportError, match="cannot read"):
        ex.write_musicxml(piece, res, tmp_path / "x.musicxml")
    assert list(tmp_path.iterdir()) == []


# --- engrave ---------------------------------------------------------------------------------------------------


def _write_midi(path, notes, tpq=480, time_sig=(3, 4)):
    mid = mido.MidiFile(ticks_per_beat=tpq)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("time_signature", numerator=time_sig[0], denominator=time_sig[1], time=0))
    events = sorted(
        [(round(on * tpq), 1, p) for on, _, p in notes] + [(round((on + d) * tpq), 0, p) for on, d, p in notes]
    )
    now = 0
    for tick, kind, p in events:
        track.append(mido.Message("note_on", note=p, velocity=64 if kind else 0, time=tick - now))
        now = tick
    mid.save(path)


MIDI_NOTES = [
    (0, 1, 72), (1, 0.5, 74), (1.5, 0.5, 76), (2, 2.5, 77),  # F5 crosses the barline
    (0, 3, 48), (0, 3, 55), (3, 3, 50),
    (4.5, 1 / 3, 79), (4.5 + 1 / 3, 1 / 3, 81), (4.5 + 2 / 3, 1 / 3, 83),
    (6, 1.25, 84),  # not one symbol: quarter tied to a 16th
]  # fmt: skip


def test_engrave_midi_writes_every_output(tmp_path):
    src = tmp_path / "tiny.mid"
    _write_midi(src, MIDI_NOTES)
    rng = np.random.default_rng(0)
    calls = []

    def predict(piece):
        calls.append(piece["onset"].size)
        return noisy(piece, rng)

    with warnings.catch_warnings():
        warnings.simplefilter("error", eg.QuantizeWarning)  # quantized: nothing moves
        out = eg.engrave(src, None, tmp_path / "out", predict_fn=predict)
    assert out["musicxml"].name == "tiny.musicxml" and out["mei"].name == "tiny.mei"
    assert out["midi"]["grid"] == 12 and not out["midi"]["snapped"] and out["sounding_notes"] == 11
    assert [p.name for p in out["svg"]] == ["page-1.svg"]
    assert calls == [13] and out["notes"] == 13 and out["bars"] == 3  # two notes split into tied pairs
    # the tied pieces read back as the MIDI's notes
    for fmt in ("musicxml", "mei"):
        na = np.concatenate([p.note_array() for p in _load(out[fmt])])
        got = sorted(
            zip(np.round(na["onset_quarter"], 4), np.round(na["duration_quarter"], 4), na["pitch"], strict=True)
        )
        want = sorted((round(a, 4), round(b, 4), c) for a, b, c in MIDI_NOTES)
        assert got == want, fmt


def test_engrave_a_score_with_oracle_predictions(rich_export, tmp_path):
    piece, res, written = rich_export
    out = eg.engrave(written["musicxml"], None, tmp_path, predict_fn=oracle, name="again", pages=0)
    assert out["svg"] == [] and out["octave_brackets"] == 1 and out["clef_changes"] == 2
    np.testing.assert_allclose(_written_notes(_load(out["musicxml"])), _truth_notes(piece, res), atol=1e-4)
    read = eg.read_piece(written["musicxml"])
    for task in ("staff", "spelling", "key", "clef", "octave_shift", "note_type", "dots", "tuplet"):
        np.testing.assert_array_equal(read[f"y_{task}"], piece[f"y_{task}"], err_msg=task)


def test_engrave_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        eg.engrave(tmp_path / "missing.mid", None, tmp_path, predict_fn=oracle)
    bad = tmp_path / "bad.mid"
    bad.write_text("not a midi file")
    with pytest.raises(InputError, match=r"bad\.mid"):
        eg.engrave(bad, None, tmp_path, predict_fn=oracle)
    text = tmp_path / "notes.txt"
    text.write_text("C D E")
    with pytest.raises(InputError, match="not a score or MIDI file"):
        eg.engrave(text, None, tmp_path, predict_fn=oracle)
    with pytest.raises(InputError, match="cannot load the engraving model"):
        eg.model_predict_fn(tmp_path / "no-model")
    src = tmp_path / "ok.mid"
    _write_midi(src, MIDI_NOTES)
    with pytest.raises(ValueError, match="logits_staff"):
        eg.engrave(src, None, tmp_path / "never", predict_fn=lambda piece: {})
    assert not (tmp_path / "never").exists()


def test_engrave_a_prepared_piece(tmp_path):
    path = schema.save_piece(tmp_path / "rich.npz", rich_piece())
    out = eg.engrave_piece(schema.load_piece(path), oracle, tmp_path / "out", "rich", formats=("mei",), pages=1)
    assert set(out) >= {"mei", "svg"} and "musicxml" not in out
    assert out["svg"][0].parent == tmp_path / "out" and out["notes"] == 35 and out["max_voices"] == 2


# --- MIDI timing: own grid, performed timing, repeated notes -------------------------------------------------


def _ticks_midi(path, notes, tpq=480):
    """A MIDI file of (onset, duration, pitch) in ticks, 4/4; a None duration leaves the note unclosed."""
    mid = mido.MidiFile(ticks_per_beat=tpq)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    events = [(on, 1, p) for on, _, p in notes] + [(on + d, 0, p) for on, d, p in notes if d is not None]
    now = 0
    for tick, kind, pitch in sorted(events):
        track.append(mido.Message("note_on", note=pitch, velocity=64 * kind, time=tick - now))
        now = tick
    mid.save(path)
    return path


@pytest.mark.parametrize(
    ("notes", "grid"),
    [
        ([(0, 480, 60), (480, 240, 62), (720, 240, 64)], 4),  # quarters and eighths: sixteenths at the least
        ([(0, 160, 60), (160, 160, 62), (320, 160, 64), (480, 480, 65)], 12),  # eighth triplets
        ([(0, 60, 60), (60, 60, 62), (120, 360, 64)], 8),  # 32nds
        ([(0, 480, 60), (480, 456, 62), (960, 240, 64)], 4),  # an offset 24 ticks early: snapped to the onsets' grid
    ],
)
def test_a_quantized_file_keeps_its_own_grid(tmp_path, notes, grid):
    got = eg.read_midi(_ticks_midi(tmp_path / "q.mid", notes))
    assert got.grid == grid and not got.snapped and got.onsets_moved == 0
    np.testing.assert_array_equal(got.onset, [on / 480 for on, _, _ in notes])
    if notes[1][1] == 456:
        assert got.duration.tolist() == [1.0, 1.0, 0.5] and got.offsets_moved == 1
        assert "1 of 3 offsets moved onto the onsets' 1/4-quarter grid" in got.warning()
    else:
        np.testing.assert_array_equal(got.duration, [d / 480 for _, d, _ in notes])
        assert got.warning() is None


def test_performed_timing_is_snapped_to_sixteenths(tmp_path):
    # 0, 1/4, 1/2, 1 quarter played 13, 7, 29 and 41 ticks off (480 per quarter)
    notes = [(13, 100, 60), (113, 130, 62), (269, 200, 64), (439, 500, 65)]
    got = eg.read_midi(_ticks_midi(tmp_path / "p.mid", notes))
    assert got.grid == 4 and got.snapped and not got.asked
    assert got.onset.tolist() == [0, 0.25, 0.5, 1.0] and got.duration.tolist() == [0.25, 0.25, 0.5, 1.0]
    assert got.onsets_moved == 4 and got.max_onset_shift == pytest.approx(41 / 480)
    assert got.warning().startswith(
        "not quantized (onsets on no grid of 1/4 to 1/48 quarter): snapped to a 1/4-quarter"
    )
    assert "4 of 4 onsets moved by at most 0.0854 quarter" in got.warning()
    asked = eg.read_midi(tmp_path / "p.mid", grid=2)
    assert asked.grid == 2 and asked.asked and asked.onset.tolist() == [0, 0, 0.5, 1.0]
    assert asked.warning().startswith("snapped to the 1/2-quarter grid (eighth notes): 4 of 4 onsets")
    with pytest.raises(InputError, match="grid 5: expected one of 1, 2, 3, 4, 6, 8, 12, 16, 24, 48"):
        eg.read_midi(tmp_path / "p.mid", grid=5)


def test_repeated_notes_never_merge_and_one_key_sounds_at_a_time(tmp_path):
    # two C5 strikes 53 ticks apart (one sixteenth point), a D5 held into its own repeat, a doubled E5
    notes = [(0, 40, 72), (53, 400, 72), (480, 700, 74), (960, 480, 74), (1440, 480, 76), (1440, 240, 76)]
    notes += [(7, None, 48)]  # never released
    got = eg.read_midi(_ticks_midi(tmp_path / "r.mid", notes))
    assert got.snapped and got.read == 6 and got.notes == 5 and got.duplicates == 1 and got.unclosed == 1
    rows = sorted(zip(got.onset.tolist(), got.duration.tolist(), got.pitch.tolist(), strict=True))
    assert rows == [(0.0, 0.25, 72), (0.25, 0.75, 72), (1.0, 1.0, 74), (2.0, 1.0, 74), (3.0, 1.0, 76)]
    assert "1 notes dropped: struck at the same pitch and onset as a longer note" in got.warning()
    assert "1 note-ons without a note-off dropped" in got.warning()


def test_engrave_a_performed_file_warns_and_writes_every_note(tmp_path):
    rng = np.random.default_rng(3)
    notes = [(int(i * 240 + rng.integers(-50, 50)) if i else 0, 200, 60 + (7 * i) % 24) for i in range(24)]
    src = _ticks_midi(tmp_path / "played.mid", notes)
    with pytest.warns(eg.QuantizeWarning, match=r"played\.mid: not quantized .* onsets moved by at most"):
        out = eg.engrave(src, None, tmp_path / "out", predict_fn=oracle, pages=0)
    assert out["midi"]["snapped"] and out["sounding_notes"] == 24
    for fmt in ("musicxml", "mei"):
        assert sum(p.note_array().size for p in _load(out[fmt])) == 24, fmt


# --- output: staged, nothing left on failure -------------------------------------------------------------------


def test_staged_output_keeps_other_files_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError, match="half-way"), eg.staged_output(out) as tmp:
        (tmp / "x.musicxml").write_text("half")
        raise RuntimeError("half-way")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its parents nor the staging folder
    with eg.staged_output(out) as tmp:
        (tmp / "x.musicxml").write_text("new")
    (out / "mine.txt").write_text("mine")
    with eg.staged_output(out) as tmp:
        (tmp / "x.musicxml").write_text("newer")
    assert (out / "x.musicxml").read_text() == "newer" and (out / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "mine.txt", "x.musicxml"]
    with pytest.raises(InputError, match="the output folder is a file"), eg.staged_output(out / "mine.txt"):
        pass


def test_engrave_piece_writes_final_paths_and_drops_stale_pages(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "page-9.svg").write_text("old")
    (out / "notes.txt").write_text("mine")
    got = eg.engrave_piece(rich_piece(), oracle, out, "rich", pages=1)
    assert got["musicxml"] == out / "rich.musicxml" and got["svg"] == [out / "page-1.svg"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "page-1.svg", "rich.mei", "rich.musicxml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(InputError, match="pages -1: expected a whole number >= 0"):
        eg.engrave_piece(rich_piece(), oracle, out, "rich", pages=-1)
    with pytest.raises(InputError, match=r"formats \['pdf'\]: expected some of musicxml, mei"):
        eg.engrave_piece(rich_piece(), oracle, out, "rich", formats=("pdf",))


def test_engrave_pieces_takes_keyword_options(tmp_path, monkeypatch):
    import overseer.engraving.predict as predict

    monkeypatch.setattr(predict, "predict_piece", lambda model, piece: oracle(piece))
    pieces = [("a", two_voice_bar()), ("b", rich_piece())]
    got = eg.engrave_pieces(None, pieces, tmp_path, formats=["mei"], pages=0, threshold=0.5, min_clef_run=4)
    assert got == {"a": {"files": ["a.mei"], "notes": 15}, "b": {"files": ["b.mei"], "notes": 35}}
    with pytest.raises(TypeError):
        eg.engrave_pieces(None, pieces, tmp_path, {"formats": ["mei"], "pages": 0})  # no params dict any more
