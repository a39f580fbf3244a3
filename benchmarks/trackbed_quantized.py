"""Trackbed inference on the CPU: Keras vs. ONNX Runtime fp32 vs. the int8 build of the same model.

What is compared, and why
-------------------------
``evaluate@cnn`` runs the saved Keras model (a ``tf.function`` over batches), ``overseer predict
trackbed`` and the exported model run ``model.onnx`` under ONNX Runtime. The int8 build
(:func:`overseer.trackbed.quantize.quantize_onnx`: static QDQ quantization, int8 per-channel
weights, uint8 activations calibrated on training images, the head kept fp32) should be faster on
CPUs with VNNI. This script measures all three on the same model and the same images, in one run:

1. the model: the real architecture (ResNet50V2 backbone, frozen, + the standardising head of
   ``params.yaml``'s ``train_cnn``), trained by ``train_cnn`` on the embedded default set with
   ``--weights none`` (no download; random init has exactly the cost of ImageNet weights), in a
   child process (``train_cnn`` turns on TensorFlow's op determinism, which evaluate does not);
   or an existing export folder (``--model-dir`` with ``model.keras`` and ``model.onnx``, and
   ``--data-dir`` with ``train/`` and ``eval/`` TFRecords);
2. ``export_onnx`` (as export@cnn) -> ``model.onnx``; ``calibration_images`` (``--calibration``
   training images, seeded) -> ``quantize_onnx`` -> ``model.int8.onnx``, timed;
3. agreement on every held-out evaluation image: Keras vs. fp32 ONNX, and ``check_quantized``
   (fp32 vs. int8: argmax agreement, largest probability difference), plus each one's accuracy
   against the true labels;
4. throughput: images/second of Keras, ONNX fp32 and ONNX int8 (cached sessions, intra-op threads
   = usable CPUs), batch ``--batch-size``, one warm-up batch each, then ``--repeats`` passes over
   the same ``--throughput-images`` images, alternating the three so that load from other
   processes hits them alike; the best pass of each and the ratios.

Agreement on a random-init backbone is weaker evidence than on ImageNet weights: the classes then
hang on small variations of small features, where quantization noise weighs more. Nothing is
asserted; times are best-of-N on cores that may be shared (the load average is printed).

Run from the repository root:  .venv/bin/python benchmarks/trackbed_quantized.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-per-class", type=int, default=32, help="default-set training images per class")
    parser.add_argument("--eval-per-class", type=int, default=24, help="default-set evaluation images per class")
    parser.add_argument("--weights", default="none", help='"none" (random init), "imagenet" or a weights file')
    parser.add_argument("--epochs", type=int, default=30, help="head epochs (train_cnn, early stopping as params)")
    parser.add_argument("--model-dir", type=Path, help="an export folder (model.keras, model.onnx) instead of training")
    parser.add_argument("--data-dir", type=Path, help="with --model-dir: prepared TFRecords (train/, eval/)")
    parser.add_argument("--calibration", type=int, default=64, help="training images to calibrate on")
    parser.add_argument("--seed", type=int, default=0, help="calibration sample seed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--throughput-images", type=int, default=96, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per runtime (best is kept)")
    parser.add_argument("--twice", action="store_true", help="quantize a second time and compare the bytes")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # child: ingest + train into this folder
    return parser.parse_args()


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_flags() -> str:
    """The CPU model and the int8/bf16 instruction sets it announces (from /proc/cpuinfo)."""
    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
    return f"{model}; {' '.join(f for f in wanted if f in flags) or 'none of ' + ', '.join(wanted)}"


def print_environment() -> None:
    import keras
    import onnxruntime
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print("== environment")
    print(f"python {platform.python_version()}  tensorflow {tf.__version__}  keras {keras.__version__}")
    print(f"onnxruntime {onnxruntime.__version__}  platform {platform.platform()}")
    print(f"CPU: {cpu_flags()}")
    print(f"CPUs usable: {len(os.sched_getaffinity(0))} (os.cpu_count {os.cpu_count()})")
    print(f"load average (1/5/15 min): {load_average()}  (other processes share these cores)")
    print(f"GPU visible to TensorFlow: {'yes: ' + ', '.join(g.name for g in gpus) if gpus else 'no'}")


# ---------------------------------------------------------------------------- the model (child process)


def prepare(args: argparse.Namespace, out: Path) -> None:
    """Ingest the default set and train the real architecture; write data/, model.keras, info.json."""
    from overseer.stage import load_params
    from overseer.trackbed.data.ingest import ingest_trackbed
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.model import save_keras
    from overseer.trackbed.train import train_cnn

    cfg = dict(load_params("ingest", "trackbed", params_file=REPO / "params.yaml"))
    cfg.update(source="default", eval_source=None)
    cfg["default"] = {"train_per_class": args.train_per_class, "eval_per_class": args.eval_per_class}
    ingest_trackbed(cfg, out / "data")
    train_cfg = dict(load_params("train_cnn", params_file=REPO / "params.yaml"))
    train_cfg.update(weights=args.weights, epochs=args.epochs, fine_tune={"enabled": False})
    start = time.perf_counter()
    result = train_cnn(train_cfg, list_tfrecords(out / "data" / "train"), out / "train")
    save_keras(result.model, out / "model.keras")
    info = {"weights_used": result.weights_used, "train_seconds": time.perf_counter() - start}
    (out / "info.json").write_text(json.dumps(info))


def model_and_data(args: argparse.Namespace, workdir: Path) -> tuple[Path, Path, str]:
    """(model.keras, prepared-data folder, what the backbone weights are)."""
    if args.model_dir is not None:
        data = args.data_dir or REPO / "data" / "prepared" / "trackbed"
        config = args.model_dir / "config.json"
        used = json.loads(config.read_text()).get("weights_used", "?") if config.exists() else "?"
        return args.model_dir / "model.keras", data, f"{used} (from {args.model_dir})"
    command = [sys.executable, __file__, "--prepare", str(workdir)]
    for flag in ("train_per_class", "eval_per_class", "weights", "epochs"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info = json.loads((workdir / "info.json").read_text())
    print(
        f"ingest + train_cnn (child process): {time.perf_counter() - start:.0f}s, "
        f"train_cnn {info['train_seconds']:.0f}s; backbone weights: {info['weights_used']}"
    )
    return workdir / "model.keras", workdir / "data", info["weights_used"]


# ---------------------------------------------------------------------------- measurements


def eval_set(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every held-out image (float32 N×224×224×3 in [0, 255]) and its label, in file order."""
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.pipeline import image_dataset

    images, labels = [], []
    for batch, batch_labels, _ in image_dataset(list_tfrecords(data / "eval"), 32):
        images.append(batch.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels)


def images_per_second(forward: Any, images: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    outputs = [forward(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return len(images) / (time.perf_counter() - start), np.concatenate(outputs)


def throughput(runtimes: dict[str, Any], images: np.ndarray, batch_size: int, repeats: int) -> dict[str, float]:
    for forward in runtimes.values():
        forward(images[:batch_size])  # warm-up batch
    passes: dict[str, list[float]] = {label: [] for label in runtimes}
    for _ in range(repeats):
        for label, forward in runtimes.items():
            passes[label].append(images_per_second(forward, images, batch_size)[0])
    print(f"\n== throughput: {len(images)} images, batch {batch_size}, one warm-up batch, best of {repeats}")
    print(f"{'runtime':<52} {'best img/s':>10}   all passes")
    for label, speeds in passes.items():
        print(f"{label:<52} {max(speeds):>10.1f}   {' '.join(f'{v:.1f}' for v in speeds)}")
    return {label: max(speeds) for label, speeds in passes.items()}


def main() -> None:
    args = parse_args()
    if args.prepare is not None:
        prepare(args, args.prepare)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="trackbed-int8-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print_environment()
    total = time.perf_counter()
    try:
        import keras
        import onnxruntime as ort
        import tensorflow as tf

        from overseer.trackbed.data.tfrecord import list_tfrecords
        from overseer.trackbed.export import export_onnx
        from overseer.trackbed.quantize import (
            QUANTIZED_OPS,
            calibration_images,
            check_quantized,
            onnx_predictor,
            quantize_onnx,
        )

        keras_path, data, weights_used = model_and_data(args, workdir)
        model = keras.models.load_model(keras_path, compile=False)
        images, labels = eval_set(data)
        print(f"model: {model.name}, {model.count_params():,} parameters; backbone weights: {weights_used}")

        if args.model_dir is None:
            model.predict(images[:1], verbose=0)  # ONNX export needs a model that has been called
            fp32_path = export_onnx(model, workdir / "model.onnx")
        else:
            fp32_path = args.model_dir / "model.onnx"
        start = time.perf_counter()
        calibration = calibration_images(list_tfrecords(data / "train"), args.calibration, args.seed)
        calib_seconds = time.perf_counter() - start
        start = time.perf_counter()
        int8_path = quantize_onnx(fp32_path, workdir / "model.int8.onnx", calibration)
        quant_seconds = time.perf_counter() - start
        print(
            f"\n== int8 build: static QDQ, per-channel int8 weights, uint8 activations; ops {', '.join(QUANTIZED_OPS)}"
        )
        print(
            f"calibration: {len(calibration)} training images (seed {args.seed}) read in {calib_seconds:.1f}s; "
            f"quant_pre_process + quantize_static {quant_seconds:.1f}s"
        )
        print(f"file size: fp32 {fp32_path.stat().st_size / 1e6:.1f} MB, int8 {int8_path.stat().st_size / 1e6:.1f} MB")
        if args.twice:
            again = quantize_onnx(fp32_path, workdir / "again.int8.onnx", calibration)
            digests = {hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in (int8_path, again)}
            print(f"quantized twice: {'same bytes' if len(digests) == 1 else 'DIFFERENT bytes'} ({', '.join(digests)})")

        forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)  # as evaluate does
        runtimes = {
            f"Keras {keras.__version__} (tf.function, TF {tf.__version__})": lambda x: forward(x).numpy(),
            f"ONNX Runtime {ort.__version__} fp32 (CPU EP)": onnx_predictor(fp32_path),
            f"ONNX Runtime {ort.__version__} int8 QDQ (CPU EP)": onnx_predictor(int8_path),
        }
        probs = {label: images_per_second(f, images, args.batch_size)[1] for label, f in runtimes.items()}
        keras_p, fp32_p, int8_p = probs.values()
        check = check_quantized(fp32_path, int8_path, images, min_agreement=0.0)
        print(f"\n== agreement on all {len(images)} held-out images")
        print(f"{'pair':<22} {'argmax agreement':>16} {'max |prob diff|':>16}")
        pairs = [("Keras vs ONNX fp32", keras_p, fp32_p), ("ONNX fp32 vs int8", fp32_p, int8_p)]
        for name, a, b in pairs:
            print(f"{name:<22} {np.mean(a.argmax(1) == b.argmax(1)):>16.4f} {np.abs(a - b).max():>16.3g}")
        print(f"check_quantized: {check}")
        print("accuracy vs true labels: " + ", ".join(f"{k.split(' (')[0]} {np.mean(p.argmax(1) == labels):.3f}"
                                                    for k, p in probs.items()))  # fmt: skip
        if "none" in weights_used:
            print("(random-init backbone: agreement is weaker evidence than with ImageNet weights)")

        timed = np.resize(images, (args.throughput_images, *images.shape[1:])).astype(np.float32)
        best = throughput(runtimes, timed, args.batch_size, args.repeats)
        keras_s, fp32_s, int8_s = best.values()
        print(f"ratio ONNX fp32 / Keras: {fp32_s / keras_s:.2f}x")
        print(f"ratio ONNX int8 / Keras: {int8_s / keras_s:.2f}x")
        print(f"ratio ONNX int8 / ONNX fp32: {int8_s / fp32_s:.2f}x")
        print(f"\nbenchmark total {time.perf_counter() - total:.0f}s; load average now {load_average()}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
