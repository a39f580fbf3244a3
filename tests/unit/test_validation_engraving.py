"""validate@engraving: the score-graph suites pass on real prepared pieces and name piece, note and expectation."""

from __future__ import annotations

from pathlib import Path

import engraving_scores as es
import numpy as np
import pytest

from overseer.engraving import schema
from overseer.engraving.data.ingest import ingest_engraving
from overseer.validation.core import ValidationFailed, validate_and_report
from overseer.validation.engraving import validate_engraving

MIN = {"train": 1, "validation": 1, "test": 1}


def with_a_gap() -> str:
    """Staff 1: C5 quarter, quarter rest, E5 G5 quarters; staff 2: C3 quarter, rests. One silence edge."""
    q = es.Q
    rest = es.note("", 0, q, staff=1, rest=True)
    bar = es.measure(
        1,
        es.attributes(),
        es.note("C", 5, q, staff=1),
        rest,
        es.note("E", 5, q, staff=1),
        es.note("G", 5, q, staff=1),
        es.backup(4 * q),
        es.note("C", 3, q, voice=5, staff=2),
        es.note("", 0, 3 * q, kind="half", dots=1, voice=5, staff=2, rest=True),
    )
    return es.score(es.part("P1", bar))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engraving")
    scores = root / "scores"
    for i in range(3):
        es.write(scores, f"piano{i}.musicxml", es.piano_two_staves())
        es.write(scores, f"hands{i}.xml", es.two_parts())
        es.write(scores, f"gap{i}.musicxml", with_a_gap())
    ingest_engraving({"source": str(scores), "cache_dir": None}, root / "prepared")
    return root / "prepared"


def corrupt(prepared: Path, tmp_path: Path, change) -> tuple[Path, Path]:
    """A copy of ``prepared`` whose first training piece went through ``change``; returns (copy, that piece)."""
    copy = tmp_path / "prepared"
    for file in prepared.glob("*/*.npz"):
        (copy / file.parent.name).mkdir(parents=True, exist_ok=True)
        (copy / file.parent.name / file.name).write_bytes(file.read_bytes())
    target = sorted((copy / "train").glob("*.npz"))[0]
    piece = schema.load_piece(target)
    change(piece)
    schema.save_piece(target, piece)
    return copy, target


def test_real_pieces_pass_and_the_report_summarises_them(prepared: Path, tmp_path: Path) -> None:
    report = validate_engraving(prepared, MIN)
    validate_and_report(report, tmp_path / "report")
    results = report.results
    assert report.success and all(r.success for r in results)
    assert {r.suite_name for r in results} == {
        "engraving_pieces",
        "engraving_notes",
        "engraving_edges",
        "engraving_relations",
        "engraving_voice_coverage",
    }
    assert "PASSED" in (tmp_path / "report" / "validation.md").read_text()


def _edge_out_of_graph(piece: dict) -> None:
    piece["edges_follow"][1, 0] = piece["x"].shape[0] + 3


def _label_out_of_set(piece: dict) -> None:
    piece["y_clef"][2] = 7


def _bar_position_past_the_bar(piece: dict) -> None:
    piece["x"][1, schema.FEATURES.index("bar_position")] = 1.0


def _lost_true_voice_edge(piece: dict) -> None:
    piece["y_voice"][np.flatnonzero(piece["y_voice"] == 1)[0]] = 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_edge_out_of_graph, "expect_column_pair_values_a_to_be_greater_than_b(n_notes, w"),
        (_label_out_of_set, "note 2: expect_column_values_to_be_in_set(y_clef"),
        (_bar_position_past_the_bar, "note 1: expect_column_values_to_be_between(bar_position"),
        (_lost_true_voice_edge, "expect_column_values_to_be_in_set(true_voice_edge_out"),
    ],
)
def test_a_broken_piece_fails_naming_file_record_and_expectation(
    prepared: Path, tmp_path: Path, change, expected: str
) -> None:
    copy, target = corrupt(prepared, tmp_path, change)
    with pytest.raises(ValidationFailed) as err:
        validate_and_report(validate_engraving(copy, MIN), tmp_path / "report")
    message = str(err.value)
    assert str(target) in message
    assert expected in message


def test_an_empty_edge_type_and_a_missing_split_fail(prepared: Path, tmp_path: Path) -> None:
    copy = tmp_path / "prepared"
    for file in prepared.glob("*/*.npz"):
        piece = schema.load_piece(file)
        piece["edges_silence"] = np.zeros((2, 0), dtype=np.int64)
        piece["edges_rev_silence"] = np.zeros((2, 0), dtype=np.int64)
        schema.save_piece(copy / file.parent.name / file.name, piece)
    with pytest.raises(ValidationFailed, match=r"silence: expect_column_values_to_be_between\(edges"):
        validate_and_report(validate_engraving(copy, MIN), tmp_path / "report")
    with pytest.raises(ValidationFailed, match="holdout"):
        validate_and_report(validate_engraving(copy, {**MIN, "holdout": 1}), tmp_path / "report")
