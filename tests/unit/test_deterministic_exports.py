"""Issue 10: the same trained object saved twice gives the same bytes, and the file still loads
with its library's own loader and predicts the same.

Covers the forest (``.skops``), the GNN weights (``model.pt``), and the ``.keras`` file,
TensorFlow SavedModel and ONNX file of a tiny stand-in for the trackbed network (the project's
head on a two-layer backbone; the ResNet would take minutes). export@cnn runs in two fresh
processes: that is what a forced re-run of the stage does, and TF and tf2onnx name traced
functions and graph nodes with process-wide counters, so two exports in one process differ by design.
tf2onnx numbers the constants it folds in a run-dependent order (``const_fold_opt__38`` in one
process, ``__39`` in the next, even for the tiny network); the export canonicalises the graph, and
the canonicaliser itself is checked on a hand-built graph given in two orders under two namings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from overseer.deterministic import ZIP_EPOCH, canonical_onnx, renumber, write_zip

REPO = Path(__file__).resolve().parents[2]


def digest_tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- shared helpers


def test_write_zip_fixes_times_and_keeps_order_and_contents(tmp_path: Path) -> None:
    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr(zipfile.ZipInfo("b.txt", date_time=(2024, 5, 6, 7, 8, 10)), b"bee")
        z.writestr("a.txt", b"ay")  # now
        z.writestr("c.bin", b"\0" * 100, compress_type=zipfile.ZIP_DEFLATED)
    write_zip(src, tmp_path / "one.zip", rename={"a.txt": "x.txt"}, replace={"b.txt": b"BEE"})
    write_zip(src.read_bytes(), tmp_path / "two.zip", rename={"a.txt": "x.txt"}, replace={"b.txt": b"BEE"})
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as z:
        assert z.namelist() == ["b.txt", "x.txt", "c.bin"]
        assert [z.read(n) for n in z.namelist()] == [b"BEE", b"ay", b"\0" * 100]
        assert {i.date_time for i in z.infolist()} == {ZIP_EPOCH}
        assert z.getinfo("c.bin").compress_type == zipfile.ZIP_DEFLATED
    with pytest.raises(KeyError, match="not members"):
        write_zip(src, tmp_path / "bad.zip", rename={"nope": "x"})
    with pytest.raises(ValueError, match="same name"):
        write_zip(src, tmp_path / "bad.zip", rename={"a.txt": "b.txt"})


def test_renumber_keeps_shared_ids_equal() -> None:
    tree = {"__id__": 9001, "kids": [{"__id__": 42}, {"__id__": 9001, "x": {"__id__": 7}}], "other": 42}
    assert renumber(tree, "__id__") == {9001: 1, 42: 2, 7: 3}
    assert tree == {"__id__": 1, "kids": [{"__id__": 2}, {"__id__": 1, "x": {"__id__": 3}}], "other": 42}


def small_onnx(order: list[str], rename: dict[str, str], shared: bool) -> bytes:
    """Y = Softmax(Relu(X @ W + B) + ReduceSum(X * S)) and Z = Gemm(X, W, B), as an ONNX model.

    ``order`` lists the nodes (any topological order), ``rename`` renames intermediate values,
    initializers and nodes, ``shared``: whether MatMul/Add and Gemm use the same W and B
    initializers or two equal copies. Unless ``order`` starts with MatMul, Gemm's attributes and
    the initializers are listed in reverse."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def n(name: str) -> str:
        return rename.get(name, name)

    rng = np.random.default_rng(0)
    w, b, s = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=3)
    tensors = {"W": w, "B": b, "S": s, "axes": np.array([1], np.int64)}
    if not shared:
        tensors |= {"W2": w, "B2": b}
    initializers = [
        numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), n(k)) for k, v in tensors.items()
    ]
    wg, bg = ("W", "B") if shared else ("W2", "B2")
    nodes = {
        "mm": helper.make_node("MatMul", ["X", n("W")], [n("a")], name=n("mm")),
        "add": helper.make_node("Add", [n("a"), n("B")], [n("b")], name=n("add")),
        "relu": helper.make_node("Relu", [n("b")], [n("c")], name=n("relu"), doc_string=f"id {id(rename)}"),
        "mul": helper.make_node("Mul", ["X", n("S")], [n("d")], name=n("mul")),
        "sum": helper.make_node("ReduceSum", [n("d"), n("axes")], [n("e")], name=n("sum"), keepdims=1),
        "join": helper.make_node("Add", [n("c"), n("e")], [n("f")], name=n("join")),
        "soft": helper.make_node("Softmax", [n("f")], ["Y"], name=n("soft"), axis=1),
        "gemm": helper.make_node("Gemm", ["X", n(wg), n(bg)], ["Z"], name=n("gemm"), alpha=1.0, beta=1.0, transB=0),
    }
    if order[0] != "mm":  # make_node sorts them by name; a converter need not
        attributes = list(nodes["gemm"].attribute)[::-1]
        nodes["gemm"].ClearField("attribute")
        nodes["gemm"].attribute.extend(attributes)
    graph = helper.make_graph(
        [nodes[k] for k in order],
        "small",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 4]) for name in ("Y", "Z")],
        initializers if order[0] == "mm" else initializers[::-1],
        value_info=[helper.make_tensor_value_info(n("c"), TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # as tf2onnx
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_canonical_onnx_ignores_node_order_and_names() -> None:
    import onnx
    import onnxruntime as ort

    one = small_onnx(["mm", "add", "relu", "mul", "sum", "join", "soft", "gemm"], {}, shared=True)
    rename = {k: f"tf2onnx_{k}__{i}" for i, k in enumerate(["a", "b", "c", "d", "e", "f", "W", "B", "S", "axes"])}
    rename |= {k: f"node_{k}_7" for k in ["mm", "add", "relu", "mul", "sum", "join", "soft", "gemm"]}
    rename |= {"W2": "const_fold_opt__12", "B2": "const_fold_opt__3"}
    two = small_onnx(["gemm", "mul", "sum", "mm", "add", "relu", "join", "soft"], rename, shared=False)
    assert one != two
    canonical = [canonical_onnx(onnx.ModelProto.FromString(raw)) for raw in (one, two)]
    assert canonical[0].SerializeToString() == canonical[1].SerializeToString()
    # and once canonical, it stays as it is
    assert canonical_onnx(canonical[0]).SerializeToString() == canonical[0].SerializeToString()

    model = canonical[0]
    onnx.checker.check_model(model)
    graph = model.graph
    assert [v.name for v in graph.input] == ["X"] and [v.name for v in graph.output] == ["Y", "Z"]
    assert all(node.name == f"{node.op_type}_{i}" and not node.doc_string for i, node in enumerate(graph.node))
    # equal W (and B) copies became one, named by content
    assert len(graph.initializer) == 4 and all(t.name.startswith("const_") for t in graph.initializer)
    assert [t.name for t in graph.initializer] == sorted(t.name for t in graph.initializer)
    relu = next(node for node in graph.node if node.op_type == "Relu")
    assert [v.name for v in graph.value_info] == list(relu.output)
    gemm = next(node for node in graph.node if node.op_type == "Gemm")
    assert [a.name for a in gemm.attribute] == ["alpha", "beta", "transB"]

    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    for raw, again in zip((one, two), canonical, strict=True):
        before = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, {"X": x})
        after = ort.InferenceSession(again.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})
        for expected, got in zip(before, after, strict=True):
            np.testing.assert_array_equal(got, expected)


def test_canonical_onnx_rejects_a_cycle() -> None:
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Add", ["X", "q"], ["p"]), helper.make_node("Relu", ["p"], ["q"])]
    value = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])
    out = helper.make_tensor_value_info("p", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph(nodes, "loop", [value], [out]))
    with pytest.raises(ValueError, match="cycle"):
        canonical_onnx(model)


# ---------------------------------------------------------------- seismic: skops


def test_skops_forest_saves_identically_and_loads(tmp_path: Path) -> None:
    import skops.io

    from overseer.seismic.forest import build_pipeline
    from overseer.seismic.model_io import load_model, save_model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    forest = build_pipeline(5).fit(x, y)
    a, b = save_model(forest, tmp_path / "a.skops"), save_model(forest, tmp_path / "b.skops")
    # a loaded copy (new object ids, tree nodes in newly allocated memory) gives the same bytes too
    c = save_model(load_model(a), tmp_path / "c.skops")
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    with zipfile.ZipFile(a) as z:
        assert {i.date_time for i in z.infolist()} == {ZIP_EPOCH}
    # skops' own loader, with the types it asks to trust
    loaded = skops.io.load(a, trusted=skops.io.get_untrusted_types(file=a))
    np.testing.assert_array_equal(loaded.predict_proba(x), forest.predict_proba(x))


# ---------------------------------------------------------------- engraving: torch


@pytest.mark.usefixtures("one_torch_thread")
def test_engraving_weights_save_identically_and_load(tmp_path: Path) -> None:
    import torch
    from engraving_fakes import fake_piece

    from overseer.engraving.dataset import piece_to_data
    from overseer.engraving.model import EngravingGNN, ModelConfig
    from overseer.engraving.train import WEIGHTS_FILE, save_model

    torch.manual_seed(0)
    model = EngravingGNN(ModelConfig(hidden=16, layers=2, gru_layers=1, dropout=0.0)).eval()
    save_model(model, tmp_path / "a")
    save_model(model, tmp_path / "b")
    a, b = (tmp_path / "a" / WEIGHTS_FILE).read_bytes(), (tmp_path / "b" / WEIGHTS_FILE).read_bytes()
    assert a == b
    # torch's own loader into a fresh model
    again = EngravingGNN(ModelConfig(hidden=16, layers=2, gru_layers=1, dropout=0.0)).eval()
    again.load_state_dict(torch.load(tmp_path / "a" / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    data = piece_to_data(fake_piece(30, seed=1))
    with torch.no_grad():
        expected, got = model(data), again(data)
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key


# ---------------------------------------------------------------- trackbed: .keras, SavedModel, ONNX


@pytest.fixture(scope="module")
def tiny_cnn() -> tuple:
    """The project's head on a two-layer backbone, called once (what export needs), and its images."""
    import keras

    from overseer.trackbed.model import build_head, join

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    backbone = keras.Model(inputs, x, name="backbone")
    rng = np.random.default_rng(0)
    head = build_head(input_dim=4, units=(6,), feature_mean=rng.normal(size=4), feature_var=rng.uniform(1, 2, 4))
    model = join(backbone, head)
    images = rng.uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    model.predict(images, verbose=0)
    return model, images


def test_keras_file_saves_identically_and_loads(tiny_cnn: tuple, tmp_path: Path) -> None:
    import keras

    from overseer.trackbed.model import save_keras

    model, images = tiny_cnn
    a, b = save_keras(model, tmp_path / "a.keras"), save_keras(model, tmp_path / "b.keras")
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as z:
        assert {i.date_time for i in z.infolist()} == {ZIP_EPOCH}
        assert b'"date_saved": "1980-01-01@00:00:00"' in z.read("metadata.json")
        assert b'"shared_object_id": 1' in z.read("config.json")  # the dtype policy all layers share
    loaded = keras.models.load_model(a, compile=False)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


EXPORT = """
import sys, numpy as np
from overseer.trackbed.export import export_trackbed
export_trackbed(sys.argv[1], sys.argv[2], np.load(sys.argv[3]), {"note": "tiny"})
"""


def export_in_fresh_process(model_path: Path, images_path: Path, out: Path) -> None:
    """export@cnn as a forced re-run does it: a new process loading the trained ``.keras`` file."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    args = [sys.executable, "-c", EXPORT, os.fspath(model_path), os.fspath(out), os.fspath(images_path)]
    subprocess.run(args, check=True, cwd=REPO, env=env, capture_output=True, timeout=300)


def test_export_is_identical_across_processes_and_loads(tiny_cnn: tuple, tmp_path: Path) -> None:
    import keras
    import tensorflow as tf

    from overseer.trackbed.export import onnx_predict
    from overseer.trackbed.model import save_keras

    model, images = tiny_cnn
    model_path, images_path = save_keras(model, tmp_path / "trained.keras"), tmp_path / "images.npy"
    np.save(images_path, images)
    export_in_fresh_process(model_path, images_path, tmp_path / "one")
    export_in_fresh_process(model_path, images_path, tmp_path / "two")
    one, two = digest_tree(tmp_path / "one"), digest_tree(tmp_path / "two")
    assert {"model.keras", "model.onnx", "saved_model/saved_model.pb", "saved_model/fingerprint.pb"} <= one.keys()
    assert sorted(k for k in one.keys() | two.keys() if one.get(k) != two.get(k)) == []

    expected = model.predict(images, verbose=0)
    loaded = keras.models.load_model(tmp_path / "one" / "model.keras", compile=False)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    reloaded = tf.saved_model.load(os.fspath(tmp_path / "one" / "saved_model"))  # kept: serve() needs it alive
    np.testing.assert_allclose(reloaded.serve(images).numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(onnx_predict(tmp_path / "one" / "model.onnx", images), expected, rtol=0, atol=1e-5)
    # still a valid fingerprint; its uuid derived from the content rather than random
    fingerprint = tf.saved_model.experimental.read_fingerprint(os.fspath(tmp_path / "one" / "saved_model"))
    assert fingerprint.saved_model_checksum and fingerprint.checkpoint_hash


def test_svg_pages_are_the_same_bytes_on_every_render(tmp_path: Path) -> None:
    """verovio's element ids are seeded from the score (xmlIdChecksum), not drawn at random."""
    import engraving_scores as es

    from overseer.engraving.export.render import render_svg

    one = es.score(
        es.part(
            "P1", es.measure(1, es.attributes(staves=1, clefs=(("G", 2),)), es.note("C", 4, 4 * es.Q, kind="whole"))
        )
    )
    score = es.write(tmp_path, "one.musicxml", one)
    first, second = render_svg(score, tmp_path / "a", pages=1), render_svg(score, tmp_path / "b", pages=1)
    assert first[0].read_bytes() == second[0].read_bytes()
