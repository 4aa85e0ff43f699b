"""Write an IR graph as an ONNX model with random weights (for timing runs)."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from perfcast.ir.builder import OPSET
from perfcast.ir.graph import Graph, Tensor

_ONNX_TYPES = {
    "float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
    "float64": TensorProto.DOUBLE, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8,
    "int16": TensorProto.INT16, "uint16": TensorProto.UINT16, "int32": TensorProto.INT32,
    "uint32": TensorProto.UINT32, "int64": TensorProto.INT64, "uint64": TensorProto.UINT64,
    "bool": TensorProto.BOOL,
}
_NP_TYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "int8": np.int8,
             "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "bool": np.bool_}


def _weight(t: Tensor, rng: np.random.Generator) -> np.ndarray:
    shape = t.shape or ()
    dtype = _NP_TYPES.get(t.dtype, np.float32)
    if t.value is not None:
        return np.asarray(t.value, dtype=dtype).reshape(shape)
    if not np.issubdtype(dtype, np.floating):
        return np.zeros(shape, dtype=dtype)  # indices: zero is always in range
    if len(shape) <= 1:
        # scales, biases, running variances, clip bounds: positive and near one keeps values finite
        return rng.uniform(0.9, 1.1, size=shape).astype(dtype)
    fan_in = max(math.prod(shape[1:]), 1)
    return (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(dtype)


def to_onnx(graph: Graph, seed: int = 0, opset: int = OPSET) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    initializers = [
        numpy_helper.from_array(_weight(t, rng), name)
        for name, t in graph.tensors.items()
        if t.constant
    ]
    nodes = [
        helper.make_node(n.op_type, list(n.inputs), list(n.outputs), name=n.name, domain=n.domain or None,
                         **{k: (list(v) if isinstance(v, tuple) else v) for k, v in n.attrs.items()})
        for n in graph.nodes
    ]

    def vi(name: str):
        t = graph.tensors[name]
        return helper.make_tensor_value_info(name, _ONNX_TYPES.get(t.dtype, TensorProto.FLOAT),
                                             list(t.shape) if t.shape is not None else None)

    g = helper.make_graph(nodes, graph.name or "perfcast", [vi(n) for n in graph.inputs],
                          [vi(n) for n in graph.outputs], initializer=initializers)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="perfcast")
    model.ir_version = min(model.ir_version, 10)
    return model
