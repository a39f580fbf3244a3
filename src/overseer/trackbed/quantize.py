"""An int8 build of the exported trackbed model for CPU inference (ONNX Runtime static quantization).

``model.onnx`` (fp32, ResNet50V2 backbone + head) is quantized by ONNX Runtime's
``quantize_static`` in QDQ format: weights int8 per output channel, activations uint8 with ranges
calibrated (MinMax) on training images fed exactly like the model input (float32 RGB 224² in
[0, 255], see :func:`calibration_images`). ``quant_pre_process`` (symbolic shape inference and
ONNX Runtime's basic graph optimisations) runs first, as ONNX Runtime recommends.

What is quantized, and why (measured on the 2-vCPU AMD EPYC of this project: AVX-512 VNNI and
AVX-512 BF16, no AMX; ONNX Runtime 1.31.1; the pipeline's own export, a random-init backbone with
a trained, standardising head; agreement with fp32 on its 120 held-out images; speed relative to
fp32 under ONNX Runtime, 46-48 img/s, batch 32, best of 4 on quiet cores):

==========================================================  =========  ============  =====
quantized ops                                               agreement  emb. error/σ  speed
==========================================================  =========  ============  =====
everything (``quantize_static``'s default)                    0.21       —            2.9×
everything but the head (nodes after the last Conv)           0.975      0.44         2.7×
``Conv`` only, head fp32                                      0.992      0.23         1.6×
``Conv``, ``Relu``, ``MaxPool``, head fp32 (**chosen**)       0.992      0.26         1.75×
  + ``Add`` (the residual stream)                             0.975      0.44         2.3×
  + ``Add`` of stages 2-3 only (stages 4-5 fp32)              0.992      0.31         2.15×
everything but the head, int8 (not uint8) activations         0.22       —            1.0×
dynamic (``quantize_dynamic``, ``ConvInteger``)               1.0        0.11         ~0.1×
==========================================================  =========  ============  =====

("emb. error/σ": RMS of the int8 - fp32 difference of the 2048-d embedding, in units of its
spread across images, which is what the standardising head reads. One image of 120 is 0.008 of
agreement: the embedding error is the steadier measure.) End to end (benchmarks/
trackbed_quantized.py) the chosen build runs 2.0-2.2× Keras' ``tf.function`` and 1.7-1.8×
ONNX Runtime fp32, at a quarter of the file size (24 MB).

- The head stays fp32 (every node after the last ``Conv``: the last residual Add/scale/ReLU, the
  pooling, the standardisation, the Dense layers and the softmax). It is < 0.1 % of the FLOPs, and
  quantizing it is what broke the default build: the standardisation multiplies the quantization
  step of the embedding by up to 1/σ, and a quantized softmax output moves probabilities in
  steps of 1/255.
- The residual ``Add`` nodes stay fp32 too: quantizing the residual stream to one uint8 scale per
  tensor (channels of very different scales share it; worse with random-init BatchNorm, which
  does not equalise them) nearly doubles the embedding error and dropped agreement below the 0.99
  that :func:`check_quantized` requires. It would be 1.3× faster: pass ``op_types=(*QUANTIZED_OPS,
  "Add")`` to :func:`quantize_onnx` where the check still passes (ImageNet weights, say).
- uint8 activations with int8 weights (``reduce_range`` off) is MLAS's fast path on VNNI CPUs;
  int8 activations ran ~3× slower than uint8 here. Percentile calibration (99.999) and more
  calibration images (128, 256) moved agreement by at most one image of 120, at 2-6× the
  calibration time: MinMax over 64 images is the default.
- bf16 (not measured): ONNX Runtime's CPU provider has no bf16 convolution kernels on x86 (its
  bf16 fast-math option is for ARM), and Keras/TF mixed precision would be a second inference
  path. Dynamic quantization quantizes activations at run time through ``ConvInteger``, which
  has no fused fast kernel: an order of magnitude slower than fp32.

Agreement on a random-init backbone is weaker evidence than on ImageNet weights: class
information then sits in small variations of small features. :func:`check_quantized` is the gate
either way, on the evaluation images: argmax agreement with the fp32 model >= 0.99 or it raises.

Bytes are deterministic: the same fp32 file and calibration images give the same int8 file
(the quantized graph goes through :func:`~overseer.deterministic.canonical_onnx`).

Inference: :func:`cached_session` keeps one ``InferenceSession`` per model file (keyed by path,
size, mtime and threads), so repeated batches do not rebuild it; :func:`onnx_predictor` returns a
function images -> probabilities over it.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from overseer.trackbed.data.schema import IMAGE_SIZE

QUANTIZED_OPS = ("Conv", "Relu", "MaxPool")  # see the module docstring for what the others cost
MIN_AGREEMENT = 0.99  # argmax agreement with the fp32 model that check_quantized requires
CALIBRATION_BATCH = 8


# ---------------------------------------------------------------------------- calibration


def calibration_images(
    train_files: Sequence[str | os.PathLike], n: int, seed: int = 0, image_size: int = IMAGE_SIZE
) -> np.ndarray:
    """``n`` training images chosen uniformly at random (``seed``) among all records of
    ``train_files``, as float32 N×``image_size``²×3 RGB in [0, 255] (the model input, decoded by
    :func:`overseer.trackbed.pipeline.decode_record`), in file order. All records when there are
    fewer than ``n``."""
    import tensorflow as tf

    from overseer.trackbed.pipeline import decode_record

    if n < 1:
        raise ValueError(f"calibration images: n must be >= 1, got {n}")
    paths = [os.fspath(f) for f in train_files]
    if not paths:
        raise ValueError("calibration images: no training TFRecord files")
    total = int(tf.data.TFRecordDataset(paths).reduce(np.int64(0), lambda count, _: count + 1))
    if total == 0:
        raise ValueError(f"calibration images: no records in {paths}")
    chosen = tf.constant(np.sort(np.random.default_rng(seed).choice(total, min(n, total), replace=False)))
    records = tf.data.TFRecordDataset(paths).enumerate()
    picked = records.filter(lambda i, _: tf.reduce_any(tf.equal(i, chosen)))
    images = picked.map(lambda _, s: decode_record(s, image_size)[0]).batch(64)
    return np.concatenate(list(images.as_numpy_iterator())).astype(np.float32)


class ArrayCalibrationReader:
    """A ``CalibrationDataReader`` over an array of model inputs: ``{input_name: batch}`` dicts of
    ``batch_size`` images (the last one smaller), then None; ``rewind`` starts again.

    Built by :func:`calibration_reader` (the ONNX Runtime base class is imported lazily)."""

    def __init__(self, images: np.ndarray, input_name: str = "image", batch_size: int = CALIBRATION_BATCH) -> None:
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.input_name = input_name
        self.batch_size = int(batch_size)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.images):
            return None
        batch = self.images[self._next : self._next + self.batch_size]
        self._next += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)


def calibration_reader(
    images: np.ndarray, input_name: str = "image", batch_size: int = CALIBRATION_BATCH
) -> ArrayCalibrationReader:
    """An :class:`ArrayCalibrationReader` that is also an ``onnxruntime.quantization.CalibrationDataReader``."""
    return _reader_class()(images, input_name, batch_size)


@functools.cache
def _reader_class() -> type:
    from onnxruntime.quantization import CalibrationDataReader  # imports onnx: only when quantizing

    return type("CalibrationReader", (ArrayCalibrationReader, CalibrationDataReader), {})


# ---------------------------------------------------------------------------- quantization


def head_nodes(model: Any) -> list[str]:
    """Names of the nodes after the last ``Conv`` in graph order: the head, kept fp32. ONNX graphs
    are topologically sorted, so no ``Conv`` depends on any of them."""
    nodes = list(model.graph.node)
    convs = [i for i, node in enumerate(nodes) if node.op_type == "Conv"]
    start = convs[-1] + 1 if convs else 0
    return [node.name for node in nodes[start:]]


def quantize_onnx(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: np.ndarray | Iterable[np.ndarray],
    op_types: Sequence[str] = QUANTIZED_OPS,
    per_channel: bool = True,
    batch_size: int = CALIBRATION_BATCH,
) -> Path:
    """Write the int8 (QDQ) build of ``fp32_path`` to ``out_path`` (atomically) and return it.

    ``calibration``: float32 N×H×W×3 model inputs (:func:`calibration_images`), or batches of
    them. Only ``op_types``
    are quantized, and nothing after the last ``Conv`` (:func:`head_nodes`); weights int8 per
    channel, activations uint8 (MinMax ranges). Same input file and images -> same bytes."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from overseer.deterministic import canonical_onnx
    from overseer.io import atomic_file

    if isinstance(calibration, np.ndarray):
        images = calibration.astype(np.float32, copy=False)
    else:  # batches
        images = np.concatenate([np.asarray(batch, dtype=np.float32) for batch in calibration])
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"calibration: expected N×H×W×C images, got shape {images.shape}")
    target = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="overseer-int8-") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        quant_pre_process(os.fspath(fp32_path), os.fspath(prepared))
        model = onnx.load(prepared)
        input_name = model.graph.input[0].name
        quantize_static(
            os.fspath(prepared),
            os.fspath(quantized),
            calibration_reader(images, input_name, batch_size),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=head_nodes(model),
        )
        canonical = canonical_onnx(onnx.load(quantized))
    onnx.checker.check_model(canonical)
    with atomic_file(target) as tmp:
        tmp.write_bytes(canonical.SerializeToString(deterministic=True))
    return target


# ---------------------------------------------------------------------------- inference


def session_options(threads: int | None = None) -> Any:
    """``SessionOptions`` for batch inference on this process's CPUs: ``threads`` intra-op threads
    (default: the CPUs this process may use), one inter-op thread, sequential execution, all
    graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or len(os.sched_getaffinity(0)))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return options


_SESSIONS: dict[tuple[str, int, int, int], Any] = {}
_LOCK = threading.Lock()


def cached_session(onnx_path: str | os.PathLike, threads: int | None = None) -> Any:
    """One CPU ``InferenceSession`` per model file and thread count, built on first use and
    reused; a file that changed on disk (size or mtime) gets a new one."""
    import onnxruntime as ort

    path = Path(onnx_path).resolve()
    stat = path.stat()
    n_threads = int(threads or len(os.sched_getaffinity(0)))
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns, n_threads)
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            for stale in [k for k in _SESSIONS if k[0] == key[0] and k[3] == n_threads]:
                del _SESSIONS[stale]
            session = ort.InferenceSession(
                os.fspath(path), session_options(n_threads), providers=["CPUExecutionProvider"]
            )
            _SESSIONS[key] = session
    return session


def clear_sessions() -> None:
    """Drop every cached session (frees their memory)."""
    with _LOCK:
        _SESSIONS.clear()


def predict_proba(
    onnx_path: str | os.PathLike,
    images: np.ndarray,
    batch_size: int = 32,
    threads: int | None = None,
    cache: bool = True,
) -> np.ndarray:
    """Class probabilities of float32 N×H×W×3 images in [0, 255], in batches of ``batch_size``,
    on the cached session of ``onnx_path`` (``cache=False``: a session for this call only)."""
    if cache:
        session = cached_session(onnx_path, threads)
    else:
        import onnxruntime as ort

        options = session_options(threads)
        session = ort.InferenceSession(os.fspath(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.asarray(images, dtype=np.float32)
    if len(x) == 0:
        return np.zeros((0, session.get_outputs()[0].shape[-1]), np.float32)
    return np.concatenate([session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)])


def onnx_predictor(onnx_path: str | os.PathLike, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function images -> probabilities over the cached session of ``onnx_path`` (fp32 or int8)."""
    path = Path(onnx_path)
    cached_session(path, threads)  # fail early on a missing or broken file
    return lambda batch: predict_proba(path, batch, threads=threads)


# ---------------------------------------------------------------------------- the check


def check_quantized(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    images: np.ndarray,
    min_agreement: float = MIN_AGREEMENT,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Compare the int8 build with the fp32 model on ``images`` (the evaluation set); raise
    ``RuntimeError`` when their predicted classes agree on fewer than ``min_agreement`` of them.
    Returns images, argmax_agreement, max_abs_prob_diff, min_agreement and both file sizes."""
    if len(images) == 0:
        raise ValueError("check_quantized: no images")
    # sessions for this check only: the files are often in a temporary folder about to be renamed
    fp32 = predict_proba(fp32_path, images, batch_size, cache=False)
    int8 = predict_proba(int8_path, images, batch_size, cache=False)
    check = {
        "images": len(images),
        "argmax_agreement": float((fp32.argmax(1) == int8.argmax(1)).mean()),
        "max_abs_prob_diff": float(np.abs(fp32 - int8).max()),
        "min_agreement": float(min_agreement),
        "fp32_bytes": Path(fp32_path).stat().st_size,
        "int8_bytes": Path(int8_path).stat().st_size,
    }
    if check["argmax_agreement"] < min_agreement:
        raise RuntimeError(f"int8 model disagrees with the fp32 ONNX model: {check}")
    return check
