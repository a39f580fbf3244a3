"""``overseer evaluate engraving --model DIR CORPUS_DIR``: a saved EngravingGNN on any folder of scores.

:func:`evaluate_corpus` reads the folder through ingest's :func:`~.data.ingest.read_corpus` (the
parse cache included; bad scores skipped with their reasons, zero-length notes dropped and
counted), then runs evaluate@gnn's evaluation (:func:`.evaluate.evaluate_pieces`: prediction,
post-processing, scores; a piece that fails is skipped) and writes the same files as evaluate@gnn
(``metrics.json``, ``table1.md``, ``pieces.csv``, ``tasks/``), with the scores refused on reading
first in ``skipped.csv``, and ``corpus.json`` (what was read, dropped and skipped; the options).
The output folder is written whole or not at all.

Its own module, not in :mod:`.evaluate`: evaluate@gnn never reads scores, so its DVC deps stay
what the stage runs.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from overseer.engraving.data.ingest import CACHE_DIR, parse_cache, read_corpus, reason_kind
from overseer.engraving.evaluate import Evaluation, Predict, evaluate_pieces, skipped_table, write_evaluation
from overseer.errors import InputError
from overseer.io import atomic_dir


def evaluate_corpus(
    model_dir: str | os.PathLike,
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    predict_fn: Predict | None = None,
    threshold: float = 0.5,
    min_clef_run: int = 4,
    max_notes: int | None = None,
    silence: str = "gap",
    exotic_tuplets: str = "unknown",
    cache_dir: str | os.PathLike | None = CACHE_DIR,
    device: str | None = None,
    progress: bool = True,
    key_change_penalty: float | None = None,
) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate the model saved in ``model_dir`` (or ``predict_fn``) on every score of ``corpus_dir``
    into ``out_dir`` (written whole or not at all; module docstring). Returns the evaluation and
    ``corpus.json``'s content.

    ``silence``/``exotic_tuplets`` read the scores as ``ingest.engraving`` does (use the values the
    model was trained with); ``cache_dir`` is ingest's parse cache (relative: at the repository root;
    None: none). ``key_change_penalty`` smooths the key over each piece (:mod:`.key_smoothing`; 0:
    per bar); None: the model's (``postprocess.json`` in ``model_dir``, else the default constant).
    The model is loaded before any score is read.
    """
    from overseer.engraving.engrave import check_predictions, model_key_change_penalty, model_predict_fn

    if predict_fn is None:
        predict_fn = model_predict_fn(model_dir, device=device, max_notes=max_notes)
    if key_change_penalty is None:
        key_change_penalty = model_key_change_penalty(model_dir)

    def predict(piece: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        pred = predict_fn(dict(piece))
        check_predictions(dict(piece), pred)
        return pred

    cache = parse_cache(cache_dir)
    corpus = read_corpus(
        corpus_dir, cache, silence=silence, exotic_tuplets=exotic_tuplets, what="CORPUS_DIR", desc="read",
        progress=progress,
    )  # fmt: skip
    read_skips = [{"piece": "", "path": s["path"], "step": "read", "reason": s["reason"]} for s in corpus.skipped]
    if not corpus.pieces:
        first = f"; the first: {read_skips[0]['path']}: {read_skips[0]['reason']}" if read_skips else ""
        raise InputError(f"no usable score in the corpus ({len(read_skips)} skipped{first})", path=corpus_dir)
    ids = list(corpus.pieces)
    evaluation = evaluate_pieces(
        [corpus.pieces[i] for i in ids], ids, predict, threshold=threshold, min_clef_run=min_clef_run,
        paths=[corpus.entries[i]["path"] for i in ids], desc="evaluate", progress=progress,
        key_change_penalty=float(key_change_penalty),
    )  # fmt: skip
    evaluation.skipped = skipped = read_skips + evaluation.skipped  # the scores refused on reading first
    evaluation.artifacts["metrics.json"] = evaluation.summary()
    evaluation.artifacts["skipped.csv"] = skipped_table(skipped).to_csv(index=False)
    info = {
        "corpus": str(corpus_dir),
        "model": str(model_dir) if model_dir is not None else None,
        "scores": len(corpus.pieces) + len(corpus.skipped),
        "pieces": evaluation.n_pieces,
        "notes": int(evaluation.per_piece["notes"].sum()) if len(evaluation.per_piece) else 0,
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(reason_kind(s["reason"]) for s in skipped).most_common()),
        "zero_length_notes": corpus.zero_length_notes,
        "exotic_tuplet_notes": corpus.exotic_notes,
        "options": {
            "threshold": threshold, "min_clef_run": min_clef_run, "max_notes": max_notes, "silence": silence,
            "exotic_tuplets": exotic_tuplets, "key_change_penalty": float(key_change_penalty),
        },
        "cache": {"hits": cache.hits, "misses": cache.misses, "folder": str(cache.folder) if cache.folder else None},
    }  # fmt: skip
    with atomic_dir(out_dir) as tmp:
        write_evaluation(evaluation, tmp, {"corpus.json": info})
    return evaluation, info
