"""Byte-deterministic model files: the same trained object saved twice gives the same bytes.

DVC hashes every output; a model file whose bytes change on each save (a save date, zip member
times, Python object ids used as names) would invalidate every downstream stage of a forced
re-run and leave ``git status`` dirty after a fresh ``make run``. The savers of each family write
their library's file as usual and then pass it through the helpers here, which change only what
varies and nothing the library's loader reads:

* :func:`write_zip` copies a zip archive member by member (same order, same compression) with
  every timestamp fixed to :data:`ZIP_EPOCH` and fixed permission bits, renaming or replacing
  the members it is told to;
* :func:`renumber` replaces run-time object ids in a JSON tree (``id(obj)`` that skops and Keras
  write as memo keys) by their order of first appearance, so shared references still match;
* :func:`canonical_onnx` rewrites an ONNX graph in a form that depends only on what it computes
  (content-named constants, a canonical node order, sequential names), whatever order and
  numbering the converter happened to use.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

# the earliest time a zip header can hold (what ``zipfile.ZipFile.open(name, "w")`` writes too)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# the same instant in Keras' ``date_saved`` notation
KERAS_EPOCH = "1980-01-01@00:00:00"
_MODE = 0o100644  # a regular file, rw-r--r--
_CHUNK = 1 << 20


def write_zip(
    src: str | os.PathLike | bytes,
    dest: str | os.PathLike,
    *,
    rename: Mapping[str, str] | None = None,
    replace: Mapping[str, bytes] | None = None,
) -> Path:
    """Copy the zip ``src`` (a path or the archive's bytes) to ``dest`` with fixed member metadata.

    Members keep their order and compression; ``rename`` maps old to new names and ``replace``
    (keyed by the old name) gives new contents. Timestamps become :data:`ZIP_EPOCH`, permissions
    0644 (Unix), and extra fields and comments are dropped, so two archives with the same members
    and contents are byte-identical. ``dest`` must differ from ``src``.
    """
    rename = dict(rename or {})
    replace = dict(replace or {})
    source = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else Path(src)
    target = Path(dest)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        names = [info.filename for info in zin.infolist()]
        missing = (set(rename) | set(replace)) - set(names)
        if missing:
            raise KeyError(f"not members of the archive: {sorted(missing)}")
        new_names = [rename.get(n, n) for n in names]
        if len(set(new_names)) != len(new_names):
            raise ValueError("renaming would give two members the same name")
        for info, new_name in zip(zin.infolist(), new_names, strict=True):
            out = zipfile.ZipInfo(new_name, date_time=ZIP_EPOCH)
            out.compress_type = info.compress_type
            out.create_system = 3  # Unix, whatever the host: the bytes must not depend on it
            out.external_attr = _MODE << 16
            if info.filename in replace:
                zout.writestr(out, replace[info.filename])
                continue
            with zin.open(info) as fin, zout.open(out, "w", force_zip64=info.file_size >= zipfile.ZIP64_LIMIT) as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
    return target


def renumber(tree: Any, key: str, start: int = 1) -> dict[int, int]:
    """Replace every integer under ``key`` in the JSON ``tree`` (in place) by its rank of first
    appearance (``start``, ``start + 1``, ...); equal ids stay equal. Returns old -> new."""
    mapping: dict[int, int] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for k, value in node.items():
                if k == key and isinstance(value, int) and not isinstance(value, bool):
                    node[k] = mapping.setdefault(value, start + len(mapping))
                else:
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(tree)
    return mapping


def walk_dicts(tree: Any, visit: Callable[[dict], None]) -> None:
    """Call ``visit`` on every dict of the JSON ``tree``, parents before children, in document order."""
    if isinstance(tree, dict):
        visit(tree)
        for value in tree.values():
            walk_dicts(value, visit)
    elif isinstance(tree, list):
        for value in tree:
            walk_dicts(value, visit)


# ---------------------------------------------------------------- ONNX


def canonical_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose serialised bytes depend only on the computation, not on the
    converter's names or node order (tf2onnx numbers the constants it folds, ``const_fold_opt__N``,
    and orders nodes in a run-dependent way).

    1. Every initializer is named after its content: ``const_<dtype>_<dims>_<sha256 of dtype,
       dims and values>``. Initializers with equal content become one (the converter may or may
       not have merged them already; the result is the same either way).
    2. Nodes are re-ordered by Kahn's topological sort; among the nodes whose inputs are all
       available, the smallest key goes first: op type, domain, the inputs' canonical names, the
       attributes (sorted by name) and the number of outputs. A node's inputs have their final
       names by the time it is ready, so the key does not depend on the original names. Only
       nodes identical in all of that (the same computation on the same values, which a converter
       that merges duplicates does not leave) fall back on their original names.
    3. Nodes are renamed ``<op>_<i>`` in that order and their outputs ``<op>_<i>:<k>``.

    The graph's inputs and outputs keep their names and order (users and runtimes address them),
    and so does an initializer that is also a graph input or output. ``value_info`` follows the
    renaming and is sorted by name, initializers are sorted by name, node attributes by name,
    node ``doc_string``s are cleared, ``opset_import`` is sorted by domain and ``metadata_props``
    by key. Subgraphs (``If``/``Loop`` bodies) see renamed outer values, and the values they use
    count as inputs of their node for the sort; their own nodes are left as they are.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    reserved = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {name: name for name in reserved}  # old value name -> canonical
    taken = set(reserved)

    def fresh(name: str) -> str:
        while name in taken:
            name += "_"
        return name

    # 1. initializers by content; equal content, one initializer (the smallest encoding of it)
    content_names: dict[str, str] = {}
    kept: dict[str, onnx.TensorProto] = {}
    for tensor in graph.initializer:
        if tensor.name in reserved:
            new = tensor.name
        else:
            label = _onnx_tensor_label(tensor)
            if label not in content_names:
                content_names[label] = fresh(label)
            new = content_names[label]
        names[tensor.name] = new
        taken.add(new)
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name, copy.doc_string = new, ""
        if new not in kept or _smaller(copy, kept[new]):
            kept[new] = copy
    for sparse in graph.sparse_initializer:  # kept as they are
        names.setdefault(sparse.values.name, sparse.values.name)
        taken.add(sparse.values.name)

    # 2. Kahn's algorithm with a content key among the ready nodes
    nodes = list(graph.node)
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for value in node.output:
            if value:
                producer[value] = i
    needs: list[set[str]] = []
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        used = {v for v in node.input if v} | _onnx_outer_refs(node)
        need = {v for v in used if v in producer}
        needs.append(need)
        for value in need:
            consumers.setdefault(value, []).append(i)
        taken.update(v for v in used if v not in producer and v not in names)  # dangling: kept as is

    def rewritten(node: onnx.NodeProto) -> onnx.NodeProto:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [names.get(v, v) for v in node.input]
        attributes = sorted(copy.attribute, key=lambda a: a.name)
        copy.ClearField("attribute")
        copy.attribute.extend(attributes)
        for attribute in copy.attribute:
            for sub in _onnx_subgraphs(attribute):
                _onnx_rename_outer(sub, names, set())
        copy.doc_string = ""
        return copy

    def key(i: int) -> tuple:
        node = rewritten(nodes[i])
        attributes = b"".join(a.SerializeToString(deterministic=True) for a in node.attribute)
        primary = (node.op_type, node.domain, tuple(node.input), attributes, len(node.output))
        return (*primary, node.name, tuple(nodes[i].output), i)

    waiting = [len(need) for need in needs]
    ready = [key(i) for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    ordered: list[onnx.NodeProto] = []
    while ready:
        *_, i = heapq.heappop(ready)
        node = rewritten(nodes[i])
        position = len(ordered)
        node.name = f"{node.op_type}_{position}"
        for k, value in enumerate(nodes[i].output):
            if value and value not in reserved:
                names[value] = fresh(f"{node.op_type}_{position}:{k}")
                taken.add(names[value])
        node.output[:] = [names.get(v, v) for v in nodes[i].output]
        ordered.append(node)
        for value in {v for v in nodes[i].output if v}:
            for j in consumers.get(value, ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    heapq.heappush(ready, key(j))
    if len(ordered) != len(nodes):
        raise ValueError(f"the ONNX graph has a cycle: {len(nodes) - len(ordered)} nodes never became ready")

    # 3. put it together
    graph.ClearField("node")
    graph.node.extend(ordered)
    graph.ClearField("initializer")
    graph.initializer.extend(kept[name] for name in sorted(kept))
    infos: dict[str, onnx.ValueInfoProto] = {}
    for info in graph.value_info:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(info)
        copy.name = names.get(info.name, info.name)
        if copy.name not in infos or _smaller(copy, infos[copy.name]):
            infos[copy.name] = copy
    graph.ClearField("value_info")
    graph.value_info.extend(infos[name] for name in sorted(infos))
    for annotation in graph.quantization_annotation:
        annotation.tensor_name = names.get(annotation.tensor_name, annotation.tensor_name)
    opsets = sorted(out.opset_import, key=lambda o: (o.domain, o.version))
    out.ClearField("opset_import")
    out.opset_import.extend(opsets)
    metadata = sorted(out.metadata_props, key=lambda p: (p.key, p.value))
    out.ClearField("metadata_props")
    out.metadata_props.extend(metadata)
    return out


def _onnx_tensor_label(tensor: onnx.TensorProto) -> str:
    """``const_<dtype>_<dims>_<hash>``: the hash of dtype, dims and values (not their encoding)."""
    import onnx
    from onnx import numpy_helper

    dtype = onnx.TensorProto.DataType.Name(tensor.data_type).lower()
    header = f"{tensor.data_type}:{list(tensor.dims)}:".encode()
    if tensor.data_type == onnx.TensorProto.STRING or tensor.data_location == onnx.TensorProto.EXTERNAL:
        body = onnx.TensorProto()
        body.CopyFrom(tensor)
        body.name, body.doc_string = "", ""
        content = body.SerializeToString(deterministic=True)
    else:
        content = numpy_helper.to_array(tensor).tobytes()
    digest = hashlib.sha256(header + content).hexdigest()[:16]
    return f"const_{dtype}_{'x'.join(map(str, tensor.dims)) or 'scalar'}_{digest}"


def _smaller(a: Any, b: Any) -> bool:
    """Whether protobuf ``a`` comes before ``b`` in a fixed order of their encodings (a tie-break)."""
    ea, eb = a.SerializeToString(deterministic=True), b.SerializeToString(deterministic=True)
    return (len(ea), ea) < (len(eb), eb)


def _onnx_subgraphs(attribute: onnx.AttributeProto) -> Iterator[onnx.GraphProto]:
    if attribute.HasField("g"):
        yield attribute.g
    yield from attribute.graphs


def _onnx_outer_refs(node: onnx.NodeProto) -> set[str]:
    """Values of enclosing graphs that ``node``'s subgraphs use (implicit inputs of the node)."""

    def refs(graph: onnx.GraphProto, bound: set[str]) -> set[str]:
        local = bound | {v.name for v in graph.input} | {t.name for t in graph.initializer}
        local |= {v for n in graph.node for v in n.output}
        found = {v.name for v in graph.output if v.name not in local}
        for inner in graph.node:
            found |= {v for v in inner.input if v and v not in local}
            for attribute in inner.attribute:
                for sub in _onnx_subgraphs(attribute):
                    found |= refs(sub, local)
        return found

    found: set[str] = set()
    for attribute in node.attribute:
        for sub in _onnx_subgraphs(attribute):
            found |= refs(sub, set())
    return found


def _onnx_rename_outer(graph: onnx.GraphProto, names: Mapping[str, str], bound: set[str]) -> None:
    """Rename, in place, the values of enclosing graphs that ``graph`` (a subgraph) uses."""
    local = bound | {v.name for v in graph.input} | {t.name for t in graph.initializer}
    local |= {v for n in graph.node for v in n.output}
    for inner in graph.node:
        inner.input[:] = [names.get(v, v) if v and v not in local else v for v in inner.input]
        for attribute in inner.attribute:
            for sub in _onnx_subgraphs(attribute):
                _onnx_rename_outer(sub, names, local)
    for value in graph.output:
        if value.name not in local:
            value.name = names.get(value.name, value.name)
