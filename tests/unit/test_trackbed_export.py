"""export@cnn's promise: the ONNX file agrees with the Keras model, or the export fails and writes nothing.

A tiny stand-in model (16×16 images, a few dozen weights) keeps the real SavedModel and ONNX
conversions to seconds; the disagreement is faked by perturbing what ONNX Runtime returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from overseer.trackbed import export
from overseer.trackbed.data.schema import CLASSES

DISAGREES = "ONNX export disagrees with the Keras model"
SIZE = 16


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.Dense(8, activation="tanh")(x))
    path = tmp_path_factory.mktemp("trained") / "model.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)


def perturbed_onnx(monkeypatch: pytest.MonkeyPatch, change) -> None:
    """ONNX Runtime's real probabilities, changed by ``change`` before the check sees them."""
    real = export.onnx_predict
    monkeypatch.setattr(export, "onnx_predict", lambda path, batch: change(real(path, batch)))


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of an atomic write (dot-names) left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_disagreeing_onnx_fails_the_export_and_writes_nothing(
    model_path: Path, images: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    perturbed_onnx(monkeypatch, lambda probs: np.roll(probs, 1, axis=1))  # every image changes class
    out = tmp_path / "export"
    with pytest.raises(RuntimeError, match=DISAGREES) as err:
        export.export_trackbed(model_path, out, images, {"note": "tiny"})
    assert "'argmax_agreement': 0.0" in str(err.value)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_a_failed_export_keeps_the_previous_one_untouched(
    model_path: Path, images: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "export"
    check = export.export_trackbed(model_path, out, images, {"note": "first"})  # the genuine ONNX agrees
    assert check["argmax_agreement"] == 1.0 and check["max_abs_prob_diff"] <= check["atol"]
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert {"model.keras", "model.onnx", "classes.json", "config.json"} <= {str(p) for p in before}

    # same classes, but probabilities off by 1e-3 > atol: still a failure
    perturbed_onnx(monkeypatch, lambda probs: probs + np.array([1e-3, -1e-3, 0, 0, 0], np.float32))
    with pytest.raises(RuntimeError, match=DISAGREES) as err:
        export.export_trackbed(model_path, out, images, {"note": "second"})
    assert "'argmax_agreement': 1.0" in str(err.value)
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before
    assert json.loads((out / "config.json").read_text())["note"] == "first"
    assert leftovers(tmp_path) == []


class _Fixed:
    """A stand-in Keras model whose predictions are given."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict(self, images: np.ndarray, verbose: int = 0) -> np.ndarray:
        return self.probs


@pytest.mark.parametrize(
    ("onnx_probs", "passes"),
    [
        ([[0.7, 0.3], [0.2, 0.8]], True),  # identical
        ([[0.70005, 0.29995], [0.2, 0.8]], True),  # within atol 1e-4
        ([[0.7002, 0.2998], [0.2, 0.8]], False),  # beyond atol, same classes
        ([[0.7, 0.3], [0.5001, 0.4999]], False),  # a class flips (and beyond atol)
    ],
)
def test_check_onnx_tolerance_and_class_agreement(
    onnx_probs: list, passes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    keras_probs = np.array([[0.7, 0.3], [0.2, 0.8]], np.float32)
    monkeypatch.setattr(export, "onnx_predict", lambda path, batch: np.array(onnx_probs, np.float32))
    images = np.zeros((2, SIZE, SIZE, 3), np.float32)
    if passes:
        check = export.check_onnx(_Fixed(keras_probs), Path("unused.onnx"), images)
        assert check["argmax_agreement"] == 1.0 and check["images"] == 2
    else:
        with pytest.raises(RuntimeError, match=DISAGREES):
            export.check_onnx(_Fixed(keras_probs), Path("unused.onnx"), images)


def test_a_class_flip_fails_even_within_a_loose_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    keras_probs = np.array([[0.5001, 0.4999]], np.float32)
    monkeypatch.setattr(export, "onnx_predict", lambda path, batch: np.array([[0.4999, 0.5001]], np.float32))
    with pytest.raises(RuntimeError, match=r"'argmax_agreement': 0\.0"):
        export.check_onnx(_Fixed(keras_probs), Path("unused.onnx"), np.zeros((1, SIZE, SIZE, 3)), atol=0.1)
