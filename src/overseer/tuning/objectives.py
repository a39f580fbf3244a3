"""What a trial of each model trains and scores: always a validation score, never the held-out set.

Each model is data (``TunedModel``): the params section it trains from, the MLflow experiment
(family) its runs go to, and two functions. ``prepare`` loads what every trial shares once per
process (the training table; the backbone embeddings); ``score`` trains one configuration and
returns its validation metric, calling ``report(step, value)`` with intermediate scores (per fold,
per epoch) so that Optuna can prune a poor trial early.

* rf  - mean macro-F1 over the blocked cross-validation folds of the training picks or wells
        (train_rf's own scheme), reported fold by fold; train_rf's ``auto`` well features are
        resolved once per study as train_rf resolves them (:func:`prepare_rf`).
* cnn - macro-F1 of the head on the validation split of the training file (train_cnn's split),
        reported epoch by epoch; the embeddings are computed once per tuning process.
* gnn - loss on the validation pieces (ingest@engraving's validation split), epoch by epoch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from overseer import paths
from overseer.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

Report = Callable[[int, float], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TunedModel:
    name: str
    family: str  # MLflow experiment
    section: str  # params.yaml section the space lives in
    metric: str  # name of the validation metric the study optimises
    direction: str  # "maximize" | "minimize"
    prepare: Callable[[Mapping[str, Any], Path], Any]
    score: Callable[[Any, Mapping[str, Any], Report], float]


def _need(path: Path, what: str, stage: str) -> Path:
    if not path.exists():
        raise InputError(f"tuning needs {what}; run `dvc repro {stage}` first", path=path)
    return path


# --- rf ----------------------------------------------------------------------------------------
def prepare_rf(params: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """What every rf trial shares, chosen once per study with the current params, as train_rf chooses it.

    ``table``: the training table; ``features``: the attributes train_rf trains on
    (``train_rf.features``; ``validated`` reads ``auto`` as off, as in train_rf); ``auto``: the values
    train_rf's leave-wells-out choice gives every ``auto`` of ``train_rf.well_features`` /
    ``train_rf.smooth`` (:func:`~overseer.seismic.well_choice.train_with_choice`, dotted keys such as
    ``"well_features.neighbours"``; off values for volumes/picks), which :func:`score_rf` puts in place of
    an ``auto`` a trial still has: a key the search space tunes keeps each trial's value (the choice
    runs, with the current params, while any other key is ``auto``); a study whose every ``auto`` is
    tuned fits nothing extra. The choice is not redone per trial, nor after write-back (train_rf then
    chooses again, with the tuned params).
    """
    import pandas as pd

    from overseer.seismic.feature_choice import choose_features

    cfg = params["train_rf"]
    table = pd.read_parquet(_need(root / paths.SEISMIC_TRAIN_TABLE, "the seismic training table", "ingest@seismic"))
    meta = json.loads(_need(root / paths.SEISMIC_META, "the seismic meta", "ingest@seismic").read_text())
    mode = cfg.get("features", "validated")
    selection = None
    if mode != "all":
        path = _need(root / paths.SEISMIC_SELECTION_JSON, "the attribute selection", "select_attributes")
        selection = json.loads(path.read_text())
    chosen = choose_features(mode, selection, meta["attributes"], table, cfg)  # as train_rf, before the auto choice
    auto = resolve_auto(table, chosen.features, params, meta["source"])
    return {"table": table, "features": chosen.features, "auto": auto}


def resolve_auto(
    table: pd.DataFrame, features: list[str] | None, params: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """train_rf's values for the ``auto`` keys of ``params["train_rf"]`` (dotted key -> value), by the
    function train_rf's stage calls (:func:`~overseer.seismic.well_choice.train_with_choice`: leave-wells-out
    CV on the training wells; ``auto`` is off for any ``source`` but well logs). Empty when nothing is
    ``auto`` or every ``auto`` key is tuned (``tune.rf.space``) to values without ``auto``."""
    from overseer.seismic.well_choice import WELL_SOURCE, auto_keys, train_with_choice, without_auto
    from overseer.seismic.well_features import is_auto
    from overseer.tuning.space import tuned_space

    cfg, space = params["train_rf"], tuned_space(params, "rf")
    keys = auto_keys(cfg)

    def tuned(key: str) -> bool:  # every trial gives it a value of its own
        spec = space.get(f"train_rf.{key}")
        return isinstance(spec, Mapping) and not any(is_auto(c) for c in spec.get("choices") or [])

    if all(tuned(key) for key in keys):
        return {}
    # volumes/picks: off, as train_with_choice (which would train a forest to say so)
    resolved = without_auto(cfg) if source != WELL_SOURCE else train_with_choice(table, features, cfg, source).resolved
    chosen = {key: resolved[key.split(".")[0]][key.split(".")[1]] for key in keys}
    log.info("train_rf auto resolved once for the study (source %s): %s", source, chosen)
    return chosen


def with_auto(cfg: Mapping[str, Any], auto: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` (a trial's ``train_rf``) with each ``auto`` of ``auto``'s keys replaced by its value there;
    what a trial tuned (a value other than ``auto``) stays."""
    from overseer.seismic.well_features import is_auto

    out = dict(cfg)
    for key, value in auto.items():
        section, name = key.split(".")
        if is_auto((out.get(section) or {}).get(name)):
            out[section] = {**out[section], name: value}
    return out


def score_rf(data: Mapping[str, Any], cfg: Mapping[str, Any], report: Report) -> float:
    """Mean blocked-CV macro-F1 at the largest candidate tree count, reported after every fold.

    The folds and forests are train_rf's own (:func:`overseer.seismic.forest.cross_validate`), with
    its well features (``data["auto"]``: :func:`prepare_rf`'s resolution of ``auto``); only the
    largest tree count is grown, the one whose per-fold scores can be reported as they come. The
    score is before the per-well smoothing filter, as train_rf's ``val_macro_f1``.
    """
    from overseer.seismic.forest import cross_validate, resolve_config, training_arrays

    conf = resolve_config(with_auto(cfg, data.get("auto") or {}))
    x, y, groups, inputs = training_arrays(data["table"], data["features"], conf)
    scores: list[float] = []

    def on_fold(fold: int, rows: pd.DataFrame) -> None:
        scores.append(float(rows["macro_f1"].iloc[-1]))  # rows are in increasing tree count
        report(fold, float(np.mean(scores)))  # may raise optuna.TrialPruned, which ends the CV

    largest = {**conf, "tree_counts": [max(conf["tree_counts"])]}
    cross_validate(x, y, groups, largest, on_fold=on_fold, inputs=inputs)  # inputs: one-hot columns pass through
    return float(np.mean(scores))


# --- cnn ---------------------------------------------------------------------------------------
def prepare_cnn(params: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """Backbone embeddings of the training file, once, and train_cnn's validation split."""
    from overseer.splits import stratified_split
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.model import build_backbone
    from overseer.trackbed.train import embed, set_determinism

    cfg = params["train_cnn"]
    files = list_tfrecords(_need(root / paths.TRACKBED_TRAIN_FILES, "the trackbed training file", "ingest@trackbed"))
    set_determinism(int(cfg["seed"]))
    backbone = build_backbone(str(cfg["weights"]))
    x, y, _ = embed(backbone.model, files, int(cfg["batch_size"]))
    is_val = stratified_split(y, float(cfg["val_fraction"]), int(cfg["seed"]))
    return {"x": x, "y": y, "is_val": is_val, "weights_used": backbone.weights_used}


def score_cnn(data: Mapping[str, Any], cfg: Mapping[str, Any], report: Report) -> float:
    """Validation macro-F1 of the head trained with ``cfg`` by train_cnn's own ``train_head``
    (best-val-loss weights, as train_cnn keeps), reported epoch by epoch."""
    import tempfile

    import keras

    from overseer.metrics import classification_report
    from overseer.trackbed.data.schema import CLASSES
    from overseer.trackbed.train import set_determinism, train_head

    set_determinism(int(cfg["seed"]))
    x, y, is_val = data["x"], data["y"], data["is_val"]

    def val_f1(head: keras.Model) -> float:
        pred = head.predict(x[is_val], verbose=0).argmax(axis=1)
        return classification_report(y[is_val], pred, list(CLASSES)).macro["f1"]

    def on_epoch(epoch: int, head: keras.Model) -> None:
        report(epoch, val_f1(head))  # may raise optuna.TrialPruned, which ends the fit

    with tempfile.TemporaryDirectory(prefix="score_cnn.") as workdir:
        head, _ = train_head(
            x[~is_val], y[~is_val], x[is_val], y[is_val], cfg, Path(workdir), on_epoch=on_epoch, verbose=0
        )
    return val_f1(head)


# --- gnn ---------------------------------------------------------------------------------------
def prepare_gnn(params: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """The prepared training and validation pieces of ingest@engraving."""
    from overseer.engraving.schema import load_split

    prepared = _need(root / paths.ENGRAVING.prepared, "the prepared score graphs", "ingest@engraving")
    return {"train": load_split(prepared, "train")[1], "validation": load_split(prepared, "validation")[1]}


def score_gnn(data: Mapping[str, Any], cfg: Mapping[str, Any], report: Report) -> float:
    """Best validation loss of EngravingGNN trained with ``cfg``, reported epoch by epoch."""
    from overseer.engraving.train import train_gnn

    def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
        report(epoch, float(metrics["val_loss"]))

    result = train_gnn(data["train"], data["validation"], dict(cfg), on_epoch=on_epoch)
    return float(result.best_loss)


MODELS: dict[str, TunedModel] = {
    # not train_rf's val_macro_f1 (pooled out-of-fold predictions at the best tree count): the mean
    # of the per-fold scores, which is what can be reported fold by fold for pruning
    "rf": TunedModel("rf", "seismic", "train_rf", "val_fold_macro_f1", "maximize", prepare_rf, score_rf),
    "cnn": TunedModel("cnn", "trackbed", "train_cnn", "val_macro_f1", "maximize", prepare_cnn, score_cnn),
    "gnn": TunedModel("gnn", "engraving", "train_gnn", "val_loss", "minimize", prepare_gnn, score_gnn),
}


def get_model(name: str) -> TunedModel:
    """The tuned model called ``name``; an unknown name is an InputError listing the known ones."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; tunable models: {', '.join(MODELS)}")
    return MODELS[name]
