"""The embedded default corpus: piano scores that the music21 package ships in its corpus.

No network and no user data (DESIGN.md, "Embedded defaults"). ``DEFAULT_CORPUS`` is a fixed
list, checked by loading each file with partitura (music21 10.5.1): ten piano pieces, plus the
piano part of seven songs and chamber pieces (``part`` names it; the other parts are dropped).
About 15,000 notes; parsing all of them takes a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from overseer.errors import InputError


@dataclass(frozen=True)
class CorpusEntry:
    """One score of the default corpus: a path inside ``music21/corpus`` and the part to read."""

    path: str
    part: str | int | None = None  # None: the whole score is the piano (two staves)


DEFAULT_CORPUS: tuple[CorpusEntry, ...] = (
    # solo piano
    CorpusEntry("joplin/maple_leaf_rag.mxl"),
    CorpusEntry("mozart/k545/movement1_exposition.mxl"),
    CorpusEntry("chopin/mazurka06-2.krn"),
    CorpusEntry("cpebach/h186.mxl"),
    CorpusEntry("schoenberg/opus19/movement2.mxl"),
    CorpusEntry("schoenberg/opus19/movement6.mxl"),
    CorpusEntry("schumann_clara/polonaise_op1n1.mxl"),
    CorpusEntry("schumann_clara/polonaise_op1n2.mxl"),
    CorpusEntry("schumann_clara/polonaise_op1n3.mxl"),
    CorpusEntry("schumann_clara/polonaise_op1n4.mxl"),
    # the piano part of songs and chamber music
    CorpusEntry("schubert/Lindenbaum.xml", "Piano"),
    CorpusEntry("schumann_robert/dichterliebe_no2.xml", 1),
    CorpusEntry("handel/rinaldo/Lascia_chio_pianga.mxl", "Piano"),
    CorpusEntry("beach/prayer_of_a_tired_child.musicxml", "Piano"),
    CorpusEntry("liliuokalani/aloha_oe.mxl", "Piano"),
    CorpusEntry("schumann_clara/opus17/movement3.xml", "Piano"),
    CorpusEntry("weber/concertino_clarinet.mxl", "Piano"),
)


def music21_corpus_root() -> Path:
    """The folder of music21's bundled corpus (an InputError when music21 is not installed)."""
    try:
        import music21
    except ImportError as exc:
        raise InputError("the default engraving corpus needs the music21 package (pip install music21)") from exc
    root = Path(music21.__file__).parent / "corpus"
    if not root.is_dir():
        raise InputError("music21 is installed without its corpus folder", path=root)
    return root


def default_corpus() -> list[tuple[Path, CorpusEntry]]:
    """(absolute path, entry) for every entry of ``DEFAULT_CORPUS`` (missing files are kept: ingest
    reports them as skipped)."""
    root = music21_corpus_root()
    return [(root / entry.path, entry) for entry in DEFAULT_CORPUS]
