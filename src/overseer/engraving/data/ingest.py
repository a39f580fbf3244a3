"""ingest@engraving: a folder of piano scores (or the embedded default) to prepared score graphs.

Sources: ``source: default`` reads the piano scores of music21's corpus (``corpus.py``); any
other value is a folder searched recursively for MusicXML (.musicxml/.xml/.mxl), MEI and kern
files. Each score becomes one numeric ``.npz`` piece in the contract of ``schema.py``
(graph per paper §2.1, labels per §2.2), written to ``<out>/<split>/<piece_id>.npz``; pieces are
split into train/validation/test *by piece*, seeded. ``<out>/index.json`` lists every piece
(split, source path, counts) and every skipped file with its reason.

A fixed test corpus: with ``test_source`` (a folder, or "default") every usable score of it is
the test split, and ``source`` is split into train/validation only (``split.test`` is unused). A
piece in both is refused before anything is written (:func:`check_no_overlap`): the same file
content (SHA-256 of the bytes), or, where the files differ, the same title and composer
(:mod:`.metadata`); the message names both files.

One bad score never aborts the corpus: it is skipped, and the report counts skips by reason
(each reason one line). A non-grace note of zero length is dropped from its piece with a warning
and counted (``zero_length_notes``), not a reason to skip the piece.
:func:`read_corpus` is the reading half (parse cache included), shared with
``overseer evaluate engraving``, which evaluates a model on any folder of scores.
Parsing is the slow part (DESIGN.md: ~1000× the cost of building edges), so parsed note tables
are cached under ``cache_dir`` keyed by the file's content digest, the part read and
``CACHE_VERSION``; refusals are cached too, so an unchanged bad file is not parsed again. The cache
folder cannot change what is prepared, so it is a run-time setting (``overseer.settings``:
``OVERSEER_CACHE_DIR`` / ``cache_dir``), not a param; library callers may pass it in ``cfg``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import zipfile
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from overseer.engraving import schema
from overseer.engraving.data.corpus import CorpusEntry, default_corpus
from overseer.engraving.data.labels import label_counts, piece_from_table, tuplet_classes
from overseer.engraving.data.metadata import piece_key, score_metadata
from overseer.engraving.data.scores import SCORE_SUFFIXES, ScoreTable, load_score_table, one_line, zero_length_note
from overseer.errors import InputError
from overseer.io import atomic_dir, atomic_file, split_run_time, write_json
from overseer.repo import repo_root

log = logging.getLogger(__name__)

# bump when scores.py reads scores differently: every cached table is then parsed again
CACHE_VERSION = "scores-2"  # 2: zero-length notes are dropped (and kept in the table), not refused
SPLITS = schema.SPLITS
CACHE_DIR = ".cache/engraving"  # the parse cache: relative to the repository root; None: no cache
DEFAULTS: dict[str, Any] = {
    "source": "default",
    "test_source": None,  # a folder (or "default") used whole as the test split; None: split source three ways
    "silence": "gap",  # silence edge rule, see graph.py: gap | rest
    "exotic_tuplets": "unknown",  # tuplets outside schema.TUPLET_RULE: unknown (-1, counted) | skip (the piece)
    "split": {"validation": 0.15, "test": 0.15, "seed": 0},
}
# errors of our own table code on strange but parseable scores: the file is skipped, not the corpus
_SCORE_ERRORS = (InputError, ValueError, IndexError, KeyError, TypeError, AttributeError, ZeroDivisionError)


def find_scores(folder: str | os.PathLike, what: str = "ingest.engraving.source") -> list[Path]:
    """Score files under ``folder`` (recursive, sorted; hidden folders skipped); ``what`` names it in errors."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{what}: not a folder of scores (or 'default')", path=root)
    found = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SCORE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(found)


def piece_id(rel: str, part: str | int | None = None) -> str:
    """A file-name-safe id from a relative path (and the part read)."""
    stem = rel.rsplit(".", 1)[0]
    text = stem if part is None else f"{stem}__{part}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("/", "__")).strip("_") or "piece"


def split_pieces(ids: list[str], validation: float, test: float, seed: int) -> dict[str, str]:
    """Seeded split by piece: ``id -> split``; a split with a fraction > 0 gets at least one piece."""
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise InputError(
            f"ingest.engraving.split: fractions must be in [0, 1) with a sum < 1 (got {validation}, {test})"
        )
    n = len(ids)
    n_val = max(1, round(validation * n)) if validation > 0 else 0
    n_test = max(1, round(test * n)) if test > 0 else 0
    if n - n_val - n_test < 1:
        raise InputError(
            f"{n} usable piece(s) cannot make train/validation/test splits (need {n_val + n_test + 1}); add scores"
        )
    order = np.random.default_rng(seed).permutation(sorted(ids))
    splits = ["validation"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test)
    return {str(pid): split for pid, split in zip(order, splits, strict=True)}


# --- parse cache -----------------------------------------------------------------------------------


def _digest(path: Path, part: str | int | None) -> str:
    h = hashlib.sha256()
    h.update(path.read_bytes())
    h.update(f"\0{part!r}\0{CACHE_VERSION}".encode())
    return h.hexdigest()


class ParseCache:
    """Numeric note tables (``.npz``) and refusals (``.json``) keyed by content digest."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder else None
        self.hits = 0
        self.misses = 0

    def _path(self, digest: str, suffix: str) -> Path:
        assert self.folder is not None
        return self.folder / digest[:2] / f"{digest}{suffix}"

    def get(self, digest: str) -> ScoreTable | str | None:
        """The cached table, the cached refusal reason (str), or None."""
        if self.folder is None:
            return None
        try:
            npz = self._path(digest, ".npz")
            if npz.exists():
                with np.load(npz, allow_pickle=False) as data:
                    table = ScoreTable.from_arrays({k: data[k] for k in data.files})
                self.hits += 1
                return table
            refusal = self._path(digest, ".json")
            if refusal.exists():
                self.hits += 1
                return one_line(json.loads(refusal.read_text())["reason"])
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            log.warning("ignoring unreadable parse-cache entry %s (%s)", digest, exc)
        return None

    def put(self, digest: str, result: ScoreTable | str) -> None:
        if self.folder is None:
            return
        if isinstance(result, ScoreTable):
            with atomic_file(self._path(digest, ".npz"), suffix=".npz") as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **result.to_arrays())
        else:
            write_json(self._path(digest, ".json"), {"reason": result})


def _reason(exc: Exception) -> str:
    text = str(exc)
    path = getattr(exc, "path", None)
    if path is not None:
        text = text.removeprefix(f"{path}: ")
    if not isinstance(exc, InputError):
        text = f"cannot read score ({type(exc).__name__}: {text})"
    return one_line(text)


def reason_kind(reason: str) -> str:
    """The reason without its details, to count skips: 'more than two staves (...)' -> 'more than two staves'."""
    return re.split(r" \(|: |; ", reason, maxsplit=1)[0].strip()


def read_table(path: Path, part: str | int | None, cache: ParseCache) -> ScoreTable | str:
    """The note table of one score, or the reason it is refused (cached either way)."""
    try:
        digest = _digest(path, part)
    except OSError as exc:
        return f"cannot read score ({exc.strerror or exc})"
    cached = cache.get(digest)
    if cached is not None:
        return cached
    cache.misses += 1
    try:
        result: ScoreTable | str = load_score_table(path, part=part)
    except InputError as exc:  # a refusal belongs to the file: cache it
        result = _reason(exc)
    except _SCORE_ERRORS as exc:  # may be a bug of ours: skip the score but do not remember it
        log.warning("%s: skipped after %s: %s", path, type(exc).__name__, exc)
        return _reason(exc)
    cache.put(digest, result)
    return result


# --- reading a corpus -----------------------------------------------------------------------------


def _sources(source: str, what: str = "ingest.engraving.source") -> tuple[list[tuple[Path, str, CorpusEntry]], str]:
    """(path, path as reported, entry) per score of ``source`` ("default" or a folder), and the source as reported."""
    if source == "default":
        return [(p, f"music21:{e.path}", e) for p, e in default_corpus()], "default (music21 corpus)"
    root = Path(source)
    files = find_scores(root, what)
    if not files:
        raise InputError(f"{what}: no score files ({', '.join(SCORE_SUFFIXES)}) in the folder", path=root)
    return [(p, p.relative_to(root).as_posix(), CorpusEntry(p.relative_to(root).as_posix())) for p in files], str(root)


def _cache_folder(cache_dir: str | os.PathLike | None) -> Path | None:
    """A relative cache folder lives at the repository root, also for DVC's temporary experiment
    workspaces (``dvc exp run --temp``), so experiments share one cache."""
    if not cache_dir:
        return None
    folder = Path(cache_dir)
    return folder if folder.is_absolute() else repo_root() / folder


def parse_cache(cache_dir: str | os.PathLike | None = CACHE_DIR) -> ParseCache:
    """The parse cache at ``cache_dir`` (relative: at the repository root; None: no cache)."""
    return ParseCache(_cache_folder(cache_dir))


def _exotic(table: ScoreTable) -> np.ndarray:
    """Notes whose tuplet ratio is notated but not in schema.TUPLET_RULE."""
    return (table.tuplet_actual > 1) & (tuplet_classes(table.tuplet_actual) < 0)


@dataclass
class Corpus:
    """The usable pieces of one source, by piece id, and what was skipped or dropped on the way.

    ``entries`` per piece: ``path`` (as reported: relative to the folder, ``music21:`` for the
    default corpus), ``part``, ``n_grace`` and ``n_zero_length`` (zero-length notes dropped);
    ``files`` the file each piece was read from; ``digests`` the SHA-256 of its bytes and
    ``metadata`` its title and composer (:mod:`.metadata`), to compare corpora; ``skipped`` one
    ``{path, reason}`` per refused score (reasons are one line).
    """

    source: str
    pieces: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    exotic_notes: int = 0
    zero_length_notes: int = 0


def read_corpus(
    source: str | os.PathLike,
    cache: ParseCache,
    *,
    silence: str = "gap",
    exotic_tuplets: str = "unknown",
    what: str = "ingest.engraving.source",
    taken: Collection[str] = (),
    desc: str = "ingest@engraving",
    progress: bool = True,
) -> Corpus:
    """Parse every score of ``source`` ("default" or a folder) into contract pieces (the module docstring).

    ``what`` names the source in errors; piece ids avoid ``taken`` (another corpus's ids, so two
    corpora can share one prepared folder); ``desc``/``progress``: the progress bar over scores.
    """
    if exotic_tuplets not in ("unknown", "skip"):
        raise InputError(f"ingest.engraving.exotic_tuplets must be 'unknown' or 'skip', got {exotic_tuplets!r}")
    sources, source_name = _sources(str(source), what)
    corpus = Corpus(source_name)
    for path, shown, entry in tqdm(sources, desc=desc, unit="score", disable=not progress):
        result = read_table(path, entry.part, cache)
        if isinstance(result, ScoreTable) and _exotic(result).any():
            exotic = _exotic(result)
            if exotic_tuplets == "skip":
                ratios = sorted({int(k) for k in result.tuplet_actual[exotic]})
                result = f"tuplets outside the tuplet classes (actual notes {ratios}, {int(exotic.sum())} notes)"
            else:
                corpus.exotic_notes += int(exotic.sum())
        if isinstance(result, str):
            log.warning("skipping %s: %s", shown, result)
            corpus.skipped.append({"path": shown, "reason": one_line(result)})
            continue
        dropped = zero_length_note(result)
        if dropped:
            log.warning("%s: %s", shown, dropped)
            corpus.zero_length_notes += int(result.zero_onset.size)
        pid = piece_id(entry.path, entry.part)
        while pid in corpus.pieces or pid in taken:  # same stem in two formats (a.xml, a.mxl), or another corpus's
            pid += "_"
        corpus.pieces[pid] = piece_from_table(result, silence=silence)
        corpus.entries[pid] = {
            "path": shown,
            "part": entry.part,
            "n_grace": int(result.grace_onset.size),
            "n_zero_length": int(result.zero_onset.size),
        }
        corpus.files[pid] = path
        try:
            raw = path.read_bytes()
        except OSError:  # read a moment ago: gone now; nothing to compare it by
            raw = b""
        corpus.digests[pid] = hashlib.sha256(raw).hexdigest()
        corpus.metadata[pid] = score_metadata(path.name, raw)
    return corpus


def overlap(train: Corpus, test: Corpus) -> list[str]:
    """One line per test piece that is also a training piece: same content, or same title and composer."""
    by_digest = {d: pid for pid, d in train.digests.items()}
    by_key = {}
    for pid, meta in train.metadata.items():
        key = piece_key(meta)
        if key is not None:
            by_key.setdefault(key, pid)
    found = []
    for pid, digest in test.digests.items():
        key = piece_key(test.metadata[pid])
        if digest in by_digest:
            other, why = by_digest[digest], "the same file content"
        elif key is not None and key in by_key:
            other = by_key[key]
            meta = test.metadata[pid]
            why = f"the same title and composer ({one_line(meta['title'], 80)!r} by {one_line(meta['composer'], 60)!r})"
        else:
            continue
        found.append(f"{train.files[other]} (source) and {test.files[pid]} (test_source): {why}")
    return found


def check_no_overlap(train: Corpus, test: Corpus, shown: int = 10) -> None:
    """Refuse (InputError) when a piece of the test corpus is also in the training corpus (:func:`overlap`)."""
    found = overlap(train, test)
    if found:
        more = f"; and {len(found) - shown} more" if len(found) > shown else ""
        raise InputError(
            f"ingest.engraving.test_source: {len(found)} test piece(s) also in ingest.engraving.source "
            f"(remove each from one of the two folders): {'; '.join(found[:shown])}{more}"
        )


# --- ingest ----------------------------------------------------------------------------------------


def ingest_engraving(cfg: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Prepare every score of ``cfg['source']`` into ``out_dir`` (all or nothing); return the report.

    ``cfg`` (params ``ingest.engraving``, missing keys from ``DEFAULTS``): ``source`` ("default" or a
    folder), ``test_source`` (None, or a folder / "default" that is the whole test split),
    ``silence`` ("gap" | "rest"), ``exotic_tuplets`` ("unknown" | "skip"), ``split``
    ({validation, test, seed}; ``test`` unused with a ``test_source``); and ``cache_dir``, the parse
    cache folder (default ``CACHE_DIR``; None: no cache), which changes how long a run takes but
    never what it prepares.
    """
    cfg = {**DEFAULTS, **dict(cfg)}
    split_cfg = {**DEFAULTS["split"], **dict(cfg.get("split") or {})}
    if cfg["exotic_tuplets"] not in ("unknown", "skip"):
        raise InputError(f"ingest.engraving.exotic_tuplets must be 'unknown' or 'skip', got {cfg['exotic_tuplets']!r}")
    started = time.perf_counter()
    cache = parse_cache(cfg.get("cache_dir", CACHE_DIR))
    options = {"silence": cfg["silence"], "exotic_tuplets": cfg["exotic_tuplets"]}
    corpus = read_corpus(cfg["source"], cache, **options)
    test = None
    if cfg.get("test_source") is not None:
        what = "ingest.engraving.test_source"
        test = read_corpus(cfg["test_source"], cache, **options, what=what, taken=corpus.pieces, desc="test_source")
        if not test.pieces:
            raise InputError(f"{what}: no usable score ({len(test.skipped)} skipped)", path=cfg["test_source"])
        check_no_overlap(corpus, test)
        split_of = split_pieces(list(corpus.pieces), float(split_cfg["validation"]), 0.0, int(split_cfg["seed"]))
        split_of.update(dict.fromkeys(test.pieces, "test"))
    else:
        split_of = split_pieces(
            list(corpus.pieces), float(split_cfg["validation"]), float(split_cfg["test"]), int(split_cfg["seed"])
        )
    pieces, entries, skipped = dict(corpus.pieces), dict(corpus.entries), list(corpus.skipped)
    if test is not None:  # marked, so that index.json tells which folder a test piece's path is in
        pieces.update(test.pieces)
        entries.update({pid: {**e, "source": "test_source"} for pid, e in test.entries.items()})
        skipped += [{**s, "source": "test_source"} for s in test.skipped]
    index = []
    with atomic_dir(out_dir) as tmp:
        for pid, piece in pieces.items():
            schema.save_piece(tmp / split_of[pid] / f"{pid}.npz", piece)
            index.append(
                {
                    "id": pid,
                    "split": split_of[pid],
                    **entries[pid],
                    "n_notes": int(piece["onset"].size),
                    "n_bars": int(piece["bar_start"].size),
                    "n_edges": {r: int(piece[f"edges_{r}"].shape[1]) for r in schema.RELATIONS},
                    "n_voice_cand": int(piece["voice_cand"].shape[1]),
                    "n_chord_cand": int(piece["chord_cand"].shape[1]),
                }
            )
        report = _report(index, pieces, skipped, corpus, test, cache, cfg, split_cfg)
        report["seconds"] = round(time.perf_counter() - started, 2)
        # run-time values (timing, the cache's hit counts) stay out of the index: the same scores give
        # the same prepared folder
        stable, _ = split_run_time(report)
        sources = {"source": corpus.source, **({"test_source": test.source} if test else {})}
        write_json(tmp / "index.json", {**sources, "pieces": index, "skipped": skipped, "report": stable})
    return report


def _report(
    index: list[dict[str, Any]],
    pieces: Mapping[str, dict[str, np.ndarray]],
    skipped: list[dict[str, str]],
    corpus: Corpus,
    test: Corpus | None,
    cache: ParseCache,
    cfg: Mapping[str, Any],
    split_cfg: Mapping[str, Any],
) -> dict[str, Any]:
    counts: dict[str, Counter] = {"known": Counter(), "unknown": Counter()}
    for piece in pieces.values():
        for task, c in label_counts(piece).items():
            counts["known"][task] += c["known"]
            counts["unknown"][task] += c["unknown"]
    tasks = (*schema.NODE_TASKS, *schema.EDGE_TASKS)
    unknown_rate = {
        t: round(counts["unknown"][t] / max(1, counts["known"][t] + counts["unknown"][t]), 4) for t in tasks
    }
    corpora = [corpus] if test is None else [corpus, test]
    return {
        "source": corpus.source,
        **({"test_source": test.source} if test is not None else {}),
        "pieces": {s: sum(1 for e in index if e["split"] == s) for s in SPLITS},
        "notes": {s: sum(e["n_notes"] for e in index if e["split"] == s) for s in SPLITS},
        "grace_notes": sum(e["n_grace"] for e in index),
        "edges": {r: sum(e["n_edges"][r] for e in index) for r in schema.RELATIONS},
        "candidates": {
            "voice": sum(e["n_voice_cand"] for e in index),
            "chord": sum(e["n_chord_cand"] for e in index),
        },
        "label_unknown_rate": unknown_rate,
        "exotic_tuplet_notes": sum(c.exotic_notes for c in corpora),
        "zero_length_notes": sum(c.zero_length_notes for c in corpora),
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(reason_kind(s["reason"]) for s in skipped).most_common()),
        "cache": {"hits": cache.hits, "misses": cache.misses, "folder": str(cache.folder) if cache.folder else None},
        "silence": cfg["silence"],
        # with a test_source the test fraction is unused: the test split is that corpus, whole
        "split": {k: None if k == "test" and test else split_cfg[k] for k in ("validation", "test", "seed")},
    }
