"""export@cnn: the ``.keras`` model, a TensorFlow SavedModel, and an ONNX file checked to agree."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from overseer.deterministic import canonical_onnx
from overseer.io import atomic_dir
from overseer.trackbed.data.schema import CLASSES
from overseer.trackbed.model import save_keras

log = logging.getLogger(__name__)


def onnx_predict(onnx_path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Class probabilities of float32 N×224×224×3 images in [0, 255] under ONNX Runtime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]


@contextlib.contextmanager
def _variables_in_model_order(model: keras.Model) -> Iterator[None]:
    """While exporting ``model``, list the variables its functions use in ``model.variables`` order.

    Keras' ``ExportArchive`` collects them from each traced function's ``variables``, which TF
    keeps in an identity-hashed set: their order, and with it the SavedModel's object graph and
    checkpoint, changes from one process to the next. This reorders that one private helper's
    result; when the helper is not there (another Keras) the export runs as is, not deterministic.
    """
    try:
        from keras.src.export import saved_model_export_archive as archive_module

        original = archive_module._list_variables_used_by_fns
    except (ImportError, AttributeError):
        log.warning("keras %s: SavedModel variables keep TF's run-dependent order", keras.__version__)
        yield
        return
    rank: dict[int, int] = {}
    for i, variable in enumerate(model.variables):
        for handle in (variable, getattr(variable, "_value", None)):
            if handle is not None:
                rank.setdefault(id(handle), i)

    def key(v: Any) -> tuple[int, str]:
        return rank.get(id(v), len(rank)), str(getattr(v, "name", ""))

    def ordered(fns: Any) -> tuple[list, list]:
        trainable, non_trainable = original(fns)
        return sorted(trainable, key=key), sorted(non_trainable, key=key)

    archive_module._list_variables_used_by_fns = ordered
    try:
        yield
    finally:
        archive_module._list_variables_used_by_fns = original


def _content_fingerprint_uuid(saved_model_dir: Path) -> None:
    """Replace the random ``uuid`` TF writes into ``fingerprint.pb`` by one derived from the
    fingerprint's content hashes (same 128-bit decimal form), so the same model gives the same file."""
    from tensorflow.core.protobuf import fingerprint_pb2

    path = saved_model_dir / "fingerprint.pb"
    if not path.is_file():
        return
    fingerprint = fingerprint_pb2.FingerprintDef.FromString(path.read_bytes())
    if not fingerprint.uuid:
        return
    fingerprint.ClearField("uuid")
    digest = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).digest()
    fingerprint.uuid = str(int.from_bytes(digest[:16], "big"))
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


def fix_seed_states(model: keras.Model) -> int:
    """Set the state of every random-seed generator in ``model`` (Dropout's) to zeros; return how many.

    A ``.keras`` file does not store these states, so ``load_model`` draws each one afresh and the
    SavedModel checkpoint (which does store them) would differ on every export. Inference never
    uses them."""
    fixed = 0
    for variable in model.variables:
        if variable.path.split("/")[-1] == "seed_generator_state":
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
            fixed += 1
    return fixed


def export_saved_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.export(path, format="tf_saved_model")``, byte-identical from one process to the next
    for the same weights (variables in model order, content-derived fingerprint ``uuid``). Two
    exports in one process still differ: TF numbers traced functions with a process-wide counter."""
    target = Path(path)
    with _variables_in_model_order(model), contextlib.redirect_stdout(io.StringIO()):
        model.export(os.fspath(target), format="tf_saved_model", verbose=False)
    _content_fingerprint_uuid(target)
    return target


def export_onnx(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.export(path, format="onnx")`` (tf2onnx), byte-identical from one process to the
    next for the same weights: tf2onnx names the constants it folds (``const_fold_opt__N``) and
    orders nodes in a run-dependent way, so the converted graph is rewritten by
    :func:`~overseer.deterministic.canonical_onnx` (content-named constants, canonical node order,
    sequential names; the input ``image`` and the output keep their names) before it is written."""
    import onnx

    target = Path(path)
    with tempfile.TemporaryDirectory(prefix="overseer-onnx-") as work:
        raw = Path(work) / "model.onnx"
        # the converter prints pages of graph details; keep the stage log readable
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(os.fspath(raw), format="onnx", verbose=False)
        canonical = canonical_onnx(onnx.load(raw))
    onnx.checker.check_model(canonical)
    target.write_bytes(canonical.SerializeToString(deterministic=True))
    return target


def check_onnx(model: keras.Model, onnx_path: Path, images: np.ndarray, atol: float = 1e-4) -> dict[str, Any]:
    """Compare Keras and ONNX Runtime probabilities on the same images; raise if they disagree."""
    keras_probs = np.asarray(model.predict(images, verbose=0))
    onnx_probs = onnx_predict(onnx_path, images)
    max_abs = float(np.abs(keras_probs - onnx_probs).max())
    same_class = float((keras_probs.argmax(1) == onnx_probs.argmax(1)).mean())
    check = {"images": len(images), "max_abs_prob_diff": max_abs, "argmax_agreement": same_class, "atol": atol}
    if max_abs > atol or same_class < 1.0:
        raise RuntimeError(f"ONNX export disagrees with the Keras model: {check}")
    return check


def export_trackbed(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    check_images: np.ndarray,
    config: dict[str, Any],
    calibration: np.ndarray | None = None,
    int8_images: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write ``model.keras``, ``saved_model/``, ``model.onnx``, ``classes.json`` and ``config.json``
    into ``out_dir`` (all or nothing) and return the ONNX agreement check. With ``calibration``
    (training images), also ``model.int8.onnx`` (:mod:`overseer.trackbed.quantize`), checked against
    ``model.onnx`` on ``int8_images`` (default ``check_images``); a build that disagrees on more than
    1 % of them is not written and the check says why (the fp32 export stands)."""
    model = keras.models.load_model(Path(model_path), compile=False)
    fix_seed_states(model)
    model.predict(check_images[:1], verbose=0)  # ONNX export needs a model that has been called
    with atomic_dir(out_dir) as tmp:
        save_keras(model, tmp / "model.keras")
        export_saved_model(model, tmp / "saved_model")
        # checked as written: the canonicalised file is the one users get
        check = check_onnx(model, export_onnx(model, tmp / "model.onnx"), check_images)
        if calibration is not None:
            check |= _int8_build(tmp, calibration, check_images if int8_images is None else int8_images)
        (tmp / "classes.json").write_text(json.dumps(list(CLASSES), indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps({**config, "onnx_check": check}, indent=2, default=str) + "\n")
    return check


def _int8_build(folder: Path, calibration: np.ndarray, images: np.ndarray) -> dict[str, Any]:
    """``folder/model.int8.onnx`` from ``folder/model.onnx``, kept only when it agrees with it."""
    from overseer.trackbed.quantize import check_quantized, quantize_onnx

    int8 = quantize_onnx(folder / "model.onnx", folder / "model.int8.onnx", calibration)
    try:
        agreement = check_quantized(folder / "model.onnx", int8, images)
    except RuntimeError as exc:
        int8.unlink()
        log.warning("%s: model.int8.onnx not written", exc)
        return {"int8_written": False, "int8_failure": str(exc)}
    return {"int8_written": True, **{f"int8_{k}": v for k, v in agreement.items()}}


def pip_requirements() -> list[str]:
    """What a served copy needs: the exact TensorFlow and Keras that produced the model."""
    import tensorflow as tf

    return [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]


def check_images(files: list[Path], n: int) -> np.ndarray:
    """The first ``n`` held-out images as float32 N×224×224×3 in [0, 255]: the ONNX agreement set
    and the registry's input example."""
    from overseer.trackbed.pipeline import image_dataset

    return np.concatenate([batch[0].numpy() for batch in image_dataset(files, n).take(1)])
