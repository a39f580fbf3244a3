"""Small hand-written MusicXML scores for the engraving tests (shared: other tests may import them).

``note``/``measure``/``part``/``score`` build MusicXML 4.0 partwise text; ``write`` puts it in a
file. Durations are in divisions with ``DIVISIONS`` per quarter (120: exact for 32nds, triplets,
quintuplets and duplets). The ready-made scores below are documented note by note so the tests
can state what every label must be.
"""

from __future__ import annotations

from pathlib import Path

DIVISIONS = 120
Q = DIVISIONS  # one quarter


def note(
    step: str,
    octave: int,
    duration: int,
    *,
    alter: int | None = None,
    kind: str = "quarter",
    dots: int = 0,
    voice: int = 1,
    staff: int | None = None,
    chord: bool = False,
    tie: str | None = None,  # "start", "stop" or "both"
    stem: str | None = None,
    grace: bool = False,
    tuplet: tuple[int, int] | None = None,  # (actual, normal)
    rest: bool = False,
) -> str:
    """One <note>; a grace note has no duration."""
    parts = ["<note>"]
    if grace:
        parts.append('<grace slash="yes"/>')
    if chord:
        parts.append("<chord/>")
    if rest:
        parts.append("<rest/>")
    else:
        alter_xml = f"<alter>{alter}</alter>" if alter is not None else ""
        parts.append(f"<pitch><step>{step}</step>{alter_xml}<octave>{octave}</octave></pitch>")
    if not grace:
        parts.append(f"<duration>{duration}</duration>")
    ties = {"start": ["start"], "stop": ["stop"], "both": ["stop", "start"]}.get(tie or "", [])
    parts += [f'<tie type="{t}"/>' for t in ties]
    parts.append(f"<voice>{voice}</voice><type>{kind}</type>")
    parts += ["<dot/>"] * dots
    if tuplet:
        parts.append(
            f"<time-modification><actual-notes>{tuplet[0]}</actual-notes>"
            f"<normal-notes>{tuplet[1]}</normal-notes></time-modification>"
        )
    if stem:
        parts.append(f"<stem>{stem}</stem>")
    if staff is not None:
        parts.append(f"<staff>{staff}</staff>")
    if ties:
        parts.append("<notations>" + "".join(f'<tied type="{t}"/>' for t in ties) + "</notations>")
    parts.append("</note>")
    return "".join(parts)


def backup(duration: int) -> str:
    return f"<backup><duration>{duration}</duration></backup>"


def attributes(
    *,
    fifths: int | None = 0,
    beats: int | None = 4,
    beat_type: int = 4,
    staves: int = 2,
    clefs: tuple[tuple[str, int], ...] = (("G", 2), ("F", 4)),
    divisions: int | None = DIVISIONS,
) -> str:
    xml = ["<attributes>"]
    if divisions:
        xml.append(f"<divisions>{divisions}</divisions>")
    if fifths is not None:
        xml.append(f"<key><fifths>{fifths}</fifths></key>")
    if beats is not None:
        xml.append(f"<time><beats>{beats}</beats><beat-type>{beat_type}</beat-type></time>")
    if staves > 1:
        xml.append(f"<staves>{staves}</staves>")
    for i, (sign, line) in enumerate(clefs, start=1):
        number = f' number="{i}"' if staves > 1 else ""
        xml.append(f"<clef{number}><sign>{sign}</sign><line>{line}</line></clef>")
    xml.append("</attributes>")
    return "".join(xml)


def clef_change(sign: str, line: int, staff: int) -> str:
    return f'<attributes><clef number="{staff}"><sign>{sign}</sign><line>{line}</line></clef></attributes>'


def octave_shift(kind: str, size: int = 8, staff: int = 1) -> str:
    """A <direction> with <octave-shift type=kind> (MusicXML: an 8va is type "down")."""
    return (
        f'<direction><direction-type><octave-shift type="{kind}" size="{size}"/></direction-type>'
        f"<staff>{staff}</staff></direction>"
    )


def measure(number: int, *content: str) -> str:
    return f'<measure number="{number}">{"".join(content)}</measure>'


def part(part_id: str, *measures: str) -> str:
    return f'<part id="{part_id}">{"".join(measures)}</part>'


def score(*parts: str, names: tuple[str, ...] | None = None) -> str:
    ids = [p.split('"')[1] for p in parts]
    names = names or tuple("Piano" for _ in ids)
    part_list = "".join(
        f'<score-part id="{i}"><part-name>{n}</part-name></score-part>' for i, n in zip(ids, names, strict=True)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<score-partwise version="4.0">'
        f"<part-list>{part_list}</part-list>{''.join(parts)}</score-partwise>"
    )


def write(folder: Path, name: str, text: str) -> Path:
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- ready-made scores ----------------------------------------------------------------------------


def piano_two_staves() -> str:
    """One part, two staves, 4/4, key D major (fifths 2), three bars.

    Bar 1, staff 1 (voice 1): C#5 quarter (stem up) | E5 dotted quarter (stem down) | F#5 eighth |
      D5 quarter tied to the next bar. Staff 2 (voice 5): a D3+A3 whole-note chord.
    Bar 2, staff 1: D5 quarter (tie stop) | triplet eighths B4 Bb4 A4 (stem up) | G4 half after a
      clef change of staff 1 to F clef at beat 3, under an 8va (octave-shift down) from beat 2.
      Staff 2: grace note E3 before a D3 half note, then a half rest.
    Bar 3, staff 1 (clef back to G): quintuplet 16ths C5 D5 E5 F5 G5 (one quarter), then a dotted
      half A4 (no stems given). Staff 2: whole-bar rest.
    """
    bar1 = measure(
        1,
        attributes(fifths=2),
        note("C", 5, Q, alter=1, stem="up", staff=1),
        note("E", 5, Q * 3 // 2, kind="quarter", dots=1, stem="down", staff=1),
        note("F", 5, Q // 2, alter=1, kind="eighth", stem="down", staff=1),
        note("D", 5, Q, tie="start", stem="down", staff=1),
        backup(4 * Q),
        note("D", 3, 4 * Q, kind="whole", voice=5, staff=2),
        note("A", 3, 4 * Q, kind="whole", voice=5, staff=2, chord=True),
    )
    bar2 = measure(
        2,
        note("D", 5, Q, tie="stop", stem="down", staff=1),
        octave_shift("down", 8, staff=1),
        note("B", 4, Q // 3, kind="eighth", tuplet=(3, 2), stem="up", staff=1),
        note("B", 4, Q // 3, alter=-1, kind="eighth", tuplet=(3, 2), stem="up", staff=1),
        note("A", 4, Q // 3, kind="eighth", tuplet=(3, 2), stem="up", staff=1),
        clef_change("F", 4, staff=1),
        note("G", 4, 2 * Q, kind="half", stem="up", staff=1),
        '<direction><direction-type><octave-shift type="stop" size="8"/></direction-type><staff>1</staff></direction>',
        backup(4 * Q),
        note("E", 3, 0, kind="eighth", voice=5, staff=2, grace=True),
        note("D", 3, 2 * Q, kind="half", voice=5, staff=2, stem="up"),
        note("", 0, 2 * Q, kind="half", voice=5, staff=2, rest=True),
    )
    quint = [("C", 5), ("D", 5), ("E", 5), ("F", 5), ("G", 5)]
    bar3 = measure(
        3,
        clef_change("G", 2, staff=1),
        *(note(s, o, Q // 5, kind="16th", tuplet=(5, 4), staff=1) for s, o in quint),
        note("A", 4, 3 * Q, kind="half", dots=1, staff=1),
        backup(4 * Q),
        note("", 0, 4 * Q, kind="whole", voice=5, staff=2, rest=True),
    )
    return score(part("P1", bar1, bar2, bar3))


def two_parts() -> str:
    """Right hand and left hand as two one-staff parts, 3/4, one bar each: the staff comes from the part.

    P1 (treble): E5 G5 E5 quarters. P2 (bass): C3 half, G2 quarter.
    """
    rh = part(
        "P1",
        measure(
            1,
            attributes(beats=3, staves=1, clefs=(("G", 2),)),
            note("E", 5, Q),
            note("G", 5, Q),
            note("E", 5, Q),
        ),
    )
    lh = part(
        "P2",
        measure(1, attributes(beats=3, staves=1, clefs=(("F", 4),)), note("C", 3, 2 * Q, kind="half"), note("G", 2, Q)),
    )
    return score(rh, lh, names=("Right", "Left"))


def three_staves() -> str:
    """A voice part above a two-staff piano part: three staves."""
    voice = part("P1", measure(1, attributes(staves=1, clefs=(("G", 2),)), note("C", 5, 4 * Q, kind="whole")))
    piano = part(
        "P2",
        measure(
            1,
            attributes(),
            note("E", 4, 4 * Q, kind="whole", staff=1),
            backup(4 * Q),
            note("C", 3, 4 * Q, kind="whole", voice=5, staff=2),
        ),
    )
    return score(voice, piano, names=("Voice", "Piano"))


def simple_piano(*staff1: str, beats: int = 4, beat_type: int = 4, fifths: int | None = 0) -> str:
    """One bar: ``staff1`` notes on staff 1 and a whole-bar C3 on staff 2."""
    bar_len = 4 * Q * beats // beat_type
    return score(
        part(
            "P1",
            measure(
                1,
                attributes(beats=beats, beat_type=beat_type, fifths=fifths),
                *staff1,
                backup(bar_len),
                note("C", 3, bar_len, kind="whole", voice=5, staff=2),
            ),
        )
    )
