"""Reading piano scores into note tables and labels (paper §2.2): hand-written MusicXML, kern and MEI."""

from __future__ import annotations

from pathlib import Path

import engraving_scores as es
import numpy as np
import pytest

from overseer.engraving import schema
from overseer.engraving.data.labels import node_labels, piece_from_table
from overseer.engraving.data.scores import load_score_table, one_line, zero_length_note
from overseer.errors import InputError

Q = es.Q


@pytest.fixture(scope="module")
def piano(tmp_path_factory) -> Path:
    return es.write(tmp_path_factory.mktemp("scores"), "piano.musicxml", es.piano_two_staves())


def spell(name: str) -> int:
    step, accidental = name[0], name[1:]
    return schema.spelling_index(step, {"": 0, "#": 1, "b": -1, "bb": -2, "x": 2}[accidental])


def test_piano_two_staves_note_table(piano: Path) -> None:
    t = load_score_table(piano)
    # sorted by (onset, pitch); the whole-note chord D3+A3 and C#5 start together
    np.testing.assert_allclose(
        t.onset, [0, 0, 0, 1, 2.5, 3, 4, 4, 5, 5 + 1 / 3, 5 + 2 / 3, 6, 8, 8.2, 8.4, 8.6, 8.8, 9], atol=1e-12
    )
    assert t.pitch.tolist() == [50, 57, 73, 76, 78, 74, 50, 74, 71, 70, 69, 67, 72, 74, 76, 77, 79, 69]
    np.testing.assert_allclose(t.duration[8:11], [1 / 3] * 3, rtol=0, atol=1e-15)  # snapped, not 0.33333333333333304
    assert t.staff.tolist() == [2, 2] + [1] * 4 + [2] + [1] * 11
    assert t.voice.tolist() == [5, 5] + [1] * 4 + [5] + [1] * 11
    names = ["D", "A", "C#", "E", "F#", "D", "D", "D", "B", "Bb", "A", "G", "C", "D", "E", "F", "G", "A"]
    assert t.spelling.tolist() == [spell(n) for n in names]
    # the D5 tied across the barline is two nodes
    assert t.tie_next.tolist() == [i == 5 for i in range(18)]
    assert t.tie_prev.tolist() == [i == 7 for i in range(18)]
    assert t.bar.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert t.bar_start.tolist() == [0.0, 4.0, 8.0] and t.bar_dur.tolist() == [4.0] * 3
    assert t.ts_num.tolist() == [4] * 3 and t.ts_den.tolist() == [4] * 3
    # the grace note is not a node but kept
    assert t.grace_onset.tolist() == [4.0] and t.grace_pitch.tolist() == [52]
    assert t.grace_staff.tolist() == [2] and t.grace_voice.tolist() == [5] and t.grace_spelling.tolist() == [spell("E")]


def test_piano_two_staves_labels(piano: Path) -> None:
    y = node_labels(load_score_table(piano))
    assert set(y) == {f"y_{task}" for task in schema.NODE_TASKS}
    assert all(v.dtype == np.int16 and v.shape == (18,) for v in y.values())
    assert (y["y_key"] == 2 + 7).all()  # D major
    assert y["y_staff"].tolist() == [1, 1] + [0] * 4 + [1] + [0] * 11
    # staff 1 switches to an F clef before the G4 (beat 3 of bar 2), back to G in bar 3
    assert y["y_clef"].tolist() == [1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1] + [0] * 6
    # stems: as notated; whole notes have none; bar 3 notes give no stem -> unknown
    assert y["y_stem"].tolist() == [2, 2, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0] + [-1] * 6
    # 8va (MusicXML octave-shift "down") from the triplet to the stop after the G4
    assert y["y_octave_shift"].tolist() == [0] * 8 + [1] * 4 + [0] * 6
    types = ["whole", "whole", "quarter", "quarter", "eighth", "quarter", "half", "quarter"]
    types += ["eighth"] * 3 + ["half"] + ["16th"] * 5 + ["half"]
    assert y["y_note_type"].tolist() == [schema.NOTE_TYPES.index(k) for k in types]
    assert y["y_dots"].tolist() == [0, 0, 0, 1] + [0] * 13 + [1]
    assert y["y_tuplet"].tolist() == [0] * 8 + [1, 1, 1] + [0] + [2] * 5 + [0]


def test_piano_two_staves_voice_and_chord_truth(piano: Path) -> None:
    piece = piece_from_table(load_score_table(piano))
    true_voice = set(map(tuple, piece["voice_cand"][:, piece["y_voice"] == 1].T.tolist()))
    # staff 1 within each bar; the D3+A3 chord has no successor in bar 1 (truth edges stay in their bar)
    assert true_voice == {(2, 3), (3, 4), (4, 5), (7, 8), (8, 9), (9, 10), (10, 11)} | {
        (i, i + 1) for i in range(12, 17)
    }
    chords = dict(zip(map(tuple, piece["chord_cand"].T.tolist()), piece["y_chord"].tolist(), strict=True))
    assert chords == {(0, 1): 1, (0, 2): 0, (1, 2): 0, (6, 7): 0}


def test_two_one_staff_parts_take_the_staff_from_the_part(tmp_path: Path) -> None:
    t = load_score_table(es.write(tmp_path, "two.musicxml", es.two_parts()))
    assert t.pitch.tolist() == [48, 76, 79, 43, 76]
    assert t.staff.tolist() == [2, 1, 1, 2, 1]
    assert t.clef.tolist() == [1, 0, 0, 1, 0]
    assert t.ts_num.tolist() == [3] and t.bar_dur.tolist() == [3.0]


def test_part_selection(tmp_path: Path) -> None:
    path = es.write(tmp_path, "song.musicxml", es.three_staves())
    with pytest.raises(InputError, match=r"song.musicxml: more than two staves \(Voice: 1, Piano: 2\)"):
        load_score_table(path)
    assert load_score_table(path, part="Piano").pitch.tolist() == [48, 64]
    assert load_score_table(path, part=1).n_notes == 2
    with pytest.raises(InputError, match="no part 'Cello'"):
        load_score_table(path, part="Cello")


def test_exotic_tuplet_is_unknown(tmp_path: Path) -> None:
    # a duplet in 6/8: two eighths in the time of three (2:3, not in TUPLET_RULE)
    bar = [es.note("C", 5, 3 * Q // 4, kind="eighth", tuplet=(2, 3), staff=1) for _ in range(2)]
    bar.append(es.note("E", 5, 3 * Q // 2, kind="quarter", dots=1, staff=1))
    t = load_score_table(es.write(tmp_path, "duplet.musicxml", es.simple_piano(*bar, beats=6, beat_type=8)))
    assert t.tuplet_actual.tolist() == [1, 2, 2, 1]  # the C3 of staff 2, the duplet, the E5
    assert node_labels(t)["y_tuplet"].tolist() == [0, -1, -1, 0]


def test_octave_shift_kinds(tmp_path: Path) -> None:
    notes = [
        es.octave_shift("up", 8),
        es.note("C", 4, Q, staff=1),
        es.octave_shift("stop", 8),
        es.octave_shift("down", 15),
        es.note("C", 6, Q, staff=1),
        es.octave_shift("stop", 15),
        es.octave_shift("up", 15),
        es.note("C", 5, Q, staff=1),
        es.octave_shift("stop", 15),
        es.note("C", 5, Q, staff=1),
    ]
    t = load_score_table(es.write(tmp_path, "ottava.musicxml", es.simple_piano(*notes)))
    # C3 (staff 2, none) | 8vb | 15ma | 15mb: not a class -> unknown | none
    assert t.octave_shift.tolist() == [0, 2, 3, -1, 0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("this is not music", "cannot parse score"),
        ("<score-partwise><part-list>", "cannot parse score"),
        (es.three_staves(), "more than two staves"),
        ("", "empty file"),
        ("  \n", "empty file"),
    ],
)
def test_bad_scores_raise_input_error(tmp_path: Path, text: str, reason: str) -> None:
    path = es.write(tmp_path, "bad.musicxml", text)
    with pytest.raises(InputError, match=reason) as info:
        load_score_table(path)
    assert str(path) in str(info.value)


def test_no_notes(tmp_path: Path) -> None:
    rests = es.simple_piano(es.note("", 0, 4 * Q, kind="whole", rest=True, staff=1)).replace(
        es.note("C", 3, 4 * Q, kind="whole", voice=5, staff=2),
        es.note("", 0, 4 * Q, kind="whole", voice=5, staff=2, rest=True),
    )
    with pytest.raises(InputError, match="no notes"):
        load_score_table(es.write(tmp_path, "rests.musicxml", rests))
    grace_only = es.simple_piano(es.note("D", 5, 0, grace=True, staff=1), es.note("", 0, 4 * Q, rest=True, staff=1))
    grace_only = grace_only.replace(
        es.note("C", 3, 4 * Q, kind="whole", voice=5, staff=2),
        es.note("", 0, 4 * Q, kind="whole", voice=5, staff=2, rest=True),
    )
    with pytest.raises(InputError, match="only grace notes"):
        load_score_table(es.write(tmp_path, "grace.musicxml", grace_only))


def test_one_staff_is_refused(tmp_path: Path) -> None:
    text = es.score(
        es.part("P1", es.measure(1, es.attributes(staves=1, clefs=(("G", 2),)), es.note("C", 4, 4 * Q, kind="whole")))
    )
    with pytest.raises(InputError, match="only one staff"):
        load_score_table(es.write(tmp_path, "one.musicxml", text))


def test_zero_length_note_is_dropped_not_the_piece(tmp_path: Path) -> None:
    text = es.simple_piano(es.note("C", 5, 0, staff=1), es.note("D", 5, 4 * Q, kind="whole", staff=1))
    table = load_score_table(es.write(tmp_path, "zero.musicxml", text))
    assert table.pitch.tolist() == [48, 74] and (table.duration == 4.0).all()
    assert table.zero_onset.tolist() == [0.0] and table.zero_pitch.tolist() == [72]
    assert zero_length_note(table) == "1 zero-length non-grace note dropped (the first at quarter 0, pitch 72)"
    rest = es.note("", 0, 4 * Q, kind="whole", staff=1, rest=True)
    only = es.simple_piano(es.note("C", 5, 0, staff=1), rest).replace(
        es.note("C", 3, 4 * Q, kind="whole", voice=5, staff=2), es.note("C", 3, 0, kind="whole", voice=5, staff=2)
    )
    with pytest.raises(InputError, match=r"no notes \(only grace notes and 2 zero-length notes\)"):
        load_score_table(es.write(tmp_path, "only_zero.musicxml", only))


def test_part_names_in_reasons_are_one_line(tmp_path: Path) -> None:
    text = es.three_staves().replace("<part-name>Voice</part-name>", "<part-name>Voice\n\n  and\n words</part-name>")
    with pytest.raises(InputError) as caught:
        load_score_table(es.write(tmp_path, "song.musicxml", text))
    assert "\n" not in str(caught.value) and "(Voice and words: 1, Piano: 2)" in str(caught.value)
    assert one_line("a\n\tb  c" + "x" * 400, limit=20) == "a b cxxxxxxxxxxxx..."


def test_time_signatures(tmp_path: Path) -> None:
    no_time = es.simple_piano(es.note("C", 5, 4 * Q, kind="whole", staff=1))
    no_time = no_time.replace("<time><beats>4</beats><beat-type>4</beat-type></time>", "")
    with pytest.raises(InputError, match="no time signature"):
        load_score_table(es.write(tmp_path, "free.musicxml", no_time))
    additive = no_time.replace("<staves>", "<time><beats>3+1</beats><beat-type>4</beat-type></time><staves>")
    with pytest.raises(InputError, match="no time signature"):
        load_score_table(es.write(tmp_path, "additive.musicxml", additive))
    odd = es.simple_piano(es.note("C", 5, 4 * Q * 3 // 5, kind="half", staff=1), beats=3, beat_type=5)
    with pytest.raises(InputError, match="unsupported time signature 3/5"):
        load_score_table(es.write(tmp_path, "odd.musicxml", odd))


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a score file"):
        load_score_table(es.write(tmp_path, "notes.txt", "C D E"))
    with pytest.raises(InputError, match="cannot read score"):
        load_score_table(tmp_path / "missing.musicxml")
    (tmp_path / "folder.musicxml").mkdir()
    with pytest.raises(InputError, match=r"folder\.musicxml: cannot read score \(Is a directory\)"):
        load_score_table(tmp_path / "folder.musicxml")


def test_not_kern_and_mei_errors_name_the_reason(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"x\.krn: not a Humdrum kern file \(no \*\*kern spine\)"):
        load_score_table(es.write(tmp_path, "x.krn", "C D E\n"))
    with pytest.raises(InputError, match=r"x\.mei: cannot parse score \(\w+: .+\)"):
        load_score_table(es.write(tmp_path, "x.mei", "<mei>"))


KERN = """**kern\t**kern
*staff2\t*staff1
*clefF4\t*clefG2
*k[f#]\t*k[f#]
*M3/4\t*M3/4
=1\t=1
2.D 2.A\t4d
.\t4f#
.\t4a
=2\t=2
2.G\t12e
.\t12g
.\t12b
.\t4cc#
.\t4dd
=\t=
*-\t*-
"""


def test_kern(tmp_path: Path) -> None:
    t = load_score_table(es.write(tmp_path, "a.krn", KERN))
    assert t.pitch.tolist() == [50, 57, 62, 66, 69, 55, 64, 67, 71, 73, 74]
    assert t.staff.tolist() == [2, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1]
    assert t.spelling[3] == spell("F#") and t.spelling[9] == spell("C#")
    assert (t.key == 1 + 7).all()
    assert t.tuplet_actual.tolist() == [1] * 6 + [3] * 3 + [1] * 2
    assert (t.stem == -1).all()  # kern via partitura gives no stems
    assert (t.octave_shift == 0).all()
    ottava = KERN.replace("=2\t=2\n", "=2\t=2\n*\t*8va\n")
    assert (load_score_table(es.write(tmp_path, "b.krn", ottava)).octave_shift == -1).all()


MEI = """<?xml version="1.0" encoding="UTF-8"?>
<mei xmlns="http://www.music-encoding.org/ns/mei" meiversion="4.0.1">
<meiHead><fileDesc><titleStmt><title>t</title></titleStmt><pubStmt/></fileDesc></meiHead>
<music><body><mdiv xml:id="d1"><score xml:id="s1">
<scoreDef xml:id="sd" meter.count="3" meter.unit="4" key.sig="1s">
<staffGrp xml:id="sg">
<staffDef xml:id="f1" n="1" lines="5" clef.shape="G" clef.line="2"/>
<staffDef xml:id="f2" n="2" lines="5" clef.shape="F" clef.line="4"/>
</staffGrp></scoreDef>
<section xml:id="sc">
<measure xml:id="m1" n="1">
<staff xml:id="m1s1" n="1"><layer xml:id="m1l1" n="1"><note xml:id="n1" pname="e" oct="5" dur="4"/>
<note xml:id="n2" pname="f" oct="5" accid.ges="s" dur="4"/><note xml:id="n3" pname="g" oct="5" dur="4"/></layer></staff>
<staff xml:id="m1s2" n="2"><layer xml:id="m1l2" n="1"><chord xml:id="c1" dur="2" dots="1">
<note xml:id="n4" pname="c" oct="3"/><note xml:id="n5" pname="g" oct="3"/></chord></layer></staff>
</measure>
<measure xml:id="m2" n="2">
<staff xml:id="m2s1" n="1"><layer xml:id="m2l1" n="1"><note xml:id="n6" pname="b" oct="4" accid="f" dur="2"/>
<note xml:id="n7" pname="a" oct="4" dur="4"/></layer></staff>
<staff xml:id="m2s2" n="2"><layer xml:id="m2l2" n="1">
<note xml:id="n8" pname="d" oct="3" dur="2" dots="1"/></layer></staff>
</measure>
</section></score></mdiv></body></music></mei>
"""


def test_mei(tmp_path: Path) -> None:
    t = load_score_table(es.write(tmp_path, "a.mei", MEI))
    assert t.pitch.tolist() == [48, 55, 76, 78, 79, 50, 70, 69]
    assert t.staff.tolist() == [2, 2, 1, 1, 1, 2, 1, 1]
    assert t.spelling[3] == spell("F#") and t.spelling[6] == spell("Bb")
    assert (t.key == 8).all()
    assert t.clef.tolist() == [1, 1, 0, 0, 0, 1, 0, 0]
    assert t.dots.tolist() == [1, 1, 0, 0, 0, 1, 0, 0]
    # without xml:ids partitura goes through verovio, which loses the key signature: unknown, not C major
    no_ids = load_score_table(es.write(tmp_path, "b.mei", MEI.replace(' xml:id="', ' data-id="')))
    assert no_ids.pitch.tolist() == t.pitch.tolist()
    assert (no_ids.key == -1).all()
