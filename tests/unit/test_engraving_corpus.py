"""Issue 13: a fixed test corpus (ingest.engraving.test_source), `overseer evaluate engraving` on any
folder of scores, batch engraving, and pieces that real corpora throw at the chain (a 16-quarter note
in a 20.5-quarter cadenza bar, a zero-length note, a part name with newlines)."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import engraving_scores as es
import numpy as np
import pandas as pd
import partitura
import pytest
from engraving_truth import noisy, oracle
from test_engraving_scores import KERN

from overseer.cli import main
from overseer.engraving import export as ex
from overseer.engraving import postprocess as pp
from overseer.engraving import schema
from overseer.engraving.corpus_eval import evaluate_corpus
from overseer.engraving.data import ingest as ingest_module
from overseer.engraving.data.ingest import ingest_engraving
from overseer.engraving.data.labels import piece_from_table
from overseer.engraving.data.metadata import piece_key, score_metadata
from overseer.engraving.data.scores import load_score_table
from overseer.engraving.engrave import ScoreWarning, batch_names, engrave_batch, read_piece
from overseer.engraving.evaluate import PIECE_METRICS, evaluate_pieces
from overseer.engraving.key_smoothing import DEFAULT_KEY_CHANGE_PENALTY
from overseer.errors import InputError

Q = es.Q


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny untrained EngravingGNN saved as --model expects it."""
    from overseer.engraving.model import EngravingGNN, ModelConfig
    from overseer.engraving.train import save_model

    folder = tmp_path_factory.mktemp("model") / "model"
    save_model(EngravingGNN(ModelConfig(hidden=16, layers=1, gru_layers=1)), folder)
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def melody(*pitches: tuple[str, int], fifths: int = 0) -> str:
    """One bar of four quarter notes on staff 1 over a whole-note C3: distinct content per call."""
    return es.simple_piano(*(es.note(s, o, Q, staff=1) for s, o in pitches), fifths=fifths)


def titled(text: str, title: str, composer: str) -> str:
    """A MusicXML score with a work title and a composer."""
    head = f"<work><work-title>{title}</work-title></work>"
    head += f'<identification><creator type="composer">{composer}</creator></identification>'
    return text.replace("<part-list>", head + "<part-list>", 1)


def cadenza() -> str:
    """4/4, bar 1 an irregular cadenza bar of 20.5 quarters: a 16-quarter C5 (a breve's symbol, but
    no single symbol lasts 16 quarters), four quarters and an eighth; below a 16-quarter C3 and a
    4.5-quarter G2. Bar 2: a whole-note bar."""
    up = [es.note("C", 5, 16 * Q, kind="breve", staff=1)]
    up += [es.note("D", 5, Q, staff=1) for _ in range(4)] + [es.note("E", 5, Q // 2, kind="eighth", staff=1)]
    low = [es.note("C", 3, 16 * Q, kind="breve", voice=5, staff=2)]
    low += [es.note("G", 2, 4 * Q + Q // 2, kind="whole", voice=5, staff=2)]
    bar1 = es.measure(1, es.attributes(), *up, es.backup(20 * Q + Q // 2), *low)
    bar2 = es.measure(
        2,
        es.note("C", 5, 4 * Q, kind="whole", staff=1),
        es.backup(4 * Q),
        es.note("C", 3, 4 * Q, kind="whole", voice=5, staff=2),
    )
    return es.score(es.part("P1", bar1, bar2))


def read_back(path: Path) -> list[tuple[float, float, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        na = np.concatenate([p.note_array() for p in partitura.load_score(str(path)).parts])
    return sorted(zip(np.round(na["onset_quarter"], 6), np.round(na["duration_quarter"], 6), na["pitch"], strict=True))


# --- a fixed test corpus ------------------------------------------------------------------------------


@pytest.fixture
def corpora(tmp_path: Path) -> tuple[Path, Path]:
    train, test = tmp_path / "train", tmp_path / "test"
    es.write(train, "piano.musicxml", es.piano_two_staves())
    es.write(train, "hands/two_parts.xml", es.two_parts())
    es.write(train, "hands/mazurka.krn", KERN)
    es.write(train, "a/xml_score.musicxml", melody(("C", 5), ("D", 5), ("E", 5), ("F", 5)))
    es.write(train, "bad/song.musicxml", es.three_staves())
    es.write(test, "a/xml_score.musicxml", melody(("G", 5), ("A", 5), ("B", 5), ("C", 6)))
    es.write(test, "b/xml_score.musicxml", melody(("E", 4), ("F", 4), ("G", 4), ("A", 4)))
    es.write(test, "bad/garbage.musicxml", "not a score")
    return train, test


def cfg(train: Path, test: Path | None, cache: Path | None = None, **extra) -> dict:
    return {"source": str(train), "test_source": str(test) if test else None, "cache_dir": cache, **extra}


def test_test_source_is_the_whole_test_split(corpora, tmp_path: Path) -> None:
    train, test = corpora
    out = tmp_path / "prepared"
    report = ingest_engraving(cfg(train, test, split={"validation": 0.25, "test": 0.5, "seed": 1}), out)
    assert report["pieces"] == {"train": 3, "validation": 1, "test": 2}  # test 0.5 of source is unused
    assert report["split"] == {"validation": 0.25, "test": None, "seed": 1}
    assert report["test_source"] == str(test) and report["skipped"] == 2
    index = json.loads((out / "index.json").read_text())
    assert index["test_source"] == str(test)
    by_split = {s: {e["path"] for e in index["pieces"] if e["split"] == s} for s in schema.SPLITS}
    assert by_split["test"] == {"a/xml_score.musicxml", "b/xml_score.musicxml"}
    assert all(e.get("source") == "test_source" for e in index["pieces"] if e["split"] == "test")
    assert not any(e.get("source") for e in index["pieces"] if e["split"] != "test")
    # train and test never overlap: not by id, not by file, not by content
    ids = {s: {e["id"] for e in index["pieces"] if e["split"] == s} for s in schema.SPLITS}
    assert not ids["test"] & (ids["train"] | ids["validation"])
    assert {"a__xml_score", "a__xml_score_"} <= ids["train"] | ids["validation"] | ids["test"]  # same relative path
    contents = {s: {(out / s / f"{i}.npz").read_bytes() for i in ids[s]} for s in schema.SPLITS}
    assert not contents["test"] & (contents["train"] | contents["validation"])
    test_pieces = [schema.load_piece(out / "test" / f"{i}.npz") for i in ids["test"]]
    assert sorted(int(p["pitch"].max()) for p in test_pieces) == [69, 84]
    assert {s["path"]: s.get("source") for s in index["skipped"]} == {
        "bad/song.musicxml": None,
        "bad/garbage.musicxml": "test_source",
    }


def test_a_piece_in_both_is_refused_naming_both_files(corpora, tmp_path: Path) -> None:
    train, test = corpora
    es.write(test, "copy/piano.musicxml", es.piano_two_staves())  # the same bytes as train/piano.musicxml
    with pytest.raises(InputError) as caught:
        ingest_engraving(cfg(train, test), tmp_path / "out")
    text = str(caught.value)
    assert "ingest.engraving.test_source: 1 test piece(s) also in ingest.engraving.source" in text
    assert f"{train / 'piano.musicxml'} (source) and {test / 'copy/piano.musicxml'} (test_source)" in text
    assert "the same file content" in text and "\n" not in text
    assert not (tmp_path / "out").exists()  # all or nothing


def test_the_same_piece_in_another_file_is_refused_by_title_and_composer(corpora, tmp_path: Path) -> None:
    train, test = corpora
    es.write(train, "op6.musicxml", titled(melody(("C", 4), ("E", 4)), "Mazurka Op. 6 No. 1", "Frédéric Chopin"))
    other = titled(melody(("C", 4), ("E", 4), ("G", 4)), "mazurka, op.6  no.1", "Chopin, Frederic")
    es.write(test, "chopin/op6n1.musicxml", other)  # another edition: other bytes, same piece
    with pytest.raises(InputError, match="same title and composer") as caught:
        ingest_engraving(cfg(train, test), tmp_path / "out")
    assert f"{train / 'op6.musicxml'} (source) and {test / 'chopin/op6n1.musicxml'} (test_source)" in str(caught.value)
    # a title that names no one piece ("Mazurka" by the same composer) is no evidence
    es.write(test, "chopin/op6n1.musicxml", titled(melody(("C", 4), ("E", 4), ("G", 4)), "Mazurka", "F. Chopin"))
    es.write(train, "op6.musicxml", titled(melody(("C", 4), ("E", 4)), "Mazurka", "F. Chopin"))
    assert ingest_engraving(cfg(train, test), tmp_path / "out")["pieces"]["test"] == 3


def test_test_source_errors(corpora, tmp_path: Path) -> None:
    train, _ = corpora
    with pytest.raises(InputError, match=r"ingest\.engraving\.test_source: not a folder of scores"):
        ingest_engraving(cfg(train, tmp_path / "missing"), tmp_path / "out")
    bad = tmp_path / "bad"
    es.write(bad, "garbage.musicxml", "not a score")
    with pytest.raises(InputError, match=r"ingest.engraving.test_source: no usable score \(1 skipped\)"):
        ingest_engraving(cfg(train, bad), tmp_path / "out")


def test_score_metadata(tmp_path: Path) -> None:
    xml = titled(melody(("C", 4)), "Kinderszenen: Träumerei", "Robert Schumann")
    assert score_metadata("a.musicxml", xml.encode()) == {
        "title": "Kinderszenen: Träumerei",
        "composer": "Robert Schumann",
    }
    mxl = tmp_path / "a.mxl"
    with zipfile.ZipFile(mxl, "w") as zf:
        zf.writestr(
            "META-INF/container.xml",
            '<container><rootfiles><rootfile full-path="score.xml"/></rootfiles></container>',
        )
        zf.writestr("score.xml", xml)
    assert score_metadata("a.mxl", mxl.read_bytes())["title"] == "Kinderszenen: Träumerei"
    kern = "!!!COM: Chopin, Frederic\n!!!OTL: Mazurka\n!!!OPS: Op. 6\n" + KERN
    meta = score_metadata("m.krn", kern.encode())
    assert meta == {"title": "Op. 6 Mazurka", "composer": "Chopin, Frederic"}
    assert piece_key(meta) == ("op 6 mazurka", "chopin frederic")
    assert score_metadata("x.musicxml", b"not xml") == {"title": "", "composer": ""}
    assert piece_key({"title": "Sonata in C", "composer": "Mozart"}) is None  # generic words only
    assert piece_key({"title": "Untitled score", "composer": "Composer / arranger"}) is None
    assert piece_key({"title": "Träumerei", "composer": ""}) is None  # no composer: no key


# --- evaluating any model on any corpus ---------------------------------------------------------------


@pytest.fixture(scope="module")
def parse_cache_dir(tmp_path_factory) -> Path:
    """One parse cache for the module's corpora (keyed by content: the tests' scores parse once)."""
    return tmp_path_factory.mktemp("parse_cache")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    es.write(root, "x/xml_score.musicxml", es.piano_two_staves())
    es.write(root, "y/xml_score.musicxml", melody(("G", 5), ("A", 5), ("B", 5), ("C", 6)))
    es.write(root, "mazurka.krn", KERN)
    es.write(root, "cadenza.musicxml", cadenza())
    zero = es.simple_piano(es.note("C", 5, 0, staff=1), es.note("D", 5, 4 * Q, kind="whole", staff=1))
    es.write(root, "zero.musicxml", zero)
    song = es.three_staves().replace("<part-name>Voice</part-name>", "<part-name>Voice\n\n\n(soprano)\n</part-name>")
    es.write(root, "bad/song.musicxml", song)
    return root


def test_evaluate_engraving_on_a_folder(
    capsys, model, corpus, parse_cache_dir, tmp_path, monkeypatch, one_torch_thread
) -> None:
    out = tmp_path / "eval"
    monkeypatch.setenv("OVERSEER_CACHE_DIR", str(parse_cache_dir))
    monkeypatch.setenv("OVERSEER_PROGRESS", "0")
    code, stdout, stderr = run(capsys, "evaluate", "engraving", "--model", model, corpus, "--out", out)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "evaluated 5 pieces" in stdout and "of 6 scores" in stdout
    assert "Overseer EngravingGNN (post-processed)" in stdout and "EngravingGNN (paper, DCML Romantic)" in stdout
    # the same files as evaluate@gnn, plus the per-piece table, the skipped and the corpus summary
    assert {p.name for p in out.iterdir()} == {"metrics.json", "table1.md", "pieces.csv", "skipped.csv",
                                              "corpus.json", "tasks"}  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"n_pieces", "n_skipped", "post_processed", "raw", "key"}
    assert metrics["n_pieces"] == 5 and metrics["n_skipped"] == 1
    # key accuracy raw, per bar and smoothed over the piece with the model's penalty (no postprocess.json: the default)
    assert {"raw", "per_bar", "sequence", "penalty", "changes_per_bar", "changes_sequence"} <= set(metrics["key"])
    assert metrics["key"]["penalty"] == DEFAULT_KEY_CHANGE_PENALTY
    assert metrics["key"]["sequence"] == pytest.approx(metrics["post_processed"]["acc_key"])
    assert all(isinstance(v, int | float) for v in metrics["key"].values())
    assert metrics["post_processed"]["n_notes"] == 18 + 5 + 11 + 10 + 2
    assert (out / "table1.md").read_text().startswith("| Model | Voice F1 |")
    pieces = pd.read_csv(out / "pieces.csv")
    assert sorted(pieces["path"]) == sorted(["x/xml_score.musicxml", "y/xml_score.musicxml", "mazurka.krn",
                                             "cadenza.musicxml", "zero.musicxml"])  # fmt: skip
    assert list(pieces.columns[:3]) == ["piece", "path", "notes"] and set(PIECE_METRICS) <= set(pieces.columns)
    assert pieces["notes"].sum() == metrics["post_processed"]["n_notes"]
    assert ((pieces["acc_staff"] >= 0) & (pieces["acc_staff"] <= 1)).all()
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["path"].tolist() == ["bad/song.musicxml"] and skipped["step"].tolist() == ["read"]
    assert skipped["reason"][0] == "more than two staves (Voice (soprano): 1, Piano: 2); a piano score has two"
    info = json.loads((out / "corpus.json").read_text())
    assert info["zero_length_notes"] == 1 and info["skipped_by_reason"] == {"more than two staves": 1}
    assert (out / "tasks" / "staff" / "confusion_matrix.csv").is_file()
    # per-note post-processed predictions of the heads read as confusions (dvc plots' confusion template)
    for task, classes in (("stem", {"up", "down", "none"}), ("clef", {"G", "F", "C"})):
        notes = pd.read_csv(out / "tasks" / task / "predictions.csv", keep_default_na=False)
        confusion = pd.read_csv(out / "tasks" / task / "confusion_matrix.csv", index_col=0)
        assert list(notes.columns) == ["actual", "predicted"] and len(notes) == confusion.to_numpy().sum()
        assert set(notes["actual"]) | set(notes["predicted"]) <= classes
    assert not (out / "tasks" / "staff" / "predictions.csv").exists()  # counts only for the other tasks
    assert "\n" not in stderr.split("overseer: skipped ")[1].rstrip("\n")  # one line
    # a second run reads every score from the parse cache
    monkeypatch.setattr(ingest_module, "load_score_table", lambda *a, **k: pytest.fail("parsed again"))
    assert run(capsys, "evaluate", "engraving", "--model", model, corpus, "--out", out)[0] == 0
    assert json.loads((out / "corpus.json").read_text())["cache"]["hits"] == 6


def test_evaluate_engraving_bad_arguments(capsys, model, tmp_path) -> None:
    code, _, err = run(capsys, "evaluate", "engraving", "--model", tmp_path / "none", tmp_path)
    assert code == 2 and "--model: no trained EngravingGNN here" in err
    code, _, err = run(capsys, "evaluate", "engraving", "--model", model, tmp_path / "missing")
    assert code == 2 and "CORPUS_DIR: not a folder of scores" in err
    bad = tmp_path / "bad"
    es.write(bad, "song.musicxml", es.three_staves())
    code, _, err = run(capsys, "evaluate", "engraving", "--model", model, bad, "--out", tmp_path / "out")
    assert code == 2 and "no usable score in the corpus (1 skipped; the first: song.musicxml: more than" in err
    assert not (tmp_path / "out").exists()


def test_one_bad_piece_never_aborts_an_evaluation(corpus, parse_cache_dir, tmp_path) -> None:
    calls = []

    def predict(piece):
        calls.append(piece["onset"].size)
        if len(calls) == 2:
            raise RuntimeError("boom\nwith a second line")
        return oracle(piece)

    evaluation, info = evaluate_corpus(
        None, corpus, tmp_path / "out", predict_fn=predict, cache_dir=parse_cache_dir, progress=False
    )
    assert evaluation.n_pieces == 4 and len(calls) == 5
    assert [s["step"] for s in evaluation.skipped] == ["read", "evaluate"]
    assert evaluation.skipped[1]["reason"] == "RuntimeError: boom with a second line"
    assert info["skipped"] == 2 and json.loads((tmp_path / "out" / "metrics.json").read_text())["n_skipped"] == 2
    # oracle predictions: the post-processed scores are perfect where labels are known
    assert evaluation.post["acc_staff"] == 1.0 and evaluation.post["acc_spelling"] == 1.0

    def fail(piece):
        raise ValueError("no")

    with pytest.raises(InputError, match=r"no piece could be evaluated \(1 skipped; the first: ValueError: no\)"):
        evaluate_pieces([read_piece(corpus / "mazurka.krn")], ["m"], fail, progress=False)


# --- real corpora: long notes, zero-length notes ---------------------------------------------------------


def test_a_16_quarter_note_in_a_cadenza_bar_is_written_as_tied_breves(tmp_path: Path) -> None:
    table = load_score_table(es.write(tmp_path, "cadenza.musicxml", cadenza()))
    assert table.bar_dur.tolist() == [20.5, 4.0] and table.duration.max() == 16.0
    piece = piece_from_table(table)
    for pred in (oracle(piece), noisy(piece, np.random.default_rng(0))):
        res = pp.postprocess(piece, pred)  # used to raise "a duration of 16 quarters cannot be one symbol"
        pp.check_result(piece, res)
        long = np.flatnonzero(piece["duration"] == 16.0)
        assert schema.NOTE_TYPES[res["note_type"][long[0]]] == "breve"
        rows = np.isin(res["split_note"], long)
        assert res["split_onset"][rows].tolist() == [8.0, 8.0] and res["split_duration"][rows].tolist() == [8.0, 8.0]
        assert [schema.NOTE_TYPES[t] for t in res["split_note_type"][rows]] == ["breve", "breve"]
        # 4.5 quarters from beat 1: a whole note tied to an eighth (no generic 16:9 breve tuplet)
        g2 = int(np.flatnonzero(piece["pitch"] == 43)[0])
        assert (res["tuplet_actual"][g2], schema.NOTE_TYPES[res["note_type"][g2]]) == (1, "whole")
        written = ex.export_score(piece, res, tmp_path / "out", "cadenza", pages=1)
        want = sorted(zip(piece["onset"], piece["duration"], piece["pitch"].astype(int), strict=True))
        for fmt in ("musicxml", "mei"):  # the tied symbols read back as the notes
            got = read_back(written[fmt])
            assert [(float(a), float(b), int(c)) for a, b, c in got] == [(float(a), float(b), c) for a, b, c in want]


def test_tied_symbols_in_a_tuplet_keep_their_bracket(tmp_path: Path) -> None:
    """A long note ending in a triplet value: its tied triplet symbol gets a bracket that closes."""
    from engraving_truth import N, truth_piece

    from overseer.engraving.notation import bars

    notes = [N(0, 16 + 1 / 3, 72, note_type="breve"), N(16 + 1 / 3, 1 / 3, 74, note_type="eighth", tuplet=1),
             N(16 + 2 / 3, 1 / 3, 76, note_type="eighth", tuplet=1), N(17, 3, 77, note_type="half", dots=1),
             N(0, 20, 48, staff=2, voice=1, note_type="breve")]  # fmt: skip
    piece = truth_piece(notes, bars(20.0, 20, 4))
    res = pp.postprocess(piece, oracle(piece))
    pp.check_result(piece, res)
    assert res["split_note"].size >= 3 and (res["split_tuplet_group"] >= 0).any()
    written = ex.export_score(piece, res, tmp_path, "triplet", pages=0)
    for fmt in ("musicxml", "mei"):
        assert len(read_back(written[fmt])) == 5


def test_engrave_the_cadenza_and_a_zero_length_note(capsys, model, tmp_path, one_torch_thread) -> None:
    src = es.write(tmp_path, "cadenza.musicxml", cadenza())
    code, out, err = run(capsys, "engrave", src, "--model", model, "--out", tmp_path / "c", "--pages", "0")
    assert code == 0, err
    assert "Traceback" not in err and "engraved 10 notes" in out
    assert (0.0, 16.0, 72) in [(float(a), float(b), int(c)) for a, b, c in read_back(tmp_path / "c" / "cadenza.mei")]
    zero = es.simple_piano(es.note("C", 5, 0, staff=1), es.note("D", 5, 4 * Q, kind="whole", staff=1))
    src = es.write(tmp_path, "zero.musicxml", zero)
    code, out, err = run(capsys, "engrave", src, "--model", model, "--out", tmp_path / "z", "--pages", "0")
    assert code == 0, err
    assert f"overseer: warning: {src}: 1 zero-length non-grace note dropped (the first at quarter 0, pitch 72)" in err
    with pytest.warns(ScoreWarning, match="zero-length"):
        assert read_piece(src)["onset"].size == 2


# --- batch engraving ---------------------------------------------------------------------------------------


def test_batch_names_come_from_relative_paths() -> None:
    assert batch_names(["a/xml_score.musicxml", "b/xml_score.musicxml"]) == ["a__xml_score", "b__xml_score"]
    assert batch_names(["p.mxl", "p.mid", "q.krn"]) == ["p_mxl", "p_mid", "q"]


def test_batch_engrave_a_folder(capsys, model, tmp_path, monkeypatch, one_torch_thread) -> None:
    monkeypatch.setenv("OVERSEER_PROGRESS", "0")
    src = tmp_path / "asap"
    es.write(src, "Bach/Prelude/xml_score.musicxml", es.piano_two_staves())
    es.write(src, "Chopin/Etude/xml_score.musicxml", melody(("G", 5), ("A", 5), ("B", 5), ("C", 6)))
    song = es.three_staves().replace("<part-name>Voice</part-name>", "<part-name>Voice\n\n\n(soprano)\n</part-name>")
    es.write(src, "Schubert/Lied/xml_score.musicxml", song)
    es.write(src, "notes.txt", "not a score")
    out = tmp_path / "engraved"
    code, stdout, stderr = run(capsys, "engrave", src, "--model", model, "--out", out, "--pages", "0")
    assert code == 1, stderr  # some skipped, the others written
    assert "engraved 2 of 3 pieces" in stdout and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["Bach__Prelude__xml_score", "Chopin__Etude__xml_score",
                                                     "batch.json"]  # fmt: skip
    assert sorted(p.name for p in (out / "Bach__Prelude__xml_score").iterdir()) == [
        "Bach__Prelude__xml_score.mei",
        "Bach__Prelude__xml_score.musicxml",
    ]
    line = next(x for x in stderr.splitlines() if x.startswith("overseer: skipped"))
    assert line.endswith("Schubert/Lied/xml_score.musicxml: more than two staves (Voice (soprano): 1, Piano: 2); "
                         "a piano score has two")  # fmt: skip
    batch = json.loads((out / "batch.json").read_text())
    assert batch["engraved"] == 2 and batch["skipped"] == 1
    assert batch["skipped_sources"][0]["path"] == "Schubert/Lied/xml_score.musicxml"
    assert "\n" not in batch["skipped_sources"][0]["reason"]
    # several files: named from their common folder; all engraved: exit 0
    files = [src / "Bach/Prelude/xml_score.musicxml", src / "Chopin/Etude/xml_score.musicxml"]
    code, stdout, _ = run(capsys, "engrave", *files, "--model", model, "--out", tmp_path / "two", "--pages", "0")
    assert code == 0 and "engraved 2 of 2 pieces" in stdout
    assert {p.name for p in (tmp_path / "two").iterdir()} == {"Bach__Prelude__xml_score", "Chopin__Etude__xml_score",
                                                              "batch.json"}  # fmt: skip


def test_batch_where_nothing_can_be_engraved(capsys, model, tmp_path) -> None:
    es.write(tmp_path / "bad", "a.musicxml", "garbage")
    code, stdout, stderr = run(capsys, "engrave", tmp_path / "bad", tmp_path / "missing.mid", "--model", model,
                               "--out", tmp_path / "out", "--pages", "0")  # fmt: skip
    assert code == 2 and "engraved 0 of 2 pieces" in stdout
    assert "missing.mid: no such file" in stderr and "a.musicxml: cannot parse score" in stderr
    with pytest.raises(InputError, match="no score or MIDI files"):
        engrave_batch([], model, tmp_path / "o")
