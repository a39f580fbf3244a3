"""k-fold cross-validation of the trackbed head's configuration across shards or source groups.

The notebook's "integrate cross-validation across different TFRecord shards (if available)": each
fold holds out whole groups of images, every image exactly once. The groups are, in this order of
preference (``by="auto"``), the prepared training shards when there are at least ``k`` of them;
the user's source files from ingest's ``provenance.csv`` (a TFRecord file, an image folder, the
embedded default set); the image sub-folders below the class folders; otherwise plain stratified
k folds of images (the result says which). With more groups than folds, whole groups are dealt to
folds by scikit-learn's ``StratifiedGroupKFold`` (class proportions kept as far as groups allow).

The backbone runs once over all training images (embeddings cached in ``workdir``); each fold
then trains the head of ``train_cnn`` (:func:`overseer.trackbed.train.train_head`, the
``train_cnn`` params: its own stratified validation split for early stopping) on the other folds'
embeddings and is scored on the held-out fold with :func:`overseer.metrics.classification_report`.
The head's ``class_weight`` and ``loss`` apply as in ``train_cnn`` (``train_head`` reads them);
with ``augment.copies`` > 0 the augmented copies of every training image are embedded once too,
and each fold's head gets the copies of its own training images only (never of its validation or
held-out images). Fine-tuning is out of scope: the cross-validation checks the head's
configuration on fixed embeddings (a backbone fine-tuned on all training images would leak the
held-out folds).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from overseer.metrics import ClassificationReport, classification_report
from overseer.repo import file_digest
from overseer.splits import stratified_split
from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE
from overseer.trackbed.data.tfrecord import iter_raw_records, read_provenance

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

    from overseer.trackbed.model import Backbone

BY = ("auto", "shards", "sources", "folders", "stratified")
FOLD_COLUMNS = [
    "fold", "held_out", "n_groups", "n_train", "n_augmented", "n_val", "n_test", "accuracy", "macro_f1", "weighted_f1",
    "best_epoch", "epochs_run", "best_val_loss", "missing_train_classes",
]  # fmt: skip
SCOPE = "head of train_cnn on fixed backbone embeddings; fine-tuning is not cross-validated"
EMBEDDINGS_FILE = "embeddings.npz"
CACHE_KEY_FILE = "embeddings.json"
_FEW_MEMBERS = ".*least populated class.*"  # scikit-learn's note when a class has fewer members than folds


@dataclass(frozen=True)
class Grouping:
    """What each image belongs to for the folds: ``groups`` (one label per image, or None for
    stratified folds of images), the ``kind`` of group and a sentence saying why."""

    groups: np.ndarray | None
    kind: str  # shards | sources | folders | stratified
    note: str = ""

    @property
    def n_groups(self) -> int:
        return 0 if self.groups is None else len(np.unique(self.groups))


@dataclass(frozen=True)
class Augmented:
    """Embeddings of augmented copies (``x``, ``y``) and the index of each one's original image."""

    x: np.ndarray
    y: np.ndarray
    source: np.ndarray


@dataclass
class CrossValidationResult:
    """Per-fold scores (``folds``, columns ``FOLD_COLUMNS``), the out-of-fold prediction of every
    image (``predictions``: item, group, fold, actual, predicted, confidence) and its pooled report."""

    folds: pd.DataFrame
    predictions: pd.DataFrame
    pooled: ClassificationReport
    grouping: Grouping
    k: int
    seed: int
    weights_used: str | None = None
    run_time: dict[str, Any] = field(default_factory=dict)  # timings and cache state: not tracked files

    def summary(self) -> dict[str, Any]:
        """``cv_summary.json``, numbers only (DVC tabulates it): mean ± std (ddof=0, as the seismic CV and
        scikit-learn's ``cv_results_``) over folds; what was cross-validated, in words, is :meth:`described`."""
        stats = {
            metric: {"mean": float(self.folds[metric].mean()), "std": float(np.std(self.folds[metric].to_numpy()))}
            for metric in ("macro_f1", "accuracy", "weighted_f1")
        }
        return {
            "k": self.k,
            "n_groups": self.grouping.n_groups,
            "n_images": len(self.predictions),
            "seed": self.seed,
            **stats,
            "std_ddof": 0,
            "per_fold_macro_f1": [float(v) for v in self.folds["macro_f1"]],
            "pooled": {"accuracy": self.pooled.accuracy, "macro_f1": self.pooled.macro["f1"]},
            "folds_missing_train_classes": int((self.folds["missing_train_classes"] != "").sum()),
        }

    def described(self) -> dict[str, Any]:
        """``cv_evaluation.json``, beside ``cv_summary.json``: what was cross-validated, in words — the
        folds, the scope, the grouping and why, the backbone's weights."""
        return {
            "evaluation": f"{self.k}-fold cross-validation over {self.grouping.kind}",
            "scope": SCOPE,
            "grouping": self.grouping.kind,
            "grouping_note": self.grouping.note,
            **({"weights_used": self.weights_used} if self.weights_used is not None else {}),
        }

    def flat_metrics(self, prefix: str = "cv_") -> dict[str, float]:
        """``cv_macro_f1_mean``, ``cv_macro_f1_std``, ... and the pooled out-of-fold scores (MLflow)."""
        summary = self.summary()
        out = {
            f"{prefix}{m}_{s}": summary[m][s] for m in ("macro_f1", "accuracy", "weighted_f1") for s in ("mean", "std")
        }
        out.update({f"{prefix}pooled_{k}": v for k, v in summary["pooled"].items()})
        return out

    def artifacts(self) -> dict[str, Any]:
        """Files for :func:`overseer.io.write_artifacts`: ``cv_folds.csv``, ``cv_summary.json`` (numbers),
        ``cv_evaluation.json`` (words), ``cv_predictions.csv`` and ``cv_macro_f1.png`` (macro-F1 per fold
        with the mean line)."""
        return {
            "cv_folds.csv": self.folds.to_csv(index=False, lineterminator="\n"),
            "cv_summary.json": self.summary(),
            "cv_evaluation.json": self.described(),
            "cv_predictions.csv": self.predictions.to_csv(index=False, lineterminator="\n"),
            "cv_macro_f1.png": plot_fold_scores(self.folds, self.grouping.kind),
        }


# --- groups -------------------------------------------------------------------------------------


def shard_key(path: str | os.PathLike) -> str:
    """A training file as provenance names its shard: ``<folder>/<file>`` (``train/train-00000-of-00001.tfrecord``)."""
    target = Path(path)
    return f"{target.parent.name}/{target.name}"


def record_table(files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """(shard, record) of every record of ``files`` in file order: the order in which ``embed`` reads them."""
    rows = [(shard_key(path), index) for path in files for index, _ in iter_raw_records(path)]
    return pd.DataFrame(rows, columns=["shard", "record"])


def _source_key(row: pd.Series) -> str:
    """The user's source of a record: its TFRecord file (or ``default``), or for an image file the
    image folder it was read from (provenance ``source`` less ``image_filename``)."""
    source, name = str(row["source"]), row["image_filename"]
    if not pd.isna(row["source_record"]):
        return source
    if isinstance(name, str) and name and source.endswith(name):
        return source[: -len(name)].rstrip("/") or "."
    return PurePosixPath(source).parent.as_posix()


def _folder_key(row: pd.Series, classes: Sequence[str]) -> str:
    """The image's sub-folder with class-folder names taken out (``BALLAST/site_3/x.png`` -> ``site_3``),
    prefixed by its source; holding out a class folder would hold out a class."""
    name = row["image_filename"]
    upper = {c.upper() for c in classes}
    parts = [p for p in PurePosixPath(name).parent.parts if p.upper() not in upper] if isinstance(name, str) else []
    folder = "/".join(p for p in parts if p not in (".", ""))
    return f"{row['source_key']}:{folder}" if folder else str(row["source_key"])


def _provenance_groups(records: pd.DataFrame, provenance: pd.DataFrame | None) -> pd.DataFrame | None:
    """``records`` joined with provenance (columns ``source_key``, ``folder_key``), or None when
    provenance is missing or does not name every record."""
    if provenance is None or records.empty:
        return None
    table = provenance.copy()
    table["record"] = pd.to_numeric(table["record"], errors="coerce")
    table = table.drop_duplicates(["shard", "record"])
    joined = records.merge(table, on=["shard", "record"], how="left", validate="one_to_one")
    if joined["source"].isna().any():
        return None
    joined["source_key"] = joined.apply(_source_key, axis=1)
    joined["folder_key"] = joined.apply(_folder_key, axis=1, classes=CLASSES)
    return joined


def fold_groups(records: pd.DataFrame, provenance: pd.DataFrame | None, k: int, by: str = "auto") -> Grouping:
    """The groups the folds hold out, one per record of ``records`` (columns ``shard``, ``record``
    in embedding order; :func:`record_table`). ``by="auto"``: prepared shards if at least ``k``,
    else provenance sources, else image sub-folders, else stratified folds of images; an explicit
    ``by`` that has fewer than ``k`` groups is a ``ValueError``."""
    if by not in BY:
        raise ValueError(f"cross-validation groups: by must be one of {list(BY)}, got {by!r}")
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got k={k}")
    joined = _provenance_groups(records, provenance)
    candidates: dict[str, np.ndarray | None] = {
        "shards": records["shard"].astype(str).to_numpy(dtype=object),
        "sources": None if joined is None else joined["source_key"].to_numpy(dtype=object),
        "folders": None if joined is None else joined["folder_key"].to_numpy(dtype=object),
    }
    counts = {kind: 0 if g is None else len(np.unique(g)) for kind, g in candidates.items()}
    describe = {
        "shards": "prepared TFRecord shards",
        "sources": "source files of provenance.csv",
        "folders": "image sub-folders (class folders left out) of provenance.csv",
    }
    if by == "stratified":
        return Grouping(None, "stratified", f"stratified {k} folds of images, as asked")
    for kind in candidates if by == "auto" else (by,):
        if counts[kind] >= k:
            note = f"{counts[kind]} {describe[kind]} in {k} folds: each group held out once, whole"
            return Grouping(candidates[kind], kind, note)
    found = ", ".join(
        f"{counts[kind]} {kind}" if candidates[kind] is not None else f"no {kind} (no usable provenance.csv)"
        for kind in candidates
    )
    if by != "auto":
        raise ValueError(f"cross-validation by {by}: {found}, fewer than k={k}")
    note = f"fewer groups than k={k} ({found}): stratified {k} folds of images, images of one source on both sides"
    return Grouping(None, "stratified", note)


def assign_folds(labels: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of every image: whole groups per fold (exactly one group per fold when there
    are ``k``), class proportions kept as far as the groups allow; ``groups=None``: stratified."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(labels)
    if y.size < k:
        raise ValueError(f"cross-validation: {y.size} images cannot fill k={k} folds")
    folds = np.full(y.size, -1, dtype=np.int64)
    x = np.zeros((y.size, 1))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FEW_MEMBERS, category=UserWarning)
        if groups is None:
            splits = StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y)
        else:
            groups = np.asarray(groups, dtype=object)
            names = sorted(set(groups))
            if len(names) < k:
                raise ValueError(f"cross-validation: {len(names)} groups cannot fill k={k} folds")
            if len(names) == k:
                order = {name: i for i, name in enumerate(names)}
                return np.array([order[g] for g in groups], dtype=np.int64)
            splits = list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(x, y, groups))
            if any(len(test) == 0 for _, test in splits):  # greedy stratification can starve a fold
                splits = GroupKFold(k).split(x, y, groups)
        for fold, (_, test) in enumerate(splits):
            folds[test] = fold
    assert (folds >= 0).all(), "every image is held out once"
    return folds


# --- cross-validation on embeddings -------------------------------------------------------------


def _held_out(groups: np.ndarray | None, test: np.ndarray, limit: int = 3) -> tuple[str, int]:
    if groups is None:
        return "", 0
    names = sorted(set(groups[test]))
    shown = names if len(names) <= limit + 1 else [*names[:limit], f"… +{len(names) - limit} more"]
    return "; ".join(shown), len(names)


def _fit_fold(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, cfg: Mapping[str, Any], workdir: Path,
    augmented: Augmented | None = None,
) -> tuple[Any, pd.DataFrame, int, int]:  # fmt: skip
    """The head of ``train_cnn`` on the ``train`` rows: seeded, its own stratified validation split,
    plus the augmented copies of the images it fits on; (head, history, n_val, n_augmented)."""
    from overseer.trackbed.train import set_determinism, train_head

    seed = int(cfg["seed"])
    set_determinism(seed)
    is_val = stratified_split(y[train], float(cfg["val_fraction"]), seed)
    fit, val = train[~is_val], train[is_val]
    x_fit, y_fit, n_aug = x[fit], y[fit], 0
    if augmented is not None:
        rows = np.isin(augmented.source, fit)
        x_fit, y_fit = np.concatenate([x_fit, augmented.x[rows]]), np.concatenate([y_fit, augmented.y[rows]])
        n_aug = int(rows.sum())
    workdir.mkdir(parents=True, exist_ok=True)
    head, history = train_head(x_fit, y_fit, x[val], y[val], cfg, workdir, verbose=0)
    return head, history, int(val.size), n_aug


def cross_validate_head(
    embeddings: np.ndarray,
    labels: np.ndarray,
    groups: Grouping | Sequence[str] | np.ndarray | None,
    cfg: Mapping[str, Any],
    k: int,
    seed: int | None = None,
    *,
    names: Sequence[str] | None = None,
    workdir: str | os.PathLike | None = None,
    augmented: Augmented | None = None,
) -> CrossValidationResult:
    """k-fold CV of the head (``cfg``: the ``train_cnn`` params) on fixed embeddings.

    ``groups``: a :class:`Grouping`, one group label per image, or None (stratified folds).
    ``seed`` deals the folds (default ``cfg["seed"]``); every fold's head is seeded with
    ``cfg["seed"]`` as in ``train_cnn``. ``names`` identify images in ``predictions``; ``workdir``
    holds the per-fold checkpoints (a temporary folder when None). ``augmented``: embeddings of
    augmented copies with the index of their original image; a fold fits on those of its own
    training images.
    """
    grouping = groups if isinstance(groups, Grouping) else Grouping(
        None if groups is None else np.asarray(groups, dtype=object), "stratified" if groups is None else "groups"
    )  # fmt: skip
    x = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    if len(x) != len(y) or (grouping.groups is not None and len(grouping.groups) != len(y)):
        raise ValueError("embeddings, labels and groups need one entry per image")
    seed = int(cfg["seed"]) if seed is None else int(seed)
    folds = assign_folds(y, grouping.groups, k, seed)
    items = [str(i) for i in range(len(y))] if names is None else [str(n) for n in names]
    pred = np.full(len(y), -1, dtype=np.int64)
    conf = np.zeros(len(y), dtype=np.float64)
    rows = []
    with tempfile.TemporaryDirectory(prefix="overseer-cv-") as scratch:
        root = Path(scratch) if workdir is None else Path(workdir)
        for fold in tqdm(range(k), desc=f"head CV over {grouping.kind}", unit="fold"):
            test, train = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
            head, history, n_val, n_aug = _fit_fold(x, y, train, cfg, root / f"fold_{fold}", augmented)
            probs = head.predict(x[test], batch_size=int(cfg["batch_size"]), verbose=0)
            pred[test], conf[test] = probs.argmax(axis=1), probs.max(axis=1)
            report = classification_report(y[test], pred[test], CLASSES, confidence=conf[test])
            held, n_groups = _held_out(grouping.groups, test)
            best = history.loc[history["val_loss"].idxmin()]
            missing = ";".join(CLASSES[c] for c in sorted(set(y[test]) - set(y[train])))
            rows.append(
                {
                    "fold": fold, "held_out": held, "n_groups": n_groups, "n_train": int(train.size - n_val),
                    "n_augmented": n_aug, "n_val": n_val, "n_test": int(test.size), "accuracy": report.accuracy,
                    "macro_f1": report.macro["f1"], "weighted_f1": report.weighted["f1"],
                    "best_epoch": int(best["epoch"]), "epochs_run": len(history),
                    "best_val_loss": float(best["val_loss"]), "missing_train_classes": missing,
                }
            )  # fmt: skip
    predictions = pd.DataFrame(
        {
            "item": items,
            "group": "" if grouping.groups is None else grouping.groups,
            "fold": folds,
            "actual": [CLASSES[i] for i in y],
            "predicted": [CLASSES[i] for i in pred],
            "confidence": conf,
        }
    )
    pooled = classification_report(y, pred, CLASSES, confidence=conf, item_ids=items)
    return CrossValidationResult(pd.DataFrame(rows, columns=FOLD_COLUMNS), predictions, pooled, grouping, k, seed)


def plot_fold_scores(folds: pd.DataFrame, kind: str = "") -> plt.Figure:
    """Macro-F1 per fold as bars, the mean as a line (± one std shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = folds["macro_f1"].to_numpy(dtype=float)
    mean, std = float(scores.mean()), float(scores.std())
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(scores) + 2), 4))
    ax.bar([str(f) for f in folds["fold"]], scores, color="tab:blue")
    ax.axhline(mean, color="tab:red", label=f"mean {mean:.3f} ± {std:.3f}")
    ax.axhspan(mean - std, mean + std, color="tab:red", alpha=0.12)
    ax.set(title=f"Cross-validation macro-F1 per fold{f' ({kind})' if kind else ''}", xlabel="Fold",
           ylabel="Macro-F1", ylim=(0, 1.05))  # fmt: skip
    ax.legend(loc="best")
    return fig


# --- end to end: embed once, then the folds -----------------------------------------------------


@dataclass(frozen=True)
class Embeddings:
    x: np.ndarray  # n×2048 float32
    y: np.ndarray
    names: list[str]
    weights_used: str
    cached: bool  # read from workdir instead of running the backbone
    augmented: Augmented | None = None  # train_cnn.augment.copies > 0: copies of every image


def _augment(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """``train_cnn.augment`` with defaults when it is enabled with copies > 0, else None."""
    if not (cfg.get("augment") or {}).get("enabled"):
        return None
    from overseer.trackbed.train import augment_settings

    settings = augment_settings(cfg)
    return settings if settings is not None and int(settings["copies"]) > 0 else None


def _cache_key(cfg: Mapping[str, Any], files: Sequence[str | os.PathLike], backbone: Backbone | None) -> dict:
    weights = str(cfg["weights"])
    key: dict[str, Any] = {
        "files": [[shard_key(f), file_digest(f)] for f in files],
        "weights": weights,
        "seed": int(cfg["seed"]),  # a random-init backbone depends on it
        "image_size": IMAGE_SIZE,
    }
    if Path(weights).is_file():
        key["weights_md5"] = file_digest(weights)
    if backbone is not None:  # a given backbone is known by what it says it loaded
        key["backbone"] = [backbone.model.name, backbone.weights_used, int(backbone.model.count_params())]
    if (augment := _augment(cfg)) is not None:
        key["augment"] = augment
    return key


def embed_once(
    cfg: Mapping[str, Any],
    train_files: Sequence[str | os.PathLike],
    workdir: str | os.PathLike,
    backbone: Backbone | None = None,
) -> Embeddings:
    """The backbone's embeddings of every training record, computed once and cached in ``workdir``
    (``embeddings.npz`` + its key ``embeddings.json``: files' md5, weights, seed). The backbone is
    built as ``train_cnn`` builds it (seeded, ``cfg["weights"]``) unless one is given; a cache made
    when ImageNet weights were unavailable is not reused. With ``augment.copies`` > 0 the augmented
    copies of every image are embedded too (:func:`overseer.trackbed.train.embed_augmented`)."""
    from overseer.trackbed.model import build_backbone
    from overseer.trackbed.train import embed, set_determinism

    work = Path(workdir)
    key = _cache_key(cfg, train_files, backbone)
    cache, key_file = work / EMBEDDINGS_FILE, work / CACHE_KEY_FILE
    if cache.is_file() and key_file.is_file():
        stored = json.loads(key_file.read_text())
        if stored.get("key") == key and "unavailable" not in stored.get("weights_used", ""):
            with np.load(cache, allow_pickle=False) as data:
                aug = Augmented(data["x_aug"], data["y_aug"], data["aug_source"]) if "x_aug" in data else None
                names = [str(n) for n in data["names"]]
                return Embeddings(data["x"], data["y"], names, stored["weights_used"], True, aug)
    set_determinism(int(cfg["seed"]))  # the same random init as train_cnn's when weights are "none"
    if backbone is None:
        backbone = build_backbone(str(cfg["weights"]))
    x, y, names = embed(backbone.model, train_files, int(cfg["batch_size"]))
    arrays: dict[str, np.ndarray] = {"x": x, "y": y, "names": np.asarray(names, dtype=str)}
    aug = None
    if (augment := _augment(cfg)) is not None:
        from overseer.trackbed.model import build_augmentation
        from overseer.trackbed.train import embed_augmented

        layers = {name: augment[name] for name in ("flip", "rotation", "brightness", "contrast")}
        augmentation = build_augmentation(
            **layers, seed=int(cfg["seed"]), image_size=int(backbone.model.input_shape[1])
        )
        copies = int(augment["copies"])
        everything = np.ones(len(y), dtype=bool)
        x_aug, y_aug = embed_augmented(
            backbone.model, train_files, everything, int(cfg["batch_size"]), augmentation, copies
        )
        aug = Augmented(x_aug, y_aug, np.tile(np.arange(len(y)), copies))  # copy after copy, in file order
        if not np.array_equal(aug.y, y[aug.source]):
            raise ValueError("augmented embeddings are not copies of the training images in file order")
        arrays.update(x_aug=aug.x, y_aug=aug.y, aug_source=aug.source)
    work.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    key_file.write_text(json.dumps({"key": key, "weights_used": backbone.weights_used}, indent=2) + "\n")
    return Embeddings(x, y, list(names), backbone.weights_used, False, aug)


def cross_validate_trackbed(
    cfg: Mapping[str, Any],
    train_files: Sequence[str | os.PathLike],
    provenance: str | os.PathLike | pd.DataFrame | None,
    workdir: str | os.PathLike,
    k: int,
    *,
    by: str = "auto",
    seed: int | None = None,
    backbone: Backbone | None = None,
) -> CrossValidationResult:
    """Embed the training shards once (cached in ``workdir``), choose the groups (:func:`fold_groups`),
    cross-validate the head of ``cfg`` (the ``train_cnn`` params) over ``k`` folds.

    ``provenance``: ingest's ``provenance.csv`` (path or table; None or missing: shards or
    stratified folds only). ``backbone``: use this one instead of building ``cfg["weights"]``'s.
    """
    table = provenance if isinstance(provenance, pd.DataFrame) or provenance is None else read_provenance(provenance)
    records = record_table(train_files)
    grouping = fold_groups(records, table, k, by)  # before the backbone: a bad choice fails fast
    start = time.perf_counter()
    embedded = embed_once(cfg, train_files, workdir, backbone)
    seconds_embed = time.perf_counter() - start
    if len(embedded.y) != len(records):
        raise ValueError(f"{len(embedded.y)} embeddings for {len(records)} records: stale cache in {workdir}?")
    start = time.perf_counter()
    result = cross_validate_head(
        embedded.x, embedded.y, grouping, cfg, k, seed,
        names=embedded.names, workdir=Path(workdir) / "folds", augmented=embedded.augmented,
    )  # fmt: skip
    result.weights_used = embedded.weights_used
    result.run_time = {
        "cache": "hit" if embedded.cached else "miss",
        "seconds_embed": round(seconds_embed, 2),
        "seconds_folds": round(time.perf_counter() - start, 2),
    }
    return result
