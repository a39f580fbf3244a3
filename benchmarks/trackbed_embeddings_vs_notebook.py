"""Trackbed training: embeddings once (ours) vs. the backbone every epoch (the notebook's way).

What is compared, and why
-------------------------
The notebook trains ResNet50V2 (frozen) + a small MLP head end to end: every epoch pushes every
training and validation image through the whole backbone again. Because the backbone is frozen
(BatchNormalization in inference mode), its output per image never changes, so ``train_cnn``
computes the embeddings once and fits the head on them: the same optimisation problem at a
fraction of the cost. This script checks that claim on the same data, in one run:

1. **ours** — ``train_cnn(cfg, train_files, workdir)``: backbone build, embeddings once, head fit,
   join; then the joined model is saved and evaluated on the held-out evaluation file.
2. **notebook** — the same cfg, seed and stratified validation split: ``build_backbone`` +
   ``build_head`` -> ``join`` -> ``fit_on_images`` (backbone forward pass on every image, every
   epoch); the best checkpoint on disk is evaluated on the same evaluation file.

Both ways run the same number of epochs (early stopping is disabled: patience = epochs) and are
timed over the same scope: from backbone build to the end of training. Printed: wall seconds of
each, the ratio notebook/ours and both held-out macro-F1 values (they should be close; they are
not bit-identical because the shuffling and dropout random streams differ between a NumPy-array
fit and a tf.data fit).

Then the backbone's inference throughput (images/second, batch 32, after one warm-up batch)
under Keras and under ONNX Runtime (CPUExecutionProvider) for the same backbone exported with
``model.export(..., format="onnx")`` — best of ``--repeats`` alternating passes, since other
processes may share the cores — with the maximum absolute difference of their outputs.

The default is ``--weights none`` (no download; a seeded random-init backbone has exactly the
cost of the ImageNet one) and ``--no-standardize`` for BOTH ways: the notebook has no
standardisation layer. With random-init features and no standardisation the head learns
little in a few epochs, so the macro-F1 values are low; they are there to show that both ways
train the same model, not how good the model is (``params.yaml`` trains with standardisation).
With ``--standardize`` the notebook way first needs one embedding pass for the statistics; it
is counted in its time. Wall times are one run each: on shared cores, read them with the load
average that the script prints.

Run from the repository root:  .venv/bin/python benchmarks/trackbed_embeddings_vs_notebook.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-per-class", type=int, default=32, help="default-set training images per class")
    parser.add_argument("--eval-per-class", type=int, default=8, help="default-set evaluation images per class")
    parser.add_argument("--epochs", type=int, default=10, help="epochs for both ways (no early stopping)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weights", default="none", help='"none" (random init), "imagenet" or a weights file')
    parser.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="standardise embeddings before the head in BOTH ways (not in the notebook; default: off)",
    )
    parser.add_argument("--seed", type=int, default=123, help="training seed (the data use params.yaml's seed)")
    parser.add_argument("--throughput-images", type=int, default=64, help="images for the throughput comparison")
    parser.add_argument("--repeats", type=int, default=3, help="timed throughput passes per runtime (best is kept)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    return parser.parse_args()


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_environment() -> None:
    import keras
    import onnxruntime
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print("== environment")
    print(f"python {platform.python_version()}  tensorflow {tf.__version__}  keras {keras.__version__}")
    print(f"onnxruntime {onnxruntime.__version__}  platform {platform.platform()}")
    print(f"CPUs usable: {len(os.sched_getaffinity(0))} (os.cpu_count {os.cpu_count()})")
    print(f"load average (1/5/15 min): {load_average()}  (other processes share these cores)")
    print(f"GPU visible to TensorFlow: {'yes: ' + ', '.join(g.name for g in gpus) if gpus else 'no'}")


def ingest(args: argparse.Namespace, out_dir: Path) -> tuple[list[Path], list[Path]]:
    """The embedded default set, at the requested per-class counts, as train and eval TFRecords."""
    from overseer.stage import load_params
    from overseer.trackbed.data.ingest import ingest_trackbed
    from overseer.trackbed.data.tfrecord import list_tfrecords

    cfg = dict(load_params("ingest", "trackbed", params_file=REPO / "params.yaml"))
    cfg.update(source="default", eval_source=None)
    cfg["default"] = {"train_per_class": args.train_per_class, "eval_per_class": args.eval_per_class}
    report = ingest_trackbed(cfg, out_dir)
    print(f"ingested: train {report['splits']['train']['records']}, eval {report['splits']['eval']['records']}")
    return list_tfrecords(out_dir / "train"), list_tfrecords(out_dir / "eval")


def training_config(args: argparse.Namespace) -> dict[str, Any]:
    """params.yaml's train_cnn section with the benchmark's overrides (the same for both ways)."""
    from overseer.stage import load_params

    cfg = dict(load_params("train_cnn", params_file=REPO / "params.yaml"))
    cfg.update(
        weights=args.weights,
        epochs=args.epochs,
        batch_size=args.batch_size,
        early_stopping_patience=args.epochs,  # never stops early: both ways run every epoch
        standardize_embeddings=args.standardize,
        seed=args.seed,
        fine_tune={"enabled": False},
    )
    return cfg


def backbone_checksum(model: Any) -> float:
    """Sum of |w| over the (frozen) backbone's weights: equal when both ways start from the same backbone."""
    return float(sum(np.abs(w).astype(np.float64).sum() for w in model.get_layer("backbone").get_weights()))


def macro_f1(model_path: Path, eval_files: list[Path], batch_size: int) -> float:
    from overseer.trackbed.evaluate import evaluate_model

    return float(evaluate_model(model_path, eval_files, batch_size).macro["f1"])


def run_ours(cfg: dict[str, Any], train_files: list[Path], eval_files: list[Path], workdir: Path) -> dict[str, Any]:
    """train_cnn: embeddings once, head on embeddings, joined model; evaluated from disk."""
    from overseer.trackbed.model import save_keras
    from overseer.trackbed.train import train_cnn

    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = train_cnn(cfg, train_files, workdir)
    seconds = time.perf_counter() - start
    model_path = save_keras(result.model, workdir / "ours.keras")
    return {
        "seconds": seconds,
        "epochs": len(result.history),
        "f1": macro_f1(model_path, eval_files, cfg["batch_size"]),
        "weights_used": result.weights_used,
        "checksum": backbone_checksum(result.model),
        "detail": ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()) + " (embeddings once; head checkpoint)",
    }


def train_labels(files: list[Path]) -> np.ndarray:
    """Labels of every record in file order, read without decoding the images."""
    from overseer.trackbed.data.tfrecord import record_table

    return record_table(files)["label"].to_numpy(dtype=np.int64)


def run_notebook(cfg: dict[str, Any], train_files: list[Path], eval_files: list[Path], workdir: Path) -> dict[str, Any]:
    """The notebook's loop: backbone + head joined, fit on images (backbone every epoch)."""
    from overseer.splits import stratified_split
    from overseer.trackbed.model import build_backbone, build_head, join
    from overseer.trackbed.train import embed, fit_on_images, set_determinism

    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    set_determinism(int(cfg["seed"]))  # as train_cnn: the same backbone and head initialisation
    backbone = build_backbone(str(cfg["weights"]))
    labels = train_labels(train_files)
    is_val = stratified_split(labels, float(cfg["val_fraction"]), int(cfg["seed"]))  # as train_cnn
    stats = {}
    if cfg["standardize_embeddings"]:  # the statistics need the embeddings: a cost the notebook never had
        x, _, _ = embed(backbone.model, train_files, int(cfg["batch_size"]))
        stats = {"feature_mean": x[~is_val].mean(axis=0), "feature_var": np.maximum(x[~is_val].var(axis=0), 1e-12)}
    head = build_head(dropout=float(cfg["dropout"]), units=cfg["head_units"], **stats)
    model = join(backbone.model, head)
    history = fit_on_images(
        model, train_files, is_val, cfg, int(cfg["epochs"]), float(cfg["learning_rate"]), workdir, phase="notebook"
    )
    seconds = time.perf_counter() - start
    checkpoint_mb = (workdir / "notebook_best.keras").stat().st_size / 1e6
    return {
        "seconds": seconds,
        "epochs": len(history),
        "f1": macro_f1(workdir / "notebook_best.keras", eval_files, cfg["batch_size"]),
        "weights_used": backbone.weights_used,
        "checksum": backbone_checksum(model),
        "detail": (
            f"train {int((~is_val).sum())} + val {int(is_val.sum())} images through the backbone every epoch; "
            f"best-epoch checkpoint is the whole model ({checkpoint_mb:.0f} MB)"
        ),
    }


def print_training_table(cfg: dict[str, Any], ours: dict[str, Any], notebook: dict[str, Any]) -> None:
    print("\n== training: the same configuration two ways")
    print(
        f"backbone weights: {ours['weights_used']}; epochs {cfg['epochs']} (no early stopping); "
        f"batch {cfg['batch_size']}; lr {cfg['learning_rate']}; seed {cfg['seed']}"
    )
    standardized = (
        "ON in both ways (not in the notebook; its statistics cost the notebook way one embedding pass)"
        if cfg["standardize_embeddings"]
        else "off in both ways, as in the notebook"
    )
    print(f"embedding standardisation: {standardized}")
    print(f"{'way':<34} {'epochs':>6} {'wall s':>9} {'macro-F1 (held-out)':>20}")
    rows = [("ours: embeddings once + head", ours), ("notebook: backbone every epoch", notebook)]
    for name, row in rows:
        print(f"{name:<34} {row['epochs']:>6} {row['seconds']:>9.1f} {row['f1']:>20.3f}")
    print(f"ratio notebook/ours (wall time): {notebook['seconds'] / ours['seconds']:.2f}x")
    same = "yes" if np.isclose(ours["checksum"], notebook["checksum"], rtol=1e-9) else "NO"
    print(f"same backbone in both ways: {same} (sum |w| {ours['checksum']:.6g} vs {notebook['checksum']:.6g})")
    for name, row in rows:
        print(f"  {name.split(':')[0]}: {row['detail']}")


def sample_images(files: list[Path], n: int) -> np.ndarray:
    """The first ``n`` model inputs (float32 N×224×224×3 in [0, 255]) of ``files``, repeated if fewer."""
    from overseer.trackbed.pipeline import image_dataset

    batches = [images.numpy() for images, _, _ in image_dataset(files, 32)]
    images = np.concatenate(batches)
    return np.resize(images, (n, *images.shape[1:])).astype(np.float32)


def images_per_second(forward: Any, images: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    """Images/second of one pass of ``forward`` over ``images`` in batches, and the outputs."""
    start = time.perf_counter()
    outputs = [forward(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return len(images) / (time.perf_counter() - start), np.concatenate(outputs)


def backbone_throughput(weights: str, images: np.ndarray, workdir: Path, repeats: int, batch_size: int = 32) -> None:
    """Keras backbone vs. the same backbone exported to ONNX and run by ONNX Runtime on the CPU.

    One warm-up batch each, then ``repeats`` timed passes over ``images``, alternating the two
    runtimes so that load from other processes hits both alike; the best pass of each is printed.
    """
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    from overseer.trackbed.model import build_backbone

    model = build_backbone(weights).model
    keras_fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    model.predict(images[:1], verbose=0)  # ONNX export needs a model that has been called
    onnx_path = workdir / "backbone.onnx"
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints pages of graph details
        model.export(os.fspath(onnx_path), format="onnx", verbose=False)
    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runtimes = {
        f"Keras {keras.__version__} (tf.function, TF {tf.__version__})": lambda x: keras_fn(x).numpy(),
        f"ONNX Runtime {ort.__version__} (CPU EP)": lambda x: session.run(None, {name: x})[0],
    }
    for forward in runtimes.values():
        forward(images[:batch_size])  # warm-up batch
    passes: dict[str, list[float]] = {label: [] for label in runtimes}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for label, forward in runtimes.items():
            speed, outputs[label] = images_per_second(forward, images, batch_size)
            passes[label].append(speed)

    print(f"\n== backbone throughput: {len(images)} images, batch {batch_size}, after one warm-up batch")
    print(f"{'runtime':<46} {'best img/s':>10}   all passes")
    for label, speeds in passes.items():
        print(f"{label:<46} {max(speeds):>10.1f}   {' '.join(f'{v:.1f}' for v in speeds)}")
    keras_best, onnx_best = (max(v) for v in passes.values())
    print(f"ratio ONNX Runtime/Keras (best passes): {onnx_best / keras_best:.2f}x")
    keras_out, onnx_out = (outputs[label] for label in runtimes)
    diff = float(np.abs(keras_out - onnx_out).max())
    print(
        f"outputs agree on all {len(images)} images: max abs diff {diff:.3g} "
        f"(max |embedding| {np.abs(keras_out).max():.3g}, shape {onnx_out.shape})"
    )


def main() -> None:
    args = parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="trackbed-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print_environment()
    print(f"workdir: {workdir}")
    try:
        train_files, eval_files = ingest(args, workdir / "data")
        cfg = training_config(args)
        total = time.perf_counter()
        ours = run_ours(cfg, train_files, eval_files, workdir / "ours")
        notebook = run_notebook(cfg, train_files, eval_files, workdir / "notebook")
        print_training_table(cfg, ours, notebook)
        images = sample_images(train_files + eval_files, args.throughput_images)
        backbone_throughput(args.weights, images, workdir, args.repeats)
        print(f"\nbenchmark total {time.perf_counter() - total:.0f}s; load average now {load_average()}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
