"""`dvc repro` of the trackbed chain end to end on a tiny configuration, and its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import BIN, make_project, run, serve_model
from PIL import Image

pytestmark = pytest.mark.slow


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_repro_end_to_end_then_nothing_then_only_downstream(tmp_path: Path) -> None:
    root, env = make_project(tmp_path, {("cv_cnn", "folds"): 2})
    first = run(["dvc", "repro", "export@cnn", "evaluate@cnn", "cv_cnn"], root, env)
    chain = {"ingest@trackbed", "validate@trackbed", "train_cnn", "evaluate@cnn", "export@cnn", "cv_cnn"}
    assert _ran(first.stdout) == chain

    # evaluation is on the 20 held-out images only, with the full report
    metrics = json.loads((root / "reports/trackbed/eval/metrics.json").read_text())
    assert metrics["n_items"] == 20
    assert set(metrics["per_class"]) == {"ASPHALT", "BALLAST", "GRAS", "STONE", "ERROR"}
    for name in ("per_class.csv", "confusion_matrix.csv", "false_inferences.json", "confusion_matrix.png",
                 "eval_samples.png", "misclassified.png"):  # fmt: skip
        assert (root / "reports/trackbed/eval" / name).stat().st_size > 0
    # cv_cnn: every training image held out once, per-fold scores and their spread
    cv = json.loads((root / "reports/trackbed/cv/cv_summary.json").read_text())
    assert cv["k"] == 2 and len(cv["per_fold_macro_f1"]) == 2 and cv["n_images"] == 40
    assert cv["macro_f1"]["mean"] == sum(cv["per_fold_macro_f1"]) / 2
    train = json.loads((root / "reports/trackbed/train/summary.json").read_text())  # metrics.json: the numbers
    assert train["weights_used"] == "none (random init)" and train["n_train"] + train["n_val"] == 40
    export = root / "models/trackbed/export"
    for name in ("model.keras", "model.onnx", "saved_model", "classes.json", "config.json"):
        assert (export / name).exists(), name
    check = json.loads((root / "reports/trackbed/export.json").read_text())
    assert check["argmax_agreement"] == 1.0
    # the int8 build is kept only when it agrees with fp32 on >= 99 % of the evaluation images
    assert check["int8_written"] == (export / "model.int8.onnx").exists()
    assert check["int8_argmax_agreement"] >= 0.99 if check["int8_written"] else "int8_failure" in check

    # one MLflow run per stage, with params, commit, input digests; the model is registered
    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("trackbed")
    runs = client.search_runs([experiment.experiment_id], "tags.`overseer.stage` != 'pipeline'")  # not the parents
    by_stage = {r.data.tags["overseer.stage"]: r for r in runs}
    assert set(by_stage) == chain
    train_run = by_stage["train_cnn"]
    assert train_run.data.params["train_cnn.epochs"] == "2"
    assert "input.md5.data/prepared/trackbed/train" in train_run.data.tags
    assert "eval_macro_f1" in by_stage["evaluate@cnn"].data.metrics
    assert client.get_registered_model("trackbed-resnet50v2").latest_versions
    # the first version: challenger and champion, tagged with its held-out score, its card as description
    version = client.get_model_version_by_alias("trackbed-resnet50v2", "champion")
    assert set(version.aliases) == {"challenger", "champion"} and float(version.tags["heldout.macro.f1"]) >= 0
    assert "Held-out scores" in version.description and (export / "MODEL_CARD.md").is_file()

    # nothing changed: nothing runs
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "tiny run"], root, env)
    second = run(["dvc", "repro", "export@cnn", "evaluate@cnn", "cv_cnn"], root, env)
    assert _ran(second.stdout) == set()

    # a train_cnn param invalidates train_cnn (and so what follows), nothing before it. `dvc status`
    # says so without training again: queued experiments that do run are test_seismic_pipeline's.
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train_cnn"]["epochs"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status", "--json", "--with-deps", "export@cnn", "evaluate@cnn", "cv_cnn"], root, env)
    changed = json.loads(status.stdout)
    assert set(changed) == {"train_cnn", "cv_cnn"}, changed  # cv_cnn reads train_cnn's params too
    for stage in ("train_cnn", "cv_cnn"):
        assert changed[stage] == [{"changed deps": {"params.yaml": {"train_cnn": "modified"}}}], changed


def _write_folder(root: Path, bad: str | None = None) -> Path:
    folder = root / "data/raw/trackbed/images"
    rng = np.random.default_rng(0)
    for cls in ("ASPHALT", "BALLAST", "GRAS", "STONE", "ERROR"):
        (folder / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / cls / f"{i}.png")
    if bad:
        (folder / "GRAS" / bad).write_bytes(b"\xff\xd8 definitely not a jpeg")
    return folder


def test_ingest_stage_rejects_unreadable_image_and_writes_nothing(tmp_path: Path) -> None:
    root, env = make_project(tmp_path, {("ingest", "trackbed", "source"): "data/raw/trackbed/images"})
    _write_folder(root, bad="broken.jpg")
    result = run(["python", "stages/ingest.py", "trackbed"], root, env, check=False)
    assert result.returncode == 2
    assert "GRAS/broken.jpg" in result.stderr and "unreadable image" in result.stderr
    assert "Traceback" not in result.stderr
    prepared = root / "data/prepared"
    assert not (prepared / "trackbed").exists()
    assert not prepared.exists() or not list(prepared.iterdir()), "no temporary folder left behind"


def test_validate_stage_names_file_record_and_expectation(tmp_path: Path) -> None:
    from overseer.trackbed.data.schema import decode_fields, encode_example
    from overseer.trackbed.data.tfrecord import iter_raw_records, list_tfrecords, write_shards

    rng = np.random.default_rng(1)
    records = [encode_example(f"img{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), i % 5) for i in range(20)]
    # record 7 claims a bigger image than its bytes hold
    from tensorflow.core.example.example_pb2 import Example

    broken = Example.FromString(records[7])
    broken.features.feature["height"].int64_list.value[0] = 9
    records[7] = broken.SerializeToString()
    raw = tmp_path / "raw"
    write_shards(records, raw, "mine", total=20, shard_size=100)
    overrides = {
        ("ingest", "trackbed", "source"): str(raw / "mine-00000-of-00001.tfrecord"),
        ("ingest", "trackbed", "eval_source"): str(raw / "mine-00000-of-00001.tfrecord"),
    }
    (tmp_path / "project").mkdir()
    root, env = make_project(tmp_path / "project", overrides)
    run(["python", "stages/ingest.py", "trackbed"], root, env)
    result = run(["python", "stages/validate.py", "trackbed"], root, env, check=False)
    assert result.returncode == 2
    # records pass through byte for byte but shuffled: find where the broken one landed
    shard, index = next(
        (shard, i)
        for shard in list_tfrecords(root / "data/prepared/trackbed/train")
        for i, raw in iter_raw_records(shard)
        if decode_fields(raw)["image_filename"] == b"img7.png"
    )
    # the message names the user's file, its record and image first, then where ingest put it
    source = raw / "mine-00000-of-00001.tfrecord"
    located = f"{source}, record 7 (image_filename 'img7.png'; prepared {shard.relative_to(root)}, record {index}):"
    assert located in result.stderr
    assert "expect_column_pair_values_to_be_equal(image_bytes, expected_bytes)" in result.stderr
    assert "Traceback" not in result.stderr
    report = (root / "reports/trackbed/validation/validation.md").read_text()
    assert "FAILED" in report


def test_logged_model_serves_base64_images_over_rest(tmp_path: Path) -> None:
    """`mlflow models serve` of a model logged by ``log_trackbed_model`` (a tiny ONNX export with the
    real model's I/O): a base64 PNG in ``dataframe_split`` gets class names and probabilities equal to
    the in-process prediction; a row that is no image is a 400 naming that row."""
    import base64
    import os

    import keras
    import mlflow
    import pandas as pd

    from overseer.serving.trackbed import TrackbedModel, encode_png, log_trackbed_model
    from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE
    from overseer.trackbed.export import export_onnx

    export = tmp_path / "export"
    export.mkdir()
    keras.utils.set_random_seed(2)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(x))
    model.predict(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32), verbose=0)
    export_onnx(model, export / "model.onnx")
    (export / "classes.json").write_text(json.dumps(list(CLASSES)))

    uri, previous = f"sqlite:///{tmp_path}/mlflow.db", os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("serving", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            log_trackbed_model(export, "trackbed-served")
    finally:
        mlflow.set_tracking_uri(previous)  # None: unset again

    png = encode_png(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    expected = TrackbedModel().load(export / "model.onnx", export / "classes.json").predict(None, {"image": [png]})
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    split = {"columns": ["image"], "data": [[base64.b64encode(png).decode()]]}
    with serve_model("models:/trackbed-served/1", env, tmp_path) as post:
        if post is None:
            pytest.skip("no TCP port can be bound here")
        answer = post({"dataframe_split": split})
        bad = {"columns": ["image"], "data": [*split["data"], [base64.b64encode(b"not an image").decode()]]}
        with pytest.raises(AssertionError, match=r"^400: .*row 1 of column 'image': not a readable JPEG or PNG"):
            post({"dataframe_split": bad})
    got = pd.DataFrame(answer["predictions"])
    assert list(got.columns) == list(expected.columns) == ["class", "confidence", *(f"p_{c}" for c in CLASSES)]
    assert got["class"].tolist() == expected["class"].tolist() and got["class"][0] in CLASSES
    np.testing.assert_allclose(
        got.drop(columns="class").to_numpy(), expected.drop(columns="class").to_numpy(), atol=1e-6
    )
