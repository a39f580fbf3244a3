"""ingest@engraving: a tiny folder (split by piece, index.json, contract npz, skips, parse cache), the
embedded default (music21's piano scores) and, where present, DCML scores from ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import engraving_scores as es
import numpy as np
import pytest
from test_engraving_scores import KERN

from overseer.engraving import schema
from overseer.engraving.data import ingest as ingest_module
from overseer.engraving.data.corpus import DEFAULT_CORPUS
from overseer.engraving.data.ingest import find_scores, ingest_engraving, piece_id, split_pieces
from overseer.engraving.data.scores import load_score_table
from overseer.errors import InputError

Q = es.Q
DCML = Path(__file__).resolve().parents[3] / "shared" / "data" / "dcml_train"


def duplet_piece() -> str:
    bar = [es.note("C", 5, 3 * Q // 4, kind="eighth", tuplet=(2, 3), staff=1) for _ in range(2)]
    bar.append(es.note("E", 5, 3 * Q // 2, kind="quarter", dots=1, staff=1))
    return es.simple_piano(*bar, beats=6, beat_type=8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "scores"
    es.write(root, "piano.musicxml", es.piano_two_staves())
    es.write(root, "hands/two_parts.xml", es.two_parts())
    es.write(root, "hands/mazurka.krn", KERN)
    es.write(root, "duplet.musicxml", duplet_piece())
    es.write(root, "bad/garbage.musicxml", "not a score")
    es.write(root, "bad/song.musicxml", es.three_staves())
    es.write(root, "bad/zero.musicxml", es.simple_piano(es.note("C", 5, 0, staff=1), es.note("D", 5, 4 * Q, staff=1)))
    es.write(root, "readme.txt", "not scanned")
    es.write(root, ".hidden/piano.musicxml", es.piano_two_staves())
    return root


def cfg(source: Path | str, cache: Path | None, **extra) -> dict:
    return {"source": str(source), "cache_dir": str(cache) if cache else None, **extra}


def test_find_scores_is_recursive_and_skips_hidden(folder: Path) -> None:
    names = [p.relative_to(folder).as_posix() for p in find_scores(folder)]
    assert names == [
        "bad/garbage.musicxml",
        "bad/song.musicxml",
        "bad/zero.musicxml",
        "duplet.musicxml",
        "hands/mazurka.krn",
        "hands/two_parts.xml",
        "piano.musicxml",
    ]


def test_ingest_tiny_folder(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, cache = tmp_path / "prepared", tmp_path / "cache"
    report = ingest_engraving(cfg(folder, cache), out)
    assert report["pieces"] == {"train": 3, "validation": 1, "test": 1}
    assert report["skipped"] == 2
    assert report["skipped_by_reason"] == {"cannot parse score": 1, "more than two staves": 1}
    assert report["exotic_tuplet_notes"] == 2
    assert report["zero_length_notes"] == 1  # dropped from bad/zero, which is kept
    assert report["label_unknown_rate"]["tuplet"] > 0
    assert report["cache"]["misses"] == 7 and report["cache"]["hits"] == 0
    assert report["notes"]["train"] + report["notes"]["validation"] + report["notes"]["test"] == 18 + 5 + 11 + 4 + 2
    assert report["grace_notes"] == 1

    index = json.loads((out / "index.json").read_text())
    assert {s["path"]: s["reason"].split(" (")[0] for s in index["skipped"]} == {
        "bad/garbage.musicxml": "cannot parse score",
        "bad/song.musicxml": "more than two staves",
    }
    ids = {e["id"]: e for e in index["pieces"]}
    assert set(ids) == {"piano", "hands__two_parts", "hands__mazurka", "duplet", "bad__zero"}
    assert ids["bad__zero"]["n_zero_length"] == 1 and ids["bad__zero"]["n_notes"] == 2
    for pid, entry in ids.items():
        piece = schema.load_piece(out / entry["split"] / f"{pid}.npz")
        assert piece["onset"].size == entry["n_notes"]
        assert {r: piece[f"edges_{r}"].shape[1] for r in schema.RELATIONS} == entry["n_edges"]
        assert piece["x"].dtype == np.float32 and piece["x"].shape == (entry["n_notes"], schema.N_FEATURES)
    assert sorted(p.parent.name for p in out.rglob("*.npz")) == ["test", "train", "train", "train", "validation"]

    # second run: every score (bad ones too) comes from the cache, the parser is never called
    def fail(*args, **kwargs):
        raise AssertionError("parsed again despite the cache")

    monkeypatch.setattr(ingest_module, "load_score_table", fail)
    again = ingest_engraving(cfg(folder, cache), tmp_path / "again")
    assert again["cache"] == {"hits": 7, "misses": 0, "folder": str(cache)}
    for key in ("pieces", "notes", "edges", "candidates", "label_unknown_rate", "skipped_by_reason"):
        assert again[key] == report[key]
    for npz in out.rglob("*.npz"):
        a, b = schema.load_piece(npz), schema.load_piece(tmp_path / "again" / npz.relative_to(out))
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_changed_file_is_parsed_again(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ingest_engraving(cfg(folder, cache), tmp_path / "a")
    es.write(folder, "piano.musicxml", es.piano_two_staves().replace("<fifths>2</fifths>", "<fifths>-3</fifths>"))
    report = ingest_engraving(cfg(folder, cache), tmp_path / "b")
    assert report["cache"]["misses"] == 1 and report["cache"]["hits"] == 6
    entry = next(e for e in json.loads((tmp_path / "b" / "index.json").read_text())["pieces"] if e["id"] == "piano")
    assert (schema.load_piece(tmp_path / "b" / entry["split"] / "piano.npz")["y_key"] == 4).all()


def test_exotic_tuplets_can_skip_the_piece(folder: Path, tmp_path: Path) -> None:
    report = ingest_engraving(cfg(folder, None, exotic_tuplets="skip"), tmp_path / "out")
    assert report["skipped"] == 3 and report["exotic_tuplet_notes"] == 0
    assert report["skipped_by_reason"]["tuplets outside the tuplet classes"] == 1
    assert report["cache"]["folder"] is None


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder of scores"):
        ingest_engraving(cfg(tmp_path / "missing", None), tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no score files"):
        ingest_engraving(cfg(tmp_path / "empty", None), tmp_path / "out")
    es.write(tmp_path / "two", "a.musicxml", es.two_parts())
    es.write(tmp_path / "two", "b.musicxml", es.piano_two_staves())
    with pytest.raises(InputError, match="2 usable piece"):
        ingest_engraving(cfg(tmp_path / "two", None), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # all or nothing


def test_split_by_piece() -> None:
    ids = [f"p{i}" for i in range(3)]
    assert sorted(split_pieces(ids, 0.15, 0.15, seed=0).values()) == ["test", "train", "validation"]
    ids = [f"p{i}" for i in range(40)]
    a = split_pieces(ids, 0.2, 0.1, seed=1)
    assert a == split_pieces(list(reversed(ids)), 0.2, 0.1, seed=1)  # seeded, order-independent
    assert a != split_pieces(ids, 0.2, 0.1, seed=2)
    assert sorted(a.values()).count("validation") == 8 and sorted(a.values()).count("test") == 4
    with pytest.raises(InputError, match="fractions"):
        split_pieces(ids, 0.6, 0.5, seed=0)


def test_piece_ids() -> None:
    assert piece_id("chopin/mazurka06-2.krn") == "chopin__mazurka06-2"
    assert piece_id("schubert/Lindenbaum.xml", "Piano") == "schubert__Lindenbaum__Piano"
    assert piece_id("a b/c (1).mxl") == "a_b__c_1"


def test_default_corpus(tmp_path: Path) -> None:
    report = ingest_engraving({"source": "default", "cache_dir": str(tmp_path / "cache")}, tmp_path / "out")
    assert report["skipped"] == 0, report
    assert sum(report["pieces"].values()) == len(DEFAULT_CORPUS) == 17
    assert all(n >= 1 for n in report["pieces"].values())
    assert sum(report["notes"].values()) > 10_000
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert {e["path"] for e in index["pieces"]} == {f"music21:{e.path}" for e in DEFAULT_CORPUS}
    for rate in report["label_unknown_rate"].values():
        assert rate < 0.1


@pytest.mark.skipif(not DCML.is_dir(), reason=f"DCML scores not present at {DCML}")
def test_dcml_scores_make_valid_pieces(tmp_path: Path) -> None:
    from overseer.engraving.data.labels import piece_from_table

    for path in find_scores(DCML)[:2]:
        piece = piece_from_table(load_score_table(path))
        schema.load_piece(schema.save_piece(tmp_path / f"{path.stem}.npz", piece))
        assert (piece["y_staff"] >= 0).all() and piece["onset"].size > 100
