"""What a trial of each model trains and scores: always a validation score, never the held-out set.

Each model is data (``TunedModel``): the params section it trains from, the MLflow experiment
(family) its runs go to, and two functions. ``prepare`` loads what every trial shares once per
process (the training table; the backbone embeddings); ``score`` trains one configuration and
returns its validation metric, calling ``report(step, value)`` with intermediate scores (per fold,
per epoch) so that Optuna can prune a poor trial early.

* rf  - mean macro-F1 over the blocked cross-validation folds of the training picks (train_rf's
        own scheme), reported fold by fold.
* cnn - macro-F1 of the head on the validation split of the training file (train_cnn's split),
        reported epoch by epoch; the embeddings are computed once per tuning process.
* gnn - loss on the validation pieces (ingest@engraving's validation split), epoch by epoch.
"""

from __future__ import annotations

import json
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
    """The training table and the attributes train_rf trains on (``train_rf.features``, chosen once per
    study: a validated choice is made with the current params, not per trial)."""
    import pandas as pd

    from overseer.seismic.feature_choice import choose_features

    table = pd.read_parquet(_need(root / paths.SEISMIC_TRAIN_TABLE, "the seismic training table", "ingest@seismic"))
    mode = params["train_rf"].get("features", "validated")
    if mode == "all":
        return {"table": table, "features": None}
    selection = _need(root / paths.SEISMIC_SELECTION_JSON, "the attribute selection", "select_attributes")
    attributes = []
    if mode == "validated":  # the candidates beside the per-n winners
        attributes = json.loads(_need(root / paths.SEISMIC_META, "the seismic meta", "ingest@seismic").read_text())
        attributes = attributes["attributes"]
    chosen = choose_features(mode, json.loads(selection.read_text()), attributes, table, params["train_rf"])
    return {"table": table, "features": chosen.features}


def score_rf(data: Mapping[str, Any], cfg: Mapping[str, Any], report: Report) -> float:
    """Mean blocked-CV macro-F1 at the largest candidate tree count, reported after every fold.

    The folds and forests are train_rf's own (:func:`overseer.seismic.forest.cross_validate`); only
    the largest tree count is grown, the one whose per-fold scores can be reported as they come.
    """
    from overseer.seismic.forest import cross_validate, resolve_config, training_arrays

    conf = resolve_config(cfg)
    x, y, groups, _ = training_arrays(data["table"], data["features"], conf)
    scores: list[float] = []

    def on_fold(fold: int, rows: pd.DataFrame) -> None:
        scores.append(float(rows["macro_f1"].iloc[-1]))  # rows are in increasing tree count
        report(fold, float(np.mean(scores)))  # may raise optuna.TrialPruned, which ends the CV

    cross_validate(x, y, groups, {**conf, "tree_counts": [max(conf["tree_counts"])]}, on_fold=on_fold)
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
