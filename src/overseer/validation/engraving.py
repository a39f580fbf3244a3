"""Great Expectations suites for the score-graph schema (``overseer.engraving.schema``).

Four suites run on ingest@engraving's prepared pieces (``<prepared>/<split>/<piece>.npz``):

* ``engraving_notes``, one row per note (``file``, ``note`` name it): feature ranges (one pitch
  class, octave, squashed duration, bar position in [0, 1), downbeat flag), positive durations,
  bar indices inside the piece, every label in its class set or -1 (unknown);
* ``engraving_edges``, one row per input edge and per voice/chord candidate: both endpoints are
  notes of the graph, no self-loops, candidate labels in {-1, 0, 1};
* ``engraving_relations``, one row per edge type: no edge type is empty across the data set;
* ``engraving_voice_coverage``, one row per note of a known voice that has a later note of its
  voice in the same bar: the candidate set contains a true voice edge out of it (a true voice
  edge the candidates missed could never be predicted).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from overseer.engraving import schema
from overseer.engraving.data.labels import NO_SUCCESSOR, successor_onset
from overseer.validation.core import ValidationReport, gx_column, gx_expectations, run_suite

REPORT_TITLE = "Score-graph validation"
CANDIDATES = {"voice_cand": "y_voice", "chord_cand": "y_chord"}


def piece_files(prepared: Path) -> list[Path]:
    """Every prepared piece, split folders in a fixed order."""
    return sorted(prepared.glob("*/*.npz"))


def note_table(file: Path, piece: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per note: the features, durations, bar index and labels that the suite checks."""
    x = piece["x"]
    n = x.shape[0]
    feature = {name: x[:, i] for i, name in enumerate(schema.FEATURES)}
    frame = pd.DataFrame(
        {
            "file": str(file),
            "note": np.arange(n),
            "pitch_class_sum": x[:, : schema.PITCH_CLASS_FEATURES].sum(axis=1),
            "octave": feature["octave"],
            "duration_feature": feature["duration"],
            "bar_position": feature["bar_position"],
            "downbeat": feature["downbeat"],
            "duration": piece["duration"],
            "bar": piece["bar"],
            "n_bars": piece["bar_start"].shape[0],
        }
    )
    for task in schema.NODE_TASKS:
        frame[f"y_{task}"] = piece[f"y_{task}"].astype(np.int64)
    return frame


def edge_table(file: Path, piece: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per input edge (label -2: none) and per candidate (its label)."""
    n = piece["x"].shape[0]
    parts = []
    kinds = {**{r: (piece[f"edges_{r}"], None) for r in schema.RELATIONS}}
    kinds.update({c: (piece[c], piece[y]) for c, y in CANDIDATES.items()})
    for kind, (edges, labels) in kinds.items():
        edges = np.asarray(edges).reshape(2, -1)
        parts.append(
            pd.DataFrame(
                {
                    "file": str(file),
                    "kind": kind,
                    "edge": np.arange(edges.shape[1]),
                    "u": edges[0],
                    "w": edges[1],
                    "n_notes": n,
                    "label": -2 if labels is None else np.asarray(labels).astype(np.int64),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["self_loop"] = frame["u"] == frame["w"]
    return frame


def voice_coverage_table(file: Path, piece: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Notes of a known staff and voice that have a voice successor, and whether a true candidate leaves them.

    The successor is ``labels.successor_onset`` with durations, the rule of the truth itself: a
    later note of the note's (bar, staff, voice) starting at or after its end.
    """
    staff, voice = piece["y_staff"], piece["voice"]
    known = (voice >= 0) & (staff >= 0)
    nxt = successor_onset(piece["onset"], piece["bar"], staff, voice, duration=piece["duration"])
    notes = np.flatnonzero(known & (nxt != NO_SUCCESSOR))
    cand, y = piece["voice_cand"].reshape(2, -1), piece["y_voice"]
    with_true_edge = np.zeros(np.asarray(piece["onset"]).shape[0], dtype=bool)
    with_true_edge[cand[0][y == 1]] = True
    return pd.DataFrame({"file": str(file), "note": notes, "true_voice_edge_out": with_true_edge[notes]})


def note_expectations() -> list:
    gxe = gx_expectations()
    out = [
        gxe.ExpectColumnValuesToBeBetween(column="pitch_class_sum", min_value=1.0, max_value=1.0),
        gxe.ExpectColumnValuesToBeBetween(column="octave", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnValuesToBeBetween(column="duration_feature", min_value=0.0, max_value=1.0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="bar_position", min_value=0.0, max_value=1.0, strict_max=True),
        gxe.ExpectColumnValuesToBeInSet(column="downbeat", value_set=[0.0, 1.0]),
        gxe.ExpectColumnValuesToBeBetween(column="duration", min_value=0.0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="bar", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="n_bars", column_B="bar"),
    ]
    for task, classes in schema.NODE_TASKS.items():
        out.append(gxe.ExpectColumnValuesToBeInSet(column=f"y_{task}", value_set=list(range(-1, len(classes)))))
    return out


def edge_expectations() -> list:
    gxe = gx_expectations()
    is_candidate = gx_column("label") >= -1
    return [
        gxe.ExpectColumnValuesToBeBetween(column="u", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="w", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="n_notes", column_B="u"),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="n_notes", column_B="w"),
        gxe.ExpectColumnValuesToBeInSet(column="self_loop", value_set=[False]),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[-1, 0, 1], row_condition=is_candidate),
    ]


def validate_engraving(prepared: str | Path, min_pieces: Mapping[str, int]) -> ValidationReport:
    """Run the suites on ``prepared`` and return the report; its ``raise_for_failures`` names the
    piece file, the note or edge and the expectation of the failures."""
    from tqdm import tqdm

    prepared = Path(prepared)
    notes, edges, coverage = [], [], []
    files = piece_files(prepared)
    for file in tqdm(files, desc="score graphs", unit="piece", leave=False):
        piece = schema.load_piece(file)
        notes.append(note_table(file, piece))
        edges.append(edge_table(file, piece))
        coverage.append(voice_coverage_table(file, piece))
    gxe = gx_expectations()
    pieces = pd.DataFrame(
        [
            {"split": s, "pieces": sum(f.parent.name == s for f in files), "minimum": int(m)}
            for s, m in min_pieces.items()
        ]
    )
    results = [
        run_suite(
            pieces,
            [gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="pieces", column_B="minimum", or_equal=True)],
            "engraving_pieces",
            id_columns=("split",),
        )
    ]
    if files:
        note_rows, edge_rows = pd.concat(notes, ignore_index=True), pd.concat(edges, ignore_index=True)
        results.append(run_suite(note_rows, note_expectations(), "engraving_notes", id_columns=("file", "note")))
        results.append(
            run_suite(edge_rows, edge_expectations(), "engraving_edges", id_columns=("file", "kind", "edge"))
        )
        counts = edge_rows.groupby("kind").size().reindex([*schema.RELATIONS, *CANDIDATES], fill_value=0)
        relations = pd.DataFrame({"kind": counts.index, "edges": counts.to_numpy()})
        results.append(
            run_suite(
                relations,
                [gxe.ExpectColumnValuesToBeBetween(column="edges", min_value=1)],
                "engraving_relations",
                id_columns=("kind",),
            )
        )
        cover = pd.concat(coverage, ignore_index=True)
        results.append(
            run_suite(
                cover,
                [gxe.ExpectColumnValuesToBeInSet(column="true_voice_edge_out", value_set=[True])],
                "engraving_voice_coverage",
                id_columns=("file", "note"),
            )
        )
        summary = {
            "pieces": {s: int(n) for s, n in pieces.set_index("split")["pieces"].items()},
            "notes": len(note_rows),
            "edges": {k: int(v) for k, v in counts.items()},
            "unknown_label_rate": {t: round(float((note_rows[f"y_{t}"] < 0).mean()), 4) for t in schema.NODE_TASKS},
        }
    else:
        summary = {"pieces": {}, "notes": 0}
    return ValidationReport(REPORT_TITLE, results, summary=summary)
