"""A short model card per registered model version: what it is, what it was trained on, its
held-out scores, its known limits and how to load or serve it.

The same Markdown goes into the MLflow model version's description (the UI renders it) and, without
the version number, into ``MODEL_CARD.md`` beside the export, so that re-exporting the same model
writes the same bytes (registry numbers are run-time values, see :mod:`overseer.io`).
No MLflow here: the text is computed from plain mappings.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overseer.io import write_text

__all__ = ["CARDS", "CARD_FILE", "CardSpec", "known_limits", "model_card", "training_facts", "write_model_card"]

CARD_FILE = "MODEL_CARD.md"
HELDOUT_PREFIX = "heldout."


@dataclass(frozen=True)
class CardSpec:
    """What a card says about one model beyond its numbers."""

    what: str  # one sentence: the model and what it returns
    training_keys: tuple[str, ...]  # training facts shown, in order (missing ones are left out)
    limits: tuple[str, ...]  # limits that hold for every version; data-driven ones are added by known_limits


CARDS: dict[str, CardSpec] = {
    "cnn": CardSpec(
        what="ResNet50V2 transfer-learning classifier of railway trackbed photos (TensorFlow/Keras): one surface "
        "class per image, with its confidence.",
        training_keys=(
            "classes",
            "n_train",
            "n_val",
            "n_train_augmented",
            "epochs_run",
            "best_epoch",
            "best_val_categorical_accuracy",
            "weights_used",
        ),
        limits=(
            "trained and scored on photos of one railway's trackbed; other cameras, angles or lighting are untested",
        ),
    ),
    "rf": CardSpec(
        what="Random forest (scikit-learn) that classifies seismic voxels or well-log rows into facies from "
        "the validated attribute combination.",
        training_keys=(
            "estimator",
            "features",
            "facies",
            "best_n_estimators",
            "cv_scheme",
            "cv_pooled_macro_f1",
            "cv_pooled_accuracy",
            "importance",
        ),
        limits=(
            "trained on the picks of one survey: another survey's facies, or its attributes computed "
            "differently, need new picks and a new training",
        ),
    ),
    "gtm": CardSpec(
        what="Generative topographic map (GTM) of seismic attributes with per-facies probability volumes "
        "(scikit-learn API): facies and their probabilities per voxel.",
        training_keys=(
            "features",
            "facies",
            "rows",
            "latent_nodes",
            "basis_functions",
            "em_iterations",
            "converged",
            "likelihood",
            "beta",
            "picks_per_facies",
        ),
        limits=(
            "under-confident: its probabilities spread over facies that overlap in attribute space, so the "
            "winning facies often has a modest probability; compare probabilities between voxels rather than "
            "against a fixed threshold",
            "trained on the picks of one survey: another survey needs new picks and a new training",
        ),
    ),
    "gnn": CardSpec(
        what="EngravingGNN (PyTorch Geometric): a hybrid heterogeneous GNN + GRU that predicts voice, chord, "
        "staff, spelling, key, stem, octave shift, clef and duration of every note of a quantized score.",
        training_keys=(
            "n_train",
            "n_val",
            "n_train_notes",
            "n_val_notes",
            "epochs_run",
            "best_epoch",
            "stopped",
            "val_f1_voice",
            "val_f1_chord",
        ),
        limits=(
            "piano scores only (two staves, one instrument); other ensembles are out of its training data",
            "the input must be quantized (notes on a metrical grid, as in MusicXML/MEI/kern), not a "
            "performance recording or unquantized MIDI",
        ),
    ),
}

WEAK_SCORE = 0.6  # a held-out Table-1 column below this is named as a weak head


def _fmt(value: Any, name: str = "") -> str:
    """A value as a card shows it: counts as integers, scores to four decimals, lists and dicts inline."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        last = name.rsplit(".", 1)[-1]
        if value.is_integer() and (last.startswith("n_") or last in ("undefined_rows", "support")):
            return str(int(value))
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v, str(k))}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def training_facts(key: str, training: Mapping[str, Any]) -> dict[str, str]:
    """The training facts a card shows for model ``key``, formatted, in ``CARDS[key].training_keys`` order."""
    return {k: _fmt(training[k], k) for k in CARDS[key].training_keys if k in training and training[k] is not None}


def _metric(heldout: Mapping[str, float], name: str) -> float | None:
    value = heldout.get(f"{HELDOUT_PREFIX}{name}", heldout.get(name))
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _largest_overlap(overlap: Any) -> tuple[str, str, float] | None:
    """The pair of different facies whose attribute pdfs overlap most (GTM's ``pdf_overlap``)."""
    if not isinstance(overlap, Mapping):
        return None
    pairs = [
        (a, b, float(v))
        for a, row in overlap.items()
        if isinstance(row, Mapping)
        for b, v in row.items()
        if a < b and isinstance(v, int | float)
    ]
    return max(pairs, key=lambda p: p[2]) if pairs else None


def known_limits(key: str, heldout: Mapping[str, float], training: Mapping[str, Any]) -> list[str]:
    """Known limits of model ``key``: the fixed ones of ``CARDS`` plus those its numbers show."""
    limits: list[str] = []
    if key == "cnn":
        classes = training.get("classes") or []
        if classes:
            limits.append(
                f"classes fixed to the {len(classes)} it was trained on ({', '.join(classes)}): a photo of "
                "anything else still gets one of them"
            )
        used = str(training.get("weights_used", ""))
        if used.startswith("none"):
            limits.append(f"backbone not pretrained ({used}): expect weaker transfer than an ImageNet start")
    elif key in ("rf", "gtm"):
        features = training.get("features") or training.get("feature_names") or []
        if features:
            limits.append(
                f"needs its attributes by name ({', '.join(features)}), computed as in training; "
                "a missing one is an error, never substituted"
            )
        facies = training.get("facies") or []
        if facies:
            limits.append(f"knows only this survey's facies ({', '.join(facies)})")
        log_loss, ece = _metric(heldout, "probabilities.log_loss"), _metric(heldout, "probabilities.ece")
        if log_loss is not None:
            calibration = f"held-out log loss {log_loss:.3f}" + (f", ECE {ece:.3f}" if ece is not None else "")
            if key == "rf":
                limits.append(f"class probabilities are not calibrated ({calibration}): decide on the classes")
            else:
                limits.append(f"probability calibration: {calibration}")
        pair = _largest_overlap(training.get("pdf_overlap"))
        if key == "gtm" and pair is not None:
            limits.append(f"facies {pair[0]} and {pair[1]} overlap most in attribute space (pdf overlap {pair[2]:.2f})")
    elif key == "gnn":
        weak = {
            name: value
            for name in ("voice_f1", "chord_f1", "acc_staff", "acc_spelling", "acc_key", "acc_stem", "acc_clef")
            if (value := _metric(heldout, f"post_processed.{name}")) is not None and value < WEAK_SCORE
        }
        for name, value in weak.items():
            head = name.removeprefix("acc_").removesuffix("_f1")
            limits.append(f"{head} head weak: held-out {name} {value:.3f}")
        pieces = _metric(heldout, "n_pieces")
        if pieces is not None:
            limits.append(f"held-out scores come from {int(pieces)} pieces only: differences of a few points are noise")
    limits.extend(CARDS[key].limits)
    return limits


def model_card(
    key: str,
    name: str,
    version: int | None,
    heldout: Mapping[str, float],
    training: Mapping[str, Any],
    inputs: Mapping[str, str],
    limits: Sequence[str] | None = None,
    *,
    primary: str | None = None,
    family: str | None = None,
    source: str | None = None,
) -> str:
    """The Markdown model card of version ``version`` of registered model ``name`` (model key ``key``).

    ``heldout``: held-out metrics (``heldout.<name>`` or bare names), ``primary`` the one promotion compares;
    ``training``: training facts (the train report and the model's config); ``inputs``: content digest per
    input path; ``limits``: known limits (default :func:`known_limits`). ``version=None`` leaves the number
    out (the file beside the export); ``source`` names the held-out metrics file.
    """
    limits = known_limits(key, heldout, training) if limits is None else list(limits)
    title = f"# {name}" + (f" — version {version}" if version is not None else "")
    lines = [title, "", CARDS[key].what]
    if family:
        lines += ["", f"Family `{family}`, exported by the DVC stage `export@{key}`."]

    lines += ["", "## Trained on", ""]
    facts = training_facts(key, training)
    if facts:
        lines += ["| fact | value |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in facts.items())]
    else:
        lines.append("No training facts recorded.")
    if inputs:
        lines += ["", "Input data (content digests as `dvc.lock` records them):", "", "| path | md5 |", "|---|---|"]
        lines += [f"| `{path}` | `{digest}` |" for path, digest in sorted(inputs.items())]

    lines += ["", "## Held-out scores", ""]
    scores = {k.removeprefix(HELDOUT_PREFIX): float(v) for k, v in heldout.items()}
    if source:
        lines.append(f"From `{source}`.")
    if primary:
        lines.append(
            f"Promotion compares **{primary}** (`overseer promote` refuses a version worse than the champion)."
        )
    lines += ["", "| metric | value |", "|---|---|"]
    if primary and primary in scores:
        lines.append(f"| **{primary}** | **{_fmt(scores[primary], primary)}** |")
    lines += [f"| {k} | {_fmt(v, k)} |" for k, v in scores.items() if k != primary]

    lines += ["", "## Known limits", ""]
    lines += [f"- {limit}" for limit in limits] or ["- none recorded"]

    lines += [
        "",
        "## Load and serve",
        "",
        "```python",
        "import mlflow",
        f'model = mlflow.pyfunc.load_model("models:/{name}@champion")',
        "```",
        "",
        "```bash",
        f"mlflow models serve -m models:/{name}@champion --env-manager local",
        "```",
        "",
    ]
    if version is not None:
        lines.append(
            f"This version is `models:/{name}/{version}`; export gives it the alias `challenger`, "
            f"`overseer promote {key}` moves `champion` to it."
        )
    else:
        lines.append(
            "The export's registry version carries the alias `challenger`; "
            f"`overseer promote {key}` moves `champion` to it (version numbers: MLflow UI → Models → {name})."
        )
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``folder/MODEL_CARD.md`` atomically; return the path."""
    return write_text(Path(folder) / CARD_FILE, text)
