"""The model registry says what is in production: aliases ``challenger`` and ``champion``.

Export gives every new registered model version its lineage and held-out scores as tags (git commit,
DVC experiment, input digests, ``heldout.<metric>``), a model card as description, and the alias
``challenger``. :func:`promote` moves ``champion`` to a version after comparing its primary held-out
metric with the current champion's. ``models:/NAME@champion`` is what serving loads.

The functions take an ``MlflowClient`` (``overseer.tracking.open_store``) and never import MLflow
themselves: ``overseer.tracking`` stays the one module that does.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from overseer.errors import InputError
from overseer.io import read_json
from overseer.model_card import CARD_FILE, HELDOUT_PREFIX, model_card, write_model_card

if TYPE_CHECKING:
    from overseer.tracking import MlflowClient

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "FAMILY_MODELS",
    "MODELS",
    "ModelSpec",
    "Promotion",
    "annotate_export",
    "annotate_version",
    "current_champion",
    "heldout_metrics",
    "promote",
    "registered_name",
    "resolve_model",
    "version_tags",
]

CHALLENGER = "challenger"
CHAMPION = "champion"
MAX_DESCRIPTION_CHARS = 5000  # MLflow's SQL stores keep a version description in a 5000-character column
MAX_TAG_KEY_CHARS = 250
LINEAGE_TAGS = ("git.commit", "dvc.experiment", "overseer.family", "overseer.stage")
INPUT_TAG_PREFIX = "input.md5."
PRIMARY_TAG = "overseer.primary_metric"
PROMOTION_TAG = "overseer.promotion"

# the post-processed columns of the EngravingGNN paper's Table 1
TABLE1 = tuple(
    f"post_processed.{c}"
    for c in (
        "voice_f1",
        "chord_f1",
        "acc_staff",
        "acc_spelling",
        "acc_key",
        "acc_stem",
        "acc_octave_shift",
        "acc_clef",
        "acc_duration",
    )
)


@dataclass(frozen=True)
class ModelSpec:
    """One exported model: where its numbers are and which one decides a promotion."""

    family: str
    params_key: str  # export.<params_key> in params.yaml (registered_model_name)
    primary: str  # the held-out metric promotion compares, without the ``heldout.`` prefix
    higher_is_better: bool
    metrics_file: Path  # held-out evaluation metrics (a dep of export@<key>)
    model_dir: Path  # the trained model folder: its config.json holds training facts
    train_report: Path  # the train stage's metrics.json: training facts
    sections: tuple[str, ...] = ("macro", "weighted", "probabilities", "recovery")  # flattened into heldout.*
    derived: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name: mean of these metrics


MODELS: dict[str, ModelSpec] = {
    "cnn": ModelSpec(
        "trackbed",
        "cnn",
        "macro.f1",
        True,
        Path("reports/trackbed/eval/metrics.json"),
        Path("models/trackbed/train"),
        Path("reports/trackbed/train/metrics.json"),
    ),
    "rf": ModelSpec(
        "seismic",
        "rf",
        "macro.f1",
        True,
        Path("reports/seismic/eval/metrics.json"),
        Path("models/seismic/train"),
        Path("reports/seismic/train/metrics.json"),
    ),
    "gtm": ModelSpec(
        "seismic",
        "gtm",
        "macro.f1",
        True,
        Path("reports/seismic/gtm/eval/metrics.json"),
        Path("models/seismic/gtm/train"),
        Path("reports/seismic/gtm/train/metrics.json"),
    ),
    "gnn": ModelSpec(
        "engraving",
        "gnn",
        "table1_mean",
        True,
        Path("reports/engraving/eval/metrics.json"),
        Path("models/engraving/train"),
        Path("reports/engraving/train/metrics.json"),
        sections=("post_processed",),
        derived={"table1_mean": TABLE1},
    ),
}

# the model `overseer promote FAMILY` means; the others by their key (`overseer promote gtm`)
FAMILY_MODELS = {"trackbed": "cnn", "seismic": "rf", "engraving": "gnn"}


class VersionLike(Protocol):
    """What this module reads of an MLflow ``ModelVersion``."""

    version: Any
    tags: dict[str, str]
    aliases: list[str]
    description: str | None


def resolve_model(key_or_family: str) -> str:
    """The model key of ``key_or_family`` (``trackbed`` → ``cnn``; ``gtm`` stays ``gtm``); InputError otherwise."""
    if key_or_family in MODELS:
        return key_or_family
    if key_or_family in FAMILY_MODELS:
        return FAMILY_MODELS[key_or_family]
    choices = ", ".join([*FAMILY_MODELS, *MODELS])
    raise InputError(f"unknown model or family {key_or_family!r}; expected one of {choices}")


def registered_name(key: str, params_file: str | os.PathLike = "params.yaml") -> str:
    """The registered model name of ``key`` (``export.<key>.registered_model_name`` in ``params_file``)."""
    from overseer.stage import load_params

    return str(
        load_params("export", MODELS[resolve_model(key)].params_key, params_file=params_file)["registered_model_name"]
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _flat_numbers(values: Mapping[str, Any], prefix: str) -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_numbers(value, f"{name}."))
        elif (number := _number(value)) is not None:
            flat[name] = number
    return flat


def heldout_metrics(key: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flat numeric ``heldout.<name>`` values of an evaluation report, the primary metric first.

    Top-level numbers (``accuracy``, ``n_items``), every number under the spec's sections
    (``macro.f1``, ``probabilities.ece``, ``post_processed.acc_key``), each class's ``per_class.<c>.f1``
    and the derived means (``table1_mean``). A report without the primary metric is an InputError.
    """
    spec = MODELS[resolve_model(key)]
    flat: dict[str, float] = {k: n for k, v in metrics.items() if (n := _number(v)) is not None}
    for section in spec.sections:
        if isinstance(metrics.get(section), Mapping):
            flat.update(_flat_numbers(metrics[section], f"{section}."))
    per_class = metrics.get("per_class")
    if isinstance(per_class, Mapping):
        for name, row in per_class.items():
            if isinstance(row, Mapping) and (f1 := _number(row.get("f1"))) is not None:
                flat[f"per_class.{name}.f1"] = f1
    for name, parts in spec.derived.items():
        missing = [p for p in parts if p not in flat]
        if missing:
            raise InputError(f"{name} needs {', '.join(missing)}, missing from the held-out metrics")
        flat[name] = sum(flat[p] for p in parts) / len(parts)
    if spec.primary not in flat:
        raise InputError(f"held-out metrics of {key} have no {spec.primary!r} (the primary metric)")
    ordered = {spec.primary: flat.pop(spec.primary), **flat}
    return {f"{HELDOUT_PREFIX}{k}": v for k, v in ordered.items()}


def _tag_key(key: str) -> str:
    """``key`` as a valid MLflow tag name: alphanumerics, ``_ - . / : space``, a normalised relative path."""
    cleaned = re.sub(r"[^\w.\-/: ]", "_", key)
    cleaned = posixpath.normpath(cleaned).lstrip("/")
    cleaned = re.sub(r"^(\.\.?/)+", "", cleaned)
    return cleaned[:MAX_TAG_KEY_CHARS] or "_"


def version_tags(
    run_tags: Mapping[str, str], heldout: Mapping[str, float], primary: str | None = None
) -> dict[str, str]:
    """The tags of a new registered model version: the export run's lineage (git commit, DVC experiment,
    family, stage, ``input.md5.<path>`` digests), the ``heldout.*`` metrics as exact decimal strings and,
    when given, the name of the primary metric (``overseer.primary_metric``)."""
    tags = {k: str(run_tags[k]) for k in LINEAGE_TAGS if k in run_tags}
    tags.update({k: str(v) for k, v in run_tags.items() if k.startswith(INPUT_TAG_PREFIX)})
    for name, value in heldout.items():
        label = name if name.startswith(HELDOUT_PREFIX) else f"{HELDOUT_PREFIX}{name}"
        tags[label] = repr(float(value))
    if primary:
        tags[PRIMARY_TAG] = primary
    return {_tag_key(k): v for k, v in tags.items()}


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def annotate_version(
    client: MlflowClient, name: str, version: int, tags: Mapping[str, str], description: str | None
) -> None:
    """Set ``tags`` and ``description`` on version ``version`` of ``name`` and give it the alias ``challenger``."""
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    if description is not None:
        if len(description) > MAX_DESCRIPTION_CHARS:
            note = f"\n\n… (cut; the whole card is {CARD_FILE} beside the export)\n"
            description = description[: MAX_DESCRIPTION_CHARS - len(note)] + note
        client.update_model_version(name, str(version), description=description)
    client.set_registered_model_alias(name, CHALLENGER, str(version))


def _aliases(client: MlflowClient, name: str) -> dict[str, int]:
    try:
        model = client.get_registered_model(name)
    except Exception as exc:
        if _not_found(exc):
            raise InputError(
                f"no registered model {name!r} in the tracking store (run its export stage first)"
            ) from exc
        raise
    aliases = model.aliases or {}
    if not isinstance(aliases, Mapping):  # older entity shapes: a list of alias objects
        aliases = {a.alias: a.version for a in aliases}
    return {str(k): int(v) for k, v in aliases.items()}


def _version(client: MlflowClient, name: str, version: int) -> VersionLike:
    try:
        return client.get_model_version(name, str(version))
    except Exception as exc:
        if _not_found(exc):
            raise InputError(f"{name} has no version {version}") from exc
        raise


def current_champion(client: MlflowClient, name: str) -> VersionLike | None:
    """The version of ``name`` with alias ``champion``, None when there is none (InputError: no such model)."""
    version = _aliases(client, name).get(CHAMPION)
    return None if version is None else _version(client, name, version)


def _heldout_tags(version: VersionLike) -> dict[str, float]:
    values = {}
    for key, value in (version.tags or {}).items():
        if key.startswith(HELDOUT_PREFIX):
            try:
                values[key.removeprefix(HELDOUT_PREFIX)] = float(value)
            except ValueError:
                continue
    return values


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` did: ``message`` says it in words for the command line."""

    key: str
    name: str
    version: int
    previous: int | None  # the champion before (None: there was none)
    metric: str
    value: float
    previous_value: float | None
    changes: dict[str, tuple[float | None, float | None]]  # other held-out metrics that differ: old, new
    forced: bool
    promoted: bool  # False when the version already was the champion
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data (JSON-ready)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _change(old: float | None, new: float | None) -> str:
    delta = f" ({new - old:+.4f})" if old is not None and new is not None else ""
    return f"{_num(old)} → {_num(new)}{delta}"


def promote(
    client: MlflowClient,
    key_or_family: str,
    version: int | None = None,
    force: bool = False,
    *,
    name: str | None = None,
    params_file: str | os.PathLike = "params.yaml",
) -> Promotion:
    """Move alias ``champion`` of a model to ``version`` (default: the ``challenger``).

    ``key_or_family``: ``cnn``, ``rf``, ``gtm``, ``gnn`` or a family (``trackbed``, ``seismic``, ``engraving``).
    ``name``: the registered model (default: ``export.<key>.registered_model_name`` of ``params_file``).
    The version's ``heldout.<primary>`` tag is compared with the champion's; a worse one is refused
    (InputError naming both values) unless ``force``. Unknown models and versions, a version without the
    tag and, without ``force``, a champion without it are InputErrors.
    """
    key = resolve_model(key_or_family)
    spec = MODELS[key]
    name = name or registered_name(key, params_file)
    aliases = _aliases(client, name)
    if version is None:
        if CHALLENGER not in aliases:
            raise InputError(f"{name} has no {CHALLENGER} version (run export@{key}, or give --version)")
        version = aliases[CHALLENGER]
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if isinstance(version, bool) or number < 1:
        raise InputError(f"--version must be a positive version number, got {version!r}")
    version = number
    candidate = _version(client, name, version)
    new = _heldout_tags(candidate)
    if spec.primary not in new:
        raise InputError(
            f"version {version} of {name} has no held-out metric tag {HELDOUT_PREFIX}{spec.primary} "
            f"(registered before tagging, or by hand); re-run export@{key} to register a tagged version"
        )
    previous = aliases.get(CHAMPION)
    if previous == version:
        value = new[spec.primary]
        message = f"{name}: version {version} already is {CHAMPION} ({spec.primary} {_num(value)}); nothing changed"
        return Promotion(key, name, version, previous, spec.primary, value, value, {}, False, False, message)
    old: dict[str, float] = {}
    if previous is not None:
        old = _heldout_tags(_version(client, name, previous))
        if spec.primary not in old and not force:
            raise InputError(
                f"{CHAMPION} version {previous} of {name} has no {HELDOUT_PREFIX}{spec.primary} tag to compare "
                f"with; --force promotes version {version} anyway"
            )
    old_value, new_value = old.get(spec.primary), new[spec.primary]
    worse = old_value is not None and (new_value < old_value if spec.higher_is_better else new_value > old_value)
    if worse and not force:
        sign = "<" if spec.higher_is_better else ">"
        raise InputError(
            f"version {version} of {name} is worse than {CHAMPION} version {previous}: held-out {spec.primary} "
            f"{new_value:.4f} {sign} {old_value:.4f}; --force promotes it anyway"
        )
    forced = bool(force and (worse or (previous is not None and old_value is None)))
    changes = (
        {}
        if previous is None
        else {
            k: (old.get(k), new.get(k))
            for k in [*new, *(k for k in old if k not in new)]
            if k != spec.primary and old.get(k) != new.get(k)
        }
    )
    client.set_registered_model_alias(name, CHAMPION, str(version))
    note = f"over version {previous}" if previous is not None else "first champion"
    note += f" ({spec.primary} {_change(old_value, new_value)})" + ("; forced" if forced else "")
    client.set_model_version_tag(name, str(version), PROMOTION_TAG, note)

    before = f"version {previous}" if previous is not None else "none"
    lines = [f"{name}: {CHAMPION} {before} → version {version}" + (" (forced)" if forced else "")]
    if old_value is None and previous is None:
        lines.append(f"  {spec.primary} (held out, primary): {new_value:.4f}; no champion before to compare with")
    else:
        lines.append(f"  {spec.primary} (held out, primary): {_change(old_value, new_value)}")
    if changes:
        lines.append("  other held-out metrics that changed:")
        lines += [f"    {k}: {_change(a, b)}" for k, (a, b) in changes.items()]
    elif previous is not None:
        lines.append("  no other held-out metric changed")
    lines.append(f"  models:/{name}@{CHAMPION} now loads version {version} (restart running servers to pick it up)")
    return Promotion(
        key, name, version, previous, spec.primary, new_value, old_value, changes, forced, True,
        "\n".join(lines),
    )  # fmt: skip


def _training(spec: ModelSpec, root: Path) -> dict[str, Any]:
    """Training facts: the trained model's ``config.json`` under the train report (its ``summary.json``,
    words included, where the stage writes one beside ``metrics.json``)."""
    facts: dict[str, Any] = {}
    report = root / spec.train_report
    summary = report.with_name("summary.json")
    for path in (root / spec.model_dir / "config.json", summary if summary.is_file() else report):
        if path.is_file():
            document = read_json(path)
            if isinstance(document, Mapping):
                facts.update(document)
    return facts


def annotate_export(
    client: MlflowClient,
    key: str,
    name: str,
    version: int,
    run_tags: Mapping[str, str],
    out_dir: str | os.PathLike,
    root: str | os.PathLike = ".",
) -> dict[str, Any]:
    """Everything export does to a new version of model ``key``: read its held-out metrics and training
    facts, tag the version (lineage from ``run_tags``, the export run's tags), describe it with its model
    card, alias it ``challenger``, and write the card, without the version number, to ``out_dir/MODEL_CARD.md``.

    Returns ``{"tags", "heldout", "card", "description"}`` (``card``: the file's path).
    """
    key = resolve_model(key)
    spec, base = MODELS[key], Path(root)
    metrics_path = base / spec.metrics_file
    if not metrics_path.is_file():
        raise InputError("no held-out metrics: run the evaluation stage first", path=spec.metrics_file)
    heldout = heldout_metrics(key, read_json(metrics_path))
    training = _training(spec, base)
    inputs = {k.removeprefix(INPUT_TAG_PREFIX): v for k, v in run_tags.items() if k.startswith(INPUT_TAG_PREFIX)}
    card = {"primary": spec.primary, "family": spec.family, "source": spec.metrics_file.as_posix()}
    tags = version_tags(run_tags, heldout, spec.primary)
    description = model_card(key, name, version, heldout, training, inputs, **card)
    annotate_version(client, name, version, tags, description)
    path = write_model_card(out_dir, model_card(key, name, None, heldout, training, inputs, **card))
    return {"tags": tags, "heldout": heldout, "card": path, "description": description}
