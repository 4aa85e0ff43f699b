"""ONNX front end: an ONNX file or ModelProto -> IR graph.

Shapes come from ``onnx.shape_inference``. Weights are never needed: external
data is checked to stay inside the model's folder but is not read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference
from google.protobuf.message import DecodeError

from perfcast.errors import GraphError, ModelLoadError, UsageError
from perfcast.frontends.common import check_file
from perfcast.ir.graph import Graph, Node, Tensor, float32

MIN_OPSET = 11
SMALL_INT_CONST = 64  # integer constants up to this size keep their values (shapes, axes)

_DTYPES = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.UINT16: "uint16", onnx.TensorProto.INT32: "int32", onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.INT64: "int64", onnx.TensorProto.UINT64: "uint64", onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.STRING: "string", onnx.TensorProto.COMPLEX64: "complex64",
    onnx.TensorProto.COMPLEX128: "complex128",
}
_INT_DTYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool"}


def dtype_name(elem_type: int) -> str:
    return _DTYPES.get(elem_type, "float32")


def load_onnx(
    path: str | os.PathLike,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch_size: int | None = None,
) -> Graph:
    p = check_file(path)
    with open(p, "rb") as f:
        data = f.read()
    model = _parse(data, str(path))
    _check_external_data(model, p)
    return model_to_graph(model, str(path), input_shapes, batch_size, name=p.stem)


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(source, f"not an ONNX model (protobuf does not parse: {exc})") from None
    if not model.HasField("graph") or not model.opset_import or model.ir_version <= 0:
        raise ModelLoadError(source, "not an ONNX model (the protobuf has no graph, opset or IR version)")
    if len(model.graph.node) == 0:
        raise ModelLoadError(source, "ONNX model has no nodes")
    return model


def _check_external_data(model: onnx.ModelProto, path: Path) -> None:
    base = path.resolve().parent
    for init in _all_initializers(model.graph):
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in init.external_data if e.key == "location"), "")
        if not location or os.path.isabs(location):
            raise ModelLoadError(str(path), f"external data of {init.name!r} has location {location!r}, outside the model's folder")
        target = (base / location).resolve()
        if base != target and base not in target.parents:
            raise ModelLoadError(str(path), f"external data of {init.name!r} points outside the model's folder ({location})")


def _all_initializers(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_initializers(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_initializers(g)


def _fix_input_shapes(model, source, input_shapes, batch_size, weights: set[str]) -> None:
    """Give every graph input a concrete shape: explicit ``--input-shape`` values,
    the batch size for axis 0, and an error for any other symbolic dimension."""
    input_shapes = dict(input_shapes or {})
    init_names = {i.name for i in model.graph.initializer} | weights
    real_inputs = [i for i in model.graph.input if i.name not in init_names]
    unknown = set(input_shapes) - {i.name for i in real_inputs}
    if unknown:
        names = ", ".join(i.name for i in real_inputs)
        raise UsageError(f"--input-shape {sorted(unknown)[0]}", f"the model has no such input (inputs: {names})")
    for inp in real_inputs:
        if not inp.type.HasField("tensor_type"):
            continue
        shape = inp.type.tensor_type.shape
        if inp.name in input_shapes:
            dims = input_shapes[inp.name]
            if shape.dim and len(shape.dim) != len(dims):
                raise UsageError(f"--input-shape {inp.name}", f"has rank {len(dims)} but the input has rank {len(shape.dim)}")
            del shape.dim[:]
            for d in dims:
                shape.dim.add().dim_value = d
            continue
        for k, dim in enumerate(shape.dim):
            fixed = dim.HasField("dim_value") and dim.dim_value > 0
            if k == 0 and (batch_size or not fixed):
                dim.Clear()
                dim.dim_value = batch_size or 1
            elif not fixed:
                label = dim.dim_param or "?"
                raise UsageError(
                    source,
                    f"input {inp.name!r} has symbolic dimension {label!r} at axis {k}; give --input-shape {inp.name}=D1xD2x...",
                )


def model_to_graph(
    model: onnx.ModelProto,
    source: str = "model",
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch_size: int | None = None,
    name: str = "",
) -> Graph:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ModelLoadError(source, "ONNX model imports no default-domain opset")
    if opset < MIN_OPSET:
        raise ModelLoadError(source, f"opset {opset} is older than {MIN_OPSET}, the oldest supported")
    model, weights = _copy_without_weights(model)
    _fix_input_shapes(model, source, input_shapes, batch_size, weights)
    try:
        inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several types (InferenceError, ValidationError, RuntimeError)
        raise ModelLoadError(source, f"ONNX shape inference failed: {str(exc).splitlines()[0]}") from None
    return _graph_from_proto(inferred.graph, source, name or model.graph.name, weights)


def _copy_without_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """A copy in which large or external initializers become typed graph inputs:
    shape inference needs their shapes, not their bytes. Returns their names too."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep, weights = [], []
    for init in out.graph.initializer:
        numel = int(np.prod(init.dims)) if init.dims else 1
        if numel > SMALL_INT_CONST or init.data_location == onnx.TensorProto.EXTERNAL:
            weights.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            keep.append(init)
    if weights:
        del out.graph.initializer[:]
        out.graph.initializer.extend(keep)
        known = {i.name for i in out.graph.input}
        out.graph.input.extend(w for w in weights if w.name not in known)
    return out, {w.name for w in weights}


def _literal(dtype: str, shape: tuple, values) -> tuple | None:
    """The value kept in the IR for a constant that is a literal of the architecture:
    small integer tensors (shapes, axes) and 0-d floating-point scalars (clip bounds,
    scales); a learned tensor, even of one element, keeps no value."""
    if dtype in _INT_DTYPES and math.prod(shape) <= SMALL_INT_CONST:
        return tuple(int(x) for x in values())
    if shape == () and dtype.startswith(("float", "bfloat")):
        return tuple(float32(float(x)) for x in values())
    return None


def _shape_of(vi: onnx.ValueInfoProto) -> tuple[tuple[int, ...] | None, str]:
    t = vi.type
    if not t.HasField("tensor_type"):
        return None, "float32"
    tt = t.tensor_type
    dtype = dtype_name(tt.elem_type)
    if not tt.HasField("shape"):
        return None, dtype
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
    return dims, dtype


def _attr_value(attr: onnx.AttributeProto):
    v = onnx.helper.get_attribute_value(attr)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return tuple(x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v
                     if isinstance(x, (int, float, bytes, str)))
    if isinstance(v, (int, float, str)):
        return v
    if isinstance(v, onnx.TensorProto):
        arr = numpy_helper.to_array(v)
        return tuple(arr.flatten().tolist()) if arr.size <= SMALL_INT_CONST else f"tensor{list(arr.shape)}"
    return f"<{onnx.AttributeProto.AttributeType.Name(attr.type).lower()}>"


def _graph_from_proto(g: onnx.GraphProto, source: str, name: str, weights: set[str]) -> Graph:
    tensors: dict[str, Tensor] = {}
    for vi in list(g.value_info) + list(g.output):
        shape, dtype = _shape_of(vi)
        tensors[vi.name] = Tensor(vi.name, shape, dtype)
    const_names: set[str] = set()
    for init in g.initializer:
        dtype = dtype_name(init.data_type)
        value = _literal(dtype, tuple(init.dims), lambda: numpy_helper.to_array(init).flatten().tolist())
        tensors[init.name] = Tensor(init.name, tuple(init.dims), dtype, constant=True, value=value)
        const_names.add(init.name)
    graph_inputs = []
    for vi in g.input:
        if vi.name in const_names:
            continue
        shape, dtype = _shape_of(vi)
        if vi.name in weights:
            tensors[vi.name] = Tensor(vi.name, shape, dtype, constant=True)
            continue
        tensors[vi.name] = Tensor(vi.name, shape, dtype)
        graph_inputs.append(vi.name)
    nodes = []
    for k, n in enumerate(g.node):
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            for out in n.output:
                t = tensors.get(out)
                raw = attrs.get("value") if isinstance(attrs.get("value"), tuple) else None
                shape = t.shape if t is not None else None
                dtype = t.dtype if t is not None else "float32"
                value = None if raw is None or shape is None else _literal(dtype, shape, lambda: list(raw))
                tensors[out] = Tensor(out, shape, dtype, constant=True, value=value)
                const_names.add(out)
            continue
        for out in n.output:
            if out and out not in tensors:
                tensors[out] = Tensor(out, None, "float32")
        nodes.append(Node(n.name or f"{n.op_type}_{k}", n.op_type, tuple(n.input), tuple(n.output), attrs,
                          "" if n.domain == "ai.onnx" else n.domain))
    _fill_same_shape_outputs(nodes, tensors)
    outputs = [o.name for o in g.output]
    for name in {i for n in nodes for i in n.inputs if i} - set(tensors):
        tensors[name] = Tensor(name, None, "float32")
    try:
        return Graph(nodes, tensors, graph_inputs, outputs, name=name, source_format="onnx")
    except GraphError as exc:
        raise GraphError(source, f"node {exc.subject}: {exc.problem}") from None


# Ops whose first output has the shape of their first input; used where ONNX
# shape inference leaves an output unknown (some function-defined ops).
_SAME_SHAPE = {
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "InstanceNormalization",
    "MeanVarianceNormalization", "RMSNormalization", "LpNormalization", "LRN", "Softmax", "LogSoftmax",
    "Hardmax", "Dropout", "Identity", "Relu", "Gelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Mish",
    "Elu", "Selu", "Celu", "LeakyRelu", "PRelu", "Softplus", "Softsign", "Swish", "Clip", "Erf", "Exp",
    "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Cast", "CastLike", "CumSum", "ThresholdedRelu", "Shrink",
}


def _fill_same_shape_outputs(nodes: list[Node], tensors: dict[str, Tensor]) -> None:
    for n in nodes:
        if n.op_type not in _SAME_SHAPE or not n.inputs or not n.outputs or not n.outputs[0]:
            continue
        src, out = tensors.get(n.inputs[0]), tensors.get(n.outputs[0])
        if src is not None and src.known and out is not None and not out.known:
            dtype = out.dtype if n.op_type in ("Cast", "CastLike") else src.dtype
            tensors[out.name] = Tensor(out.name, src.shape, dtype)
