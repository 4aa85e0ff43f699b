"""TFLite front end: a ``.tflite`` flatbuffer (fp32 or quantised) -> IR graph.

The graph keeps the file's vocabulary: op types are TFLite builtin names
(``CONV_2D``, ``DEPTHWISE_CONV_2D``...) or, for custom operators, their custom
code; tensors keep the NHWC layout of the file. Operator options become node
attributes named as in the TFLite schema (``stride_w``, ``padding`` = "SAME" or
"VALID", ``fused_activation_function``, ``depth_multiplier``, ``filter_width``,
``keep_dims``...). Only subgraph 0 is the graph: control-flow operators that call
other subgraphs (WHILE, IF, CALL_ONCE) stay single nodes without a cost rule.

A tensor is constant when it has bytes in its buffer, when it feeds a weight or
bias slot of a convolution, fully connected or recurrent operator, or when no
operator produces it and it is no graph input: files written without weight
bytes (``to_tflite(with_weights=False)``) and recurrent state variables read so.
"""

from __future__ import annotations

import functools
import math
import os
import re
import struct
from dataclasses import dataclass

import numpy as np
import tflite

from perfcast.errors import ModelLoadError, PerfcastError
from perfcast.frontends.common import check_file
from perfcast.ir.graph import Graph, Node, Tensor

FILE_IDENTIFIER = b"TFL3"
SMALL_INT_CONST = 64  # integer constants up to this size keep their values (shapes, axes)
MAX_RANK = 16

DTYPES = {
    tflite.TensorType.FLOAT32: "float32", tflite.TensorType.FLOAT16: "float16",
    tflite.TensorType.INT32: "int32", tflite.TensorType.UINT8: "uint8", tflite.TensorType.INT64: "int64",
    tflite.TensorType.STRING: "string", tflite.TensorType.BOOL: "bool", tflite.TensorType.INT16: "int16",
    tflite.TensorType.COMPLEX64: "complex64", tflite.TensorType.INT8: "int8",
    tflite.TensorType.FLOAT64: "float64", tflite.TensorType.COMPLEX128: "complex128",
    tflite.TensorType.UINT64: "uint64", tflite.TensorType.RESOURCE: "resource",
    tflite.TensorType.VARIANT: "variant", tflite.TensorType.UINT32: "uint32",
    tflite.TensorType.UINT16: "uint16", tflite.TensorType.INT4: "int4",
    tflite.TensorType.BFLOAT16: "bfloat16",
}

# Input slots that hold weights or biases, by op type (-1 slots are omitted inputs).
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "CONV_2D": (1, 2),
    "DEPTHWISE_CONV_2D": (1, 2),
    "CONV_3D": (1, 2),
    "TRANSPOSE_CONV": (1, 3),
    "CONV_3D_TRANSPOSE": (1, 3),
    "FULLY_CONNECTED": (1, 2),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (*range(1, 18), 20, 21, 22, 23),
    "LSTM": (*range(1, 18), 20, 21, 22, 23),
    "BIDIRECTIONAL_SEQUENCE_LSTM": (*range(1, 35), *range(40, 48)),
    "UNIDIRECTIONAL_SEQUENCE_RNN": (1, 2, 3),
    "RNN": (1, 2, 3),
    "BIDIRECTIONAL_SEQUENCE_RNN": (1, 2, 3, 5, 6, 7, 10, 11, 12, 13),
}
# The bias slot of convolutions and fully connected layers: an all-zero bias is no bias
# (converters add one to convolutions that have none).
BIAS_INPUT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "CONV_3D": 2, "TRANSPOSE_CONV": 3, "CONV_3D_TRANSPOSE": 3,
              "FULLY_CONNECTED": 2}


def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


_BUILTIN_NAMES = dict(tflite.BUILTIN_OPCODE2NAME)
_OPTIONS_NAMES = _enum_names(tflite.BuiltinOptions)
_OPTIONS2_NAMES = _enum_names(tflite.BuiltinOptions2)
_DTYPE_FIELDS = ("in_data_type", "out_data_type", "output_type", "out_type", "idx_out_type")
# option fields whose integer value is an enum: the attribute holds the enum's name
_ENUM_FIELDS: dict[str, dict[int, str]] = {
    "padding": _enum_names(tflite.Padding),
    "fused_activation_function": _enum_names(tflite.ActivationFunctionType),
    "weights_format": _enum_names(tflite.FullyConnectedOptionsWeightsFormat),
    "mode": _enum_names(tflite.MirrorPadMode),
    "kernel_type": _enum_names(tflite.LSTMKernelType),
    "combiner": _enum_names(tflite.CombinerType),
    **{f: DTYPES for f in _DTYPE_FIELDS},
}
_ACCESSOR_SUFFIXES = ("AsNumpy", "Length", "IsNone", "BufferHasIdentifier")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class _Malformed(Exception):
    """The flatbuffer's structure does not hold together."""


def load_tflite(path: str | os.PathLike, batch_size: int | None = None) -> Graph:
    """Read a TFLite file into an IR graph; ``batch_size`` replaces the batch dimension."""
    p = check_file(path)
    data = p.read_bytes()
    try:
        return graph_from_bytes(data, batch_size=batch_size, name=p.stem)
    except ModelLoadError as exc:
        raise ModelLoadError(str(path), exc.problem) from None


def graph_from_bytes(data: bytes, batch_size: int | None = None, name: str = "model") -> Graph:
    """The IR graph of a TFLite flatbuffer held in memory."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelLoadError(name, "not a TFLite flatbuffer (no TFL3 file identifier at bytes 4..8)")
    try:
        return _Reader(data, batch_size, name).graph()
    except PerfcastError as exc:
        raise ModelLoadError(name, f"not a valid TFLite graph ({exc.subject}: {exc.problem})") from None
    except _Malformed as exc:
        raise ModelLoadError(name, f"not a TFLite flatbuffer ({exc})") from None
    except (struct.error, IndexError, ValueError, OverflowError):
        raise ModelLoadError(
            name, f"not a TFLite flatbuffer (truncated or corrupt: an offset points outside its {len(data)} bytes)"
        ) from None
    except Exception as exc:  # anything else the generated parser can raise on garbage (UnicodeDecodeError...)
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ModelLoadError(name, f"not a TFLite flatbuffer ({detail})") from None


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


@functools.lru_cache(maxsize=None)
def _option_fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(method, attribute name, is_vector) for each scalar or numeric-vector field of a generated table."""
    methods = {k for k, v in vars(cls).items() if callable(v) and k[:1].isupper()}
    fields = []
    for m in sorted(methods):
        if m == "Init" or m.startswith("GetRootAs") or m.endswith(_ACCESSOR_SUFFIXES):
            continue
        is_vector = f"{m}Length" in methods
        if is_vector and f"{m}AsNumpy" not in methods:
            continue  # a vector of tables
        fields.append((m, _snake(m), is_vector))
    return tuple(fields)


def _options(table, union_type: int, names: dict[int, str]) -> dict:
    cls = getattr(tflite, names.get(union_type, ""), None) if union_type else None
    if table is None or cls is None:
        return {}
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    attrs: dict = {}
    for method, attr, is_vector in _option_fields(cls):
        if is_vector:
            arr = getattr(opts, f"{method}AsNumpy")()
            value = tuple(arr.tolist()) if isinstance(arr, np.ndarray) else ()
        else:
            value = getattr(opts, method)()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif attr in _ENUM_FIELDS and isinstance(value, int):
            value = _ENUM_FIELDS[attr].get(value, value)
        elif not isinstance(value, (int, float, str, tuple)):
            continue  # a nested table
        attrs[attr] = value
    return attrs


def _vector(arr, limit: int, what: str) -> list[int]:
    """A vector read through ``XAsNumpy`` (0 when absent), checked against the file size."""
    if not isinstance(arr, np.ndarray):
        return []
    if arr.size > limit:
        raise _Malformed(f"{what} has {arr.size} entries, more than the file can hold")
    return arr.tolist()


@dataclass
class _Op:
    op_type: str
    domain: str
    inputs: list[int]
    outputs: list[int]
    attrs: dict


class _Reader:
    """Reads subgraph 0, checking every count and index against the file."""

    def __init__(self, data: bytes, batch_size: int | None, name: str) -> None:
        self.buf = data
        self.batch_size = batch_size
        self.name = name
        self.model = tflite.Model.GetRootAsModel(data, 0)
        self.limit = len(data) // 4
        self.n_buffers = self._count(self.model.BuffersLength(), "buffer")
        for k in range(self.n_buffers):
            self._check_buffer(k)

    def _count(self, n: int, what: str) -> int:
        if n < 0 or n > self.limit:
            raise _Malformed(f"{what} count {n} does not fit in the file")
        return n

    def _op_types(self) -> list[tuple[str, str]]:
        """(op type, domain) per operator code."""
        out = []
        for k in range(self._count(self.model.OperatorCodesLength(), "operator code")):
            code = self.model.OperatorCodes(k)
            builtin = code.BuiltinCode()
            if builtin == tflite.BuiltinOperator.CUSTOM:
                custom = code.CustomCode()
                out.append(((custom or b"CUSTOM").decode("utf-8", "replace"), "custom"))
            else:
                out.append((_BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"), ""))
        return out

    def _check_buffer(self, index: int) -> None:
        b = self.model.Buffers(index)
        if b.DataLength() > len(self.buf):
            raise _Malformed(f"buffer {index} is longer than the file")
        b.DataAsNumpy()  # np.frombuffer fails where the data runs past the end of the file
        if b.Offset() > 1 and b.Offset() + b.Size() > len(self.buf):
            raise _Malformed(f"buffer {index} lies outside the file")

    def _data(self, index: int) -> np.ndarray | None:
        """The bytes of buffer ``index`` (a view), or None when it holds none."""
        if index <= 0:
            return None
        if index >= self.n_buffers:
            raise _Malformed(f"buffer index {index} is out of range ({self.n_buffers} buffers)")
        data = self.model.Buffers(index).DataAsNumpy()
        return data if isinstance(data, np.ndarray) and data.size else None

    def _filled(self, index: int) -> bool:
        if self._data(index) is not None:
            return True
        b = self.model.Buffers(index)
        return b.Offset() > 1 and b.Size() > 0  # data after the flatbuffer (models over 2 GB)

    def _shape(self, t) -> tuple[int, ...]:
        shape = _vector(t.ShapeAsNumpy(), MAX_RANK, "tensor shape")
        sig = _vector(t.ShapeSignatureAsNumpy(), MAX_RANK, "tensor shape signature")
        if len(sig) == len(shape):
            # a -1 in the signature is a dynamic dimension; the batch (axis 0) keeps the stored size
            shape = [(-1 if (s == -1 and k > 0) else d) for k, (d, s) in enumerate(zip(shape, sig))]
        if any(d < -1 for d in shape):
            raise _Malformed(f"tensor shape {shape} has negative dimensions")
        return tuple(int(d) for d in shape)

    def _tensor(self, t, name: str, constant: bool) -> Tensor:
        shape = self._shape(t)
        dtype = DTYPES.get(t.Type(), "float32")
        value = None
        data = self._data(t.Buffer()) if constant else None
        if data is not None and dtype in ("int32", "int64") and all(d >= 0 for d in shape) \
                and math.prod(shape) <= SMALL_INT_CONST:
            ints = np.frombuffer(data.tobytes(), dtype="<i4" if dtype == "int32" else "<i8")
            value = tuple(int(v) for v in ints) if ints.size == math.prod(shape) else None
        return Tensor(name, shape, dtype, constant=constant, value=value)

    def _operators(self, sg, n_tensors: int) -> list[_Op]:
        op_types = self._op_types()
        ops = []
        for k in range(self._count(sg.OperatorsLength(), "operator")):
            op = sg.Operators(k)
            code = op.OpcodeIndex()
            if code >= len(op_types):
                raise _Malformed(f"operator {k} uses operator code {code}, but the model has {len(op_types)}")
            ins = _indices(op.InputsAsNumpy(), n_tensors, self.limit, f"operator {k}")
            outs = _indices(op.OutputsAsNumpy(), n_tensors, self.limit, f"operator {k}")
            attrs = _options(op.BuiltinOptions(), op.BuiltinOptionsType(), _OPTIONS_NAMES)
            attrs.update(_options(op.BuiltinOptions2(), op.BuiltinOptions2Type(), _OPTIONS2_NAMES))
            ops.append(_Op(*op_types[code], ins, outs, attrs))
        return ops

    def graph(self) -> Graph:
        if self._count(self.model.SubgraphsLength(), "subgraph") == 0:
            raise _Malformed("the model has no subgraph")
        sg = self.model.Subgraphs(0)
        n_tensors = self._count(sg.TensorsLength(), "tensor")
        graph_inputs = _indices(sg.InputsAsNumpy(), n_tensors, self.limit, "graph inputs")
        graph_outputs = _indices(sg.OutputsAsNumpy(), n_tensors, self.limit, "graph outputs")
        ops = self._operators(sg, n_tensors)

        produced = {i for op in ops for i in op.outputs}
        weights = {op.inputs[s] for op in ops for s in WEIGHT_INPUTS.get(op.op_type, ()) if s < len(op.inputs)}
        used = (set(graph_inputs) | set(graph_outputs) | {i for op in ops for i in (*op.inputs, *op.outputs)}) - {-1}
        raw = {i: sg.Tensors(i) for i in sorted(used)}
        names = _unique_names(raw)
        tensors: dict[str, Tensor] = {}
        input_set = set(graph_inputs)
        for i in sorted(used):
            filled = self._filled(raw[i].Buffer())
            constant = i not in input_set and (filled or i in weights or i not in produced)
            tensors[names[i]] = self._tensor(raw[i], names[i], constant)
        if self.batch_size:
            tensors = _rebatch(tensors, [names[i] for i in graph_inputs], self.batch_size)
        for op in ops:
            slot = BIAS_INPUT.get(op.op_type)
            if slot is not None and slot < len(op.inputs) and self._zero_bias(raw, op.inputs[slot]):
                op.inputs[slot] = -1  # the tensor stays in the graph: its bytes are still weights

        nodes = [
            Node(names[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else f"{op.op_type}_{k}", op.op_type,
                 tuple(names[i] if i >= 0 else "" for i in op.inputs),
                 tuple(names[i] if i >= 0 else "" for i in op.outputs), op.attrs, op.domain)
            for k, op in enumerate(ops)
        ]
        return Graph(nodes, tensors, [names[i] for i in graph_inputs], [names[i] for i in graph_outputs],
                     name=self.name, source_format="tflite")

    def _zero_bias(self, raw, index: int) -> bool:
        if index < 0:
            return False
        data = self._data(raw[index].Buffer())
        return data is not None and not data.any()


def _indices(arr, n_tensors: int, limit: int, what: str) -> list[int]:
    out = _vector(arr, limit, what)
    for i in out:
        if i < -1 or i >= n_tensors:
            raise _Malformed(f"{what} refers to tensor {i}, but subgraph 0 has {n_tensors}")
    return out


def _unique_names(raw: dict) -> dict[int, str]:
    """Tensor names, made unique with the tensor index where they repeat or are empty."""
    names: dict[int, str] = {}
    seen: set[str] = set()
    for i, t in raw.items():
        name = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{i}"
        while name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        names[i] = name
    return names


def _rebatch(tensors: dict[str, Tensor], inputs: list[str], batch: int) -> dict[str, Tensor]:
    """Set axis 0 of the graph inputs to ``batch``, and of every activation of rank 2 or
    more whose axis 0 equals the file's batch (axis 0 of the first input)."""
    first = tensors[inputs[0]].shape if inputs else None
    old = first[0] if first else None
    out = dict(tensors)
    for name, t in tensors.items():
        if not t.shape or t.constant:
            continue
        if name in inputs or (len(t.shape) >= 2 and t.shape[0] == old):
            out[name] = Tensor(name, (batch, *t.shape[1:]), t.dtype, t.constant, t.value)
    return out
