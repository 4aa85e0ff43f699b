"""Write an IR graph of ONNX operators (NCHW) as a TFLite flatbuffer (NHWC).

The file is what a PyTorch -> TFLite conversion gives, with random weights, so
that the TFLite front end can be tested on real networks and networks can be
timed on LiteRT:

- rank-4 activations are NHWC; a TRANSPOSE is inserted only where an operator
  needs the NCHW order (general reshapes, transposes, softmax over W...);
- Conv -> CONV_2D (groups = 1 or grouped) or DEPTHWISE_CONV_2D, with SAME or VALID
  padding where it matches the ONNX pads and an explicit PAD (PADV2 at -inf
  for max pooling) + VALID otherwise; AveragePool's explicit pads are counted
  in the average. LiteRT needs a bias on every convolution: one without bias
  gets an all-zero bias, always written out, which the reader takes for none;
- BatchNormalization -> MUL + ADD with per-channel constants (2 x C parameters,
  as torchvision counts BatchNorm); Relu / Clip(0, 6) after Conv, Gemm, Add, Mul,
  BatchNormalization, Concat or pooling are fused into that operator;
- Flatten, and Reshape to (N, -1), flatten the NHWC order, as converters do
  after permuting the next layer's weights;
- Gemm, and MatMul by a constant matrix -> FULLY_CONNECTED; other MatMul ->
  BATCH_MATMUL; GlobalAveragePool -> MEAN over H, W (keep_dims); HardSigmoid ->
  MUL, ADD (fused RELU6), MUL; LayerNormalization -> MEAN, SUB, MUL, MEAN, ADD,
  RSQRT, MUL, MUL, ADD as converters lower it; Gather -> GATHER, Expand ->
  BROADCAST_TO, Where -> SELECT_V2, Slice -> STRIDED_SLICE, DepthToSpace ->
  DEPTH_TO_SPACE (DCR order); a constant used twice (tied weights) is one tensor.

``dtype="int8"`` writes an integer-quantised model: int8 activations and weights
(per-tensor scale, zero point 0), int32 biases, a QUANTIZE after each input and
a DEQUANTIZE before each output. Without weights (``with_weights=False``) the
constant tensors have empty buffers: a tiny file for analysis, not for running.
Any operator not covered raises ValueError naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import flatbuffers
import numpy as np
import tflite

from perfcast.frontends.tflite import DTYPES, FILE_IDENTIFIER
from perfcast.ir.graph import Graph, Node, Tensor

NHWC, IR = "nhwc", "ir"
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
NCHW_AXIS_IN_NHWC = (0, 3, 1, 2)  # NCHW axis k is NHWC axis NCHW_AXIS_IN_NHWC[k]
SCHEMA_VERSION = 3
BUFFER_ALIGNMENT = 16
ACT_SCALE = 1.0 / 16  # int8 activations cover [-8, 8)
FLOAT_MIN = float(np.finfo(np.float32).min)

_BUILTIN_CODES = {name: code for code, name in tflite.BUILTIN_OPCODE2NAME.items()}
_TENSOR_TYPES = {name: code for code, name in DTYPES.items()}
# Operator versions above 1 that LiteRT needs (version 1 of BROADCAST_TO is reserved)
_OP_VERSIONS = {"BROADCAST_TO": 2}
_ACTIVATIONS = {name: getattr(tflite.ActivationFunctionType, name) for name in ("NONE", "RELU", "RELU6")}
# Fixed output quantisation of int8 kernels (scale, zero point)
_FIXED_OUTPUT_QUANT = {"LOGISTIC": (1 / 256, -128), "SOFTMAX": (1 / 256, -128), "TANH": (1 / 128, 0)}


@dataclass(frozen=True)
class _Quant:
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]


@dataclass
class TTensor:
    """A tensor of the flatbuffer layer; ``signature`` is the shape with -1 for dynamic axes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int = 0
    quant: _Quant | None = None
    signature: tuple[int, ...] | None = None


@dataclass
class TOp:
    """An operator: a builtin name (``CONV_2D``) or ``CUSTOM`` with ``custom_code``; ``options``
    names the options table (``Conv2DOptions``) and ``fields`` its fields (``StrideW=2``)."""

    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: str | None = None
    fields: dict = field(default_factory=dict)
    custom_code: str | None = None


@dataclass
class TSubgraph:
    name: str
    tensors: list[TTensor]
    ops: list[TOp]
    inputs: list[int]
    outputs: list[int]


def to_tflite(graph: Graph, with_weights: bool = True, seed: int = 0, dtype: str = "float32",
              fuse_activations: bool = True) -> bytes:
    """The TFLite flatbuffer of ``graph`` (ONNX operators, NCHW), as bytes."""
    if dtype not in ("float32", "int8"):
        raise ValueError(f"dtype must be 'float32' or 'int8', not {dtype!r}")
    writer = _Writer(graph, with_weights, np.random.default_rng(seed), dtype, fuse_activations)
    writer.convert()
    main = TSubgraph(graph.name or "main", writer.tensors, writer.ops, writer.inputs, writer.outputs)
    return serialize([main], writer.buffers)


def _nhwc_shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(shape[p] for p in TO_NHWC)


def _rank4(shape: Sequence[int]) -> tuple[int, ...]:
    return (1,) * (4 - len(shape)) + tuple(shape)


def _const_value(t: Tensor | None, what: str, node: Node) -> tuple[int, ...]:
    if t is None or t.value is None:
        raise ValueError(f"{node.op_type} {node.name!r}: {what} must be a constant with known values")
    return t.value


class _Writer:
    """Collects TFLite tensors, buffers and operators for one graph."""

    def __init__(self, graph: Graph, with_weights: bool, rng: np.random.Generator, dtype: str,
                 fuse_activations: bool) -> None:
        self.graph = graph
        self.with_weights = with_weights
        self.rng = rng
        self.int8 = dtype == "int8"
        self.tensors: list[TTensor] = []
        self.buffers: list[bytes] = [b""]
        self.ops: list[TOp] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.forms: dict[str, dict[str, int]] = {}
        self.names: set[str] = set()
        self.shared: dict[tuple[str, tuple[int, ...]], int] = {}
        self.fused, self.skipped = _plan_fusion(graph) if fuse_activations else ({}, set())

    # -- tensors ---------------------------------------------------------------------------
    def _name(self, stem: str) -> str:
        name, k = stem, 1
        while name in self.names:
            k += 1
            name = f"{stem}:{k}"
        self.names.add(name)
        return name

    def tensor(self, stem: str, shape: Sequence[int], dtype: str, data: np.ndarray | None = None,
               quant: _Quant | None = None) -> int:
        buffer = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append(TTensor(self._name(stem), tuple(int(d) for d in shape), dtype, buffer, quant))
        return len(self.tensors) - 1

    def act_quant(self, op: str | None = None) -> _Quant | None:
        if not self.int8:
            return None
        scale, zero = _FIXED_OUTPUT_QUANT.get(op or "", (ACT_SCALE, 0))
        return _Quant((scale,), (zero,))

    def requantized(self, index: int) -> int:
        """``index`` itself, or in an int8 model a QUANTIZE of it to the common activation
        scale where its scale differs (kernels such as CONCATENATION need one scale)."""
        t = self.tensors[index]
        if not self.int8 or t.quant == self.act_quant():
            return index
        out = self.activation(f"{t.name}/requantized", t.shape)
        self.emit("QUANTIZE", [index], [out], "QuantizeOptions")
        return out

    def activation(self, stem: str, shape: Sequence[int], op: str | None = None) -> int:
        return self.tensor(stem, shape, "int8" if self.int8 else "float32", quant=self.act_quant(op))

    def like(self, source: int, stem: str, shape: Sequence[int]) -> int:
        """A new activation with the dtype and quantisation of ``source`` (data movement)."""
        s = self.tensors[source]
        return self.tensor(stem, shape, s.dtype, quant=s.quant)

    def ints(self, stem: str, values: Sequence[int] | np.ndarray, shape: Sequence[int] | None = None) -> int:
        arr = np.asarray(values, dtype=np.int32)
        return self.tensor(stem, arr.shape if shape is None else shape, "int32", arr.reshape(-1))

    def weight(self, stem: str, shape: Sequence[int], values: Callable[[], np.ndarray], shared: bool = True) -> int:
        """A float weight (int8 with a per-tensor scale in an int8 model); ``values`` draws it.
        A ``shared`` weight is written once per stem and shape (tied weights stay one tensor)."""
        key = (stem, tuple(shape))
        if shared and key in self.shared:
            return self.shared[key]
        data = values().astype(np.float32).reshape(shape) if self.with_weights else None
        if not self.int8:
            index = self.tensor(stem, shape, "float32", data)
        else:
            peak = float(np.max(np.abs(data))) if data is not None and data.size else 1.0
            scale = (peak or 1.0) / 127
            q = None if data is None else np.clip(np.round(data / scale), -127, 127).astype(np.int8)
            index = self.tensor(stem, shape, "int8", q, _Quant((scale,), (0,)))
        if shared:
            self.shared[key] = index
        return index

    def scalar(self, stem: str, value: float) -> int:
        return self.weight(stem, (), lambda: np.float32(value), shared=False)

    def he_weight(self, stem: str, shape: Sequence[int], fan_in: int) -> int:
        return self.weight(stem, shape, lambda: self.rng.standard_normal(shape) * math.sqrt(2.0 / max(fan_in, 1)))

    def small_weight(self, stem: str, shape: Sequence[int]) -> int:
        """Scales and offsets: positive and near one; matrices: unit-variance outputs."""
        if math.prod(shape) == max(shape, default=1):
            return self.weight(stem, shape, lambda: self.rng.uniform(0.9, 1.1, size=shape))
        fan_in = max(math.prod(shape[1:]), 1)
        return self.weight(stem, shape, lambda: self.rng.standard_normal(shape) / math.sqrt(fan_in))

    def bias(self, stem: str, n: int, x: int, w: int, zero: bool = False) -> int:
        """A bias; ``zero`` gives the all-zero bias that TFLite convolutions need where the
        source has none: its bytes are always written, so readers can tell it from a real one."""
        if not zero and (stem, (n,)) in self.shared:
            return self.shared[(stem, (n,))]
        if zero:
            data = np.zeros(n, np.float32)
        else:
            data = self.rng.uniform(-0.1, 0.1, size=(n,)).astype(np.float32) if self.with_weights else None
        if not self.int8:
            index = self.tensor(stem, (n,), "float32", data)
        else:
            scale = self.tensors[x].quant.scales[0] * self.tensors[w].quant.scales[0]
            q = None if data is None else np.round(data / scale).astype(np.int32)
            index = self.tensor(stem, (n,), "int32", q, _Quant((scale,), (0,)))
        if not zero:
            self.shared[(stem, (n,))] = index
        return index

    # -- layouts -----------------------------------------------------------------------------
    def ir_shape(self, name: str) -> tuple[int, ...]:
        t = self.graph.tensors.get(name)
        if t is None or not t.known:
            raise ValueError(f"tensor {name!r} has no known shape")
        return t.shape

    def bind(self, name: str, layout: str, index: int) -> None:
        self.forms.setdefault(name, {})[layout if len(self.ir_shape(name)) == 4 else IR] = index

    def get(self, name: str, layout: str) -> int:
        """The TFLite tensor holding IR tensor ``name`` in ``layout``, transposing if needed."""
        t = self.graph.tensors[name]
        if t.constant:
            raise ValueError(f"constant {name!r} used as an activation")
        layout = layout if len(self.ir_shape(name)) == 4 else IR
        forms = self.forms[name]
        if layout not in forms:
            src = next(iter(forms.values()))
            perm = TO_NHWC if layout == NHWC else TO_NCHW
            shape = tuple(self.tensors[src].shape[p] for p in perm)
            out = self.like(src, f"{name}/{layout}", shape)
            self.emit("TRANSPOSE", [src, self.ints(f"{name}/perm", perm)], [out], "TransposeOptions")
            forms[layout] = out
        return forms[layout]

    def any_form(self, name: str) -> tuple[int, str]:
        forms = self.forms[name]
        layout = NHWC if NHWC in forms else next(iter(forms))
        return forms[layout], layout

    def shape_in(self, name: str, layout: str) -> tuple[int, ...]:
        shape = self.ir_shape(name)
        return _nhwc_shape(shape) if layout == NHWC and len(shape) == 4 else shape

    def output(self, node: Node, layout: str, k: int = 0, op: str | None = None, like: int | None = None) -> int:
        """The TFLite tensor for output ``k`` of ``node``; a fused activation's output shares it."""
        name = node.outputs[k]
        final = self.fused.get(name, (None, name))[1]
        shape = self.shape_in(name, layout)
        index = self.like(like, final, shape) if like is not None else self.activation(final, shape, op)
        self.bind(name, layout, index)
        if final != name:
            self.bind(final, layout, index)
        return index

    def activation_of(self, node: Node) -> int:
        return _ACTIVATIONS[self.fused.get(node.outputs[0], ("NONE", ""))[0]]

    # -- operators ----------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[int], outputs: Sequence[int], options: str | None = None,
             **fields) -> None:
        self.ops.append(TOp(op, tuple(inputs), tuple(outputs), options, fields))

    def convert(self) -> None:
        for name in self.graph.inputs:
            shape = self.shape_in(name, NHWC)
            dtype = self.graph.tensors[name].dtype
            index = self.tensor(name, shape, dtype if not dtype.startswith("float") else "float32")
            self.inputs.append(index)
            if self.int8 and dtype.startswith("float"):
                quantized = self.activation(f"{name}/int8", shape)
                self.emit("QUANTIZE", [index], [quantized], "QuantizeOptions")
                index = quantized
            self.bind(name, NHWC, index)
        for i, node in enumerate(self.graph.nodes):
            if i in self.skipped:
                continue
            handler = _HANDLERS.get(node.op_type)
            if handler is None:
                raise ValueError(f"cannot write {node.op_type} (node {node.name!r}) as TFLite")
            handler(self, node)
        for name in self.graph.outputs:
            index, _ = self.any_form(name)
            if self.tensors[index].dtype == "int8":
                out = self.tensor(f"{name}/float", self.tensors[index].shape, "float32")
                self.emit("DEQUANTIZE", [index], [out], "DequantizeOptions")
                index = out
            self.outputs.append(index)


def _plan_fusion(graph: Graph) -> tuple[dict[str, tuple[str, str]], set[int]]:
    """Activations folded into their producer: {producer output: (activation, activation output)}
    and the indices of the folded activation nodes."""
    consumers = graph.consumers()
    producers = graph.producers()
    fused: dict[str, tuple[str, str]] = {}
    skipped: set[int] = set()
    for i, node in enumerate(graph.nodes):
        kind = _activation_kind(node)
        if kind not in ("RELU", "RELU6") or not node.inputs or not node.inputs[0]:
            continue
        src = node.inputs[0]
        if src not in producers or len(consumers.get(src, [])) != 1 or src in graph.outputs:
            continue
        producer = graph.nodes[producers[src]]
        if producer.op_type in _FUSABLE and len(producer.outputs) == 1:
            fused[src] = (kind, node.outputs[0])
            skipped.add(i)
    return fused, skipped


_FUSABLE = ("Conv", "Gemm", "Add", "Sub", "Mul", "Div", "BatchNormalization", "Concat", "MaxPool", "AveragePool")
_CLIP_BOUNDS = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, 1.0): "RELU_0_TO_1"}


def _activation_kind(node: Node) -> str | None:
    """RELU / RELU6 / RELU_N1_TO_1 / RELU_0_TO_1 for Relu and Clip nodes, else None.

    A Clip with constant bound inputs is ReLU6: the IR keeps no float constant
    values, and the graph builder emits Clip only for ReLU6."""
    if node.op_type == "Relu":
        return "RELU"
    if node.op_type != "Clip":
        return None
    if "min" in node.attrs or "max" in node.attrs:
        bounds = (float(node.attrs.get("min", FLOAT_MIN)), float(node.attrs.get("max", -FLOAT_MIN)))
        return _CLIP_BOUNDS.get(bounds)
    has_bounds = len(node.inputs) >= 3 and all(node.inputs[1:3])
    return "RELU6" if has_bounds else None


# --- handlers: one per ONNX op type ------------------------------------------------------
def _window_padding(node: Node, size: Sequence[int], out: Sequence[int], k: Sequence[int],
                    s: Sequence[int], d: Sequence[int]) -> tuple[str, list[tuple[int, int]] | None]:
    """("VALID" | "SAME", None) where TFLite's padding gives the ONNX windows, else
    ("VALID", [(before, after)] per spatial axis) for an explicit PAD."""
    pads = node.attrs.get("pads", (0,) * 4)
    begin, end = pads[:2], pads[2:]
    eff = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
    if all(b == 0 and (n - e) // ss + 1 == o for b, n, e, ss, o in zip(begin, size, eff, s, out)):
        return "VALID", None
    same = True
    for b, n, e, ss, o in zip(begin, size, eff, s, out):
        same_out = -(-n // ss)
        total = max((same_out - 1) * ss + e - n, 0)
        same = same and o == same_out and b == total // 2
    if same:
        return "SAME", None
    explicit = []
    for b, a, n, e, ss, o in zip(begin, end, size, eff, s, out):
        after = max(a, (o - 1) * ss + e - n - b)
        if (n + b + after - e) // ss + 1 != o:
            raise ValueError(f"{node.op_type} {node.name!r}: pads {pads} give no TFLite window layout")
        explicit.append((b, after))
    return "VALID", explicit


def _spatial_input(w: _Writer, node: Node, k: Sequence[int], s: Sequence[int], d: Sequence[int],
                   pad_value: float | None = 0.0) -> tuple[int, str]:
    """The NHWC input of a window op, padded explicitly where needed, and its padding mode."""
    x = w.get(node.inputs[0], NHWC)
    n, c, h, wd = w.ir_shape(node.inputs[0])
    out = w.ir_shape(node.outputs[0])[2:]
    mode, explicit = _window_padding(node, (h, wd), out, k, s, d)
    if explicit is None:
        return x, mode
    (t, b), (l, r) = explicit
    padded = w.like(x, f"{node.inputs[0]}/padded", (n, h + t + b, wd + l + r, c))
    paddings = w.ints(f"{node.name}/paddings", [[0, 0], [t, b], [l, r], [0, 0]])
    if pad_value is None or pad_value == 0.0:
        w.emit("PAD", [x, paddings], [padded], "PadOptions")
    else:
        fill = _fill_value(w, x, node.name, pad_value)
        w.emit("PADV2", [x, paddings, fill], [padded], "PadV2Options")
    return padded, mode


def _fill_value(w: _Writer, like: int, stem: str, value: float) -> int:
    q = w.tensors[like].quant
    if q is None:
        return w.tensor(f"{stem}/fill", (), "float32", np.asarray([value], np.float32))
    level = int(np.clip(round(value / q.scales[0]) + q.zero_points[0], -128, 127))
    return w.tensor(f"{stem}/fill", (), "int8", np.asarray([level], np.int8), q)


def _pair(node: Node, attr: str, default: int = 1) -> tuple[int, int]:
    v = node.attrs.get(attr, (default, default))
    if len(v) != 2:
        raise ValueError(f"{node.op_type} {node.name!r}: only 2-D windows are supported ({attr}={v})")
    return int(v[0]), int(v[1])


def _conv(w: _Writer, node: Node) -> None:
    x_shape = w.ir_shape(node.inputs[0])
    if len(x_shape) != 4:
        raise ValueError(f"Conv {node.name!r}: only 2-D convolutions are supported")
    cout, cin_g, kh, kw = w.ir_shape(node.inputs[1])
    cin = x_shape[1]
    groups = int(node.attrs.get("group", 1))
    s, d = _pair(node, "strides"), _pair(node, "dilations")
    x, padding = _spatial_input(w, node, (kh, kw), s, d)
    depthwise = groups == cin and groups > 1
    if depthwise:
        filt = w.he_weight(node.inputs[1], (1, kh, kw, cout), kh * kw)
    else:
        filt = w.he_weight(node.inputs[1], (cout, kh, kw, cin_g), kh * kw * cin_g)
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    if has_bias:
        bias = w.bias(node.inputs[2], cout, x, filt)
    else:
        bias = w.bias(f"{node.name}/zero_bias", cout, x, filt, zero=True)
    ins = [x, filt, bias]
    y = w.output(node, NHWC)
    common = dict(Padding=getattr(tflite.Padding, padding), StrideH=s[0], StrideW=s[1],
                  DilationHFactor=d[0], DilationWFactor=d[1], FusedActivationFunction=w.activation_of(node))
    if depthwise:
        w.emit("DEPTHWISE_CONV_2D", ins, [y], "DepthwiseConv2DOptions", DepthMultiplier=cout // cin, **common)
    else:
        w.emit("CONV_2D", ins, [y], "Conv2DOptions", **common)


def _conv_transpose(w: _Writer, node: Node) -> None:
    x_shape = w.ir_shape(node.inputs[0])
    cin, cout_g, kh, kw = w.ir_shape(node.inputs[1])
    if len(x_shape) != 4 or int(node.attrs.get("group", 1)) != 1:
        raise ValueError(f"ConvTranspose {node.name!r}: only 2-D ungrouped transposed convolutions are supported")
    s = _pair(node, "strides")
    out = w.ir_shape(node.outputs[0])
    if out[2:] == tuple((n - 1) * ss + k for n, ss, k in zip(x_shape[2:], s, (kh, kw))):
        padding = "VALID"
    elif out[2:] == tuple(n * ss for n, ss in zip(x_shape[2:], s)):
        padding = "SAME"
    else:
        raise ValueError(f"ConvTranspose {node.name!r}: output size {out[2:]} matches neither SAME nor VALID")
    x = w.get(node.inputs[0], NHWC)
    filt = w.he_weight(node.inputs[1], (cout_g, kh, kw, cin), kh * kw * cin)
    ins = [w.ints(f"{node.name}/output_shape", _nhwc_shape(out)), filt, x]
    if len(node.inputs) > 2 and node.inputs[2]:
        ins.append(w.bias(node.inputs[2], cout_g, x, filt))
    y = w.output(node, NHWC)
    w.emit("TRANSPOSE_CONV", ins, [y], "TransposeConvOptions", Padding=getattr(tflite.Padding, padding),
           StrideH=s[0], StrideW=s[1])


def _batchnorm(w: _Writer, node: Node) -> None:
    shape = w.ir_shape(node.inputs[0])
    c = shape[1]
    layout = NHWC if len(shape) == 4 else IR
    const_shape = (c,) if len(shape) in (2, 4) else (c,) + (1,) * (len(shape) - 2)
    eps = float(node.attrs.get("epsilon", 1e-5))
    gamma = w.rng.uniform(0.9, 1.1, size=c)
    var = w.rng.uniform(0.5, 1.5, size=c)
    mean = w.rng.normal(0.0, 0.1, size=c)
    beta = w.rng.normal(0.0, 0.1, size=c)
    scale = gamma / np.sqrt(var + eps)
    x = w.get(node.inputs[0], layout)
    mul = w.weight(f"{node.inputs[1]}/folded", const_shape, lambda: scale)
    add = w.weight(f"{node.inputs[2]}/folded", const_shape, lambda: beta - mean * scale)
    scaled = w.activation(f"{node.outputs[0]}/scaled", w.shape_in(node.outputs[0], layout))
    w.emit("MUL", [x, mul], [scaled], "MulOptions", FusedActivationFunction=_ACTIVATIONS["NONE"])
    y = w.output(node, layout)
    w.emit("ADD", [scaled, add], [y], "AddOptions", FusedActivationFunction=w.activation_of(node))


_BINARY = {"Add": ("ADD", "AddOptions"), "Sub": ("SUB", "SubOptions"), "Mul": ("MUL", "MulOptions"),
           "Div": ("DIV", "DivOptions"), "Pow": ("POW", "PowOptions"),
           "Max": ("MAXIMUM", "MaximumMinimumOptions"), "Min": ("MINIMUM", "MaximumMinimumOptions")}


def _binary(w: _Writer, node: Node) -> None:
    op, options = _BINARY[node.op_type]
    if len(node.inputs) != 2:
        raise ValueError(f"{node.op_type} {node.name!r}: only two inputs are supported")
    out_rank = len(w.ir_shape(node.outputs[0]))
    tensors = [w.graph.tensors[name] for name in node.inputs]
    activations = [t for t in tensors if not t.constant]
    layout = NHWC if out_rank == 4 and all(len(t.shape) == 4 for t in activations) else IR
    ins = []
    for t in tensors:
        if not t.constant:
            ins.append(w.get(t.name, layout))
            continue
        if not t.dtype.startswith("float"):
            raise ValueError(f"{node.op_type} {node.name!r}: constant {t.name!r} of type {t.dtype} is not supported")
        shape = _nhwc_shape(_rank4(t.shape)) if layout == NHWC else t.shape
        ins.append(w.small_weight(t.name, shape))
    y = w.output(node, layout)
    fields = {"FusedActivationFunction": w.activation_of(node)} if op in ("ADD", "SUB", "MUL", "DIV") else {}
    w.emit(op, ins, [y], options, **fields)


_UNARY = {"Relu": ("RELU", None), "Sigmoid": ("LOGISTIC", None), "Tanh": ("TANH", None),
          "HardSwish": ("HARD_SWISH", "HardSwishOptions"), "Elu": ("ELU", None), "Exp": ("EXP", "ExpOptions"),
          "Log": ("LOG", None), "Sqrt": ("SQRT", None), "Abs": ("ABS", "AbsOptions"), "Neg": ("NEG", "NegOptions"),
          "LeakyRelu": ("LEAKY_RELU", "LeakyReluOptions"), "Gelu": ("GELU", "GeluOptions")}


def _unary(w: _Writer, node: Node) -> None:
    op, options = _UNARY[node.op_type]
    _emit_unary(w, node, op, options)


def _emit_unary(w: _Writer, node: Node, op: str, options: str | None) -> None:
    x, layout = w.any_form(node.inputs[0])
    y = w.output(node, layout, op=op)
    fields = {}
    if op == "LEAKY_RELU":
        fields["Alpha"] = float(node.attrs.get("alpha", 0.01))
    elif op == "GELU":
        fields["Approximate"] = node.attrs.get("approximate", "none") == "tanh"
    w.emit(op, [x], [y], options, **fields)


def _clip(w: _Writer, node: Node) -> None:
    kind = _activation_kind(node)
    if kind is None:
        raise ValueError(f"Clip {node.name!r}: only ReLU6, ReLU(-1, 1) and ReLU(0, 1) bounds are supported")
    _emit_unary(w, node, kind, None)


def _hard_sigmoid(w: _Writer, node: Node) -> None:
    """clip(alpha x + beta, 0, 1) = relu6(6 alpha x + 6 beta) / 6."""
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    x, layout = w.any_form(node.inputs[0])
    shape = w.tensors[x].shape
    none = _ACTIVATIONS["NONE"]
    scaled = w.activation(f"{node.outputs[0]}/scaled", shape)
    w.emit("MUL", [x, w.scalar(f"{node.name}/alpha6", 6 * alpha)], [scaled], "MulOptions", FusedActivationFunction=none)
    shifted = w.activation(f"{node.outputs[0]}/relu6", shape)
    w.emit("ADD", [scaled, w.scalar(f"{node.name}/beta6", 6 * beta)], [shifted], "AddOptions",
           FusedActivationFunction=_ACTIVATIONS["RELU6"])
    y = w.output(node, layout)
    w.emit("MUL", [shifted, w.scalar(f"{node.name}/sixth", 1 / 6)], [y], "MulOptions", FusedActivationFunction=none)


def _identity(w: _Writer, node: Node) -> None:
    w.forms[node.outputs[0]] = w.forms[node.inputs[0]]


def _pool(w: _Writer, node: Node) -> None:
    if len(w.ir_shape(node.inputs[0])) != 4:
        raise ValueError(f"{node.op_type} {node.name!r}: only 2-D pooling is supported")
    k, s = _pair(node, "kernel_shape"), _pair(node, "strides")
    op = "MAX_POOL_2D" if node.op_type == "MaxPool" else "AVERAGE_POOL_2D"
    x, padding = _spatial_input(w, node, k, s, _pair(node, "dilations"), FLOAT_MIN if op == "MAX_POOL_2D" else 0.0)
    y = w.output(node, NHWC, like=x)
    w.emit(op, [x], [y], "Pool2DOptions", Padding=getattr(tflite.Padding, padding), StrideH=s[0], StrideW=s[1],
           FilterHeight=k[0], FilterWidth=k[1], FusedActivationFunction=w.activation_of(node))


def _global_pool(w: _Writer, node: Node) -> None:
    op = "MEAN" if node.op_type == "GlobalAveragePool" else "REDUCE_MAX"
    _reduce(w, node, op, (2, 3), True)


def _reduce_mean(w: _Writer, node: Node) -> None:
    axes = node.attrs.get("axes")
    if axes is None:
        axes = _const_value(w.graph.tensor(node.inputs[1]) if len(node.inputs) > 1 else None, "axes", node)
    _reduce(w, node, "MEAN", axes, bool(node.attrs.get("keepdims", 1)))


def _reduce(w: _Writer, node: Node, op: str, axes: Sequence[int], keep: bool) -> None:
    rank = len(w.ir_shape(node.inputs[0]))
    axes = sorted(a % rank for a in axes)
    layout = NHWC if rank == 4 and (keep or axes == [2, 3]) else IR
    x = w.get(node.inputs[0], layout)
    mapped = [NCHW_AXIS_IN_NHWC[a] for a in axes] if layout == NHWC else axes
    y = w.output(node, layout, like=x) if op == "REDUCE_MAX" else w.output(node, layout)
    w.emit(op, [x, w.ints(f"{node.name}/axes", mapped)], [y], "ReducerOptions", KeepDims=keep)


def _flatten_like(w: _Writer, node: Node) -> bool:
    """Flatten to (N, rest): the NHWC order is flattened as it is (see the module notes)."""
    shape_in, shape_out = w.ir_shape(node.inputs[0]), w.ir_shape(node.outputs[0])
    return len(shape_out) == 2 and shape_out[0] == shape_in[0]


def _reshape(w: _Writer, node: Node) -> None:
    flat = _flatten_like(w, node)
    if node.op_type == "Flatten" and not flat:
        raise ValueError(f"Flatten {node.name!r}: only axis 1 flattening is supported")
    x = w.any_form(node.inputs[0])[0] if flat else w.get(node.inputs[0], IR)
    shape_out = w.ir_shape(node.outputs[0])
    y = w.output(node, IR, like=x)
    w.emit("RESHAPE", [x, w.ints(f"{node.name}/shape", shape_out)], [y], "ReshapeOptions", NewShape=tuple(shape_out))


def _transpose(w: _Writer, node: Node) -> None:
    x = w.get(node.inputs[0], IR)
    perm = node.attrs.get("perm") or tuple(reversed(range(len(w.ir_shape(node.inputs[0])))))
    y = w.output(node, IR, like=x)
    w.emit("TRANSPOSE", [x, w.ints(f"{node.name}/perm", perm)], [y], "TransposeOptions")


def _gemm(w: _Writer, node: Node) -> None:
    if node.attrs.get("transA", 0):
        raise ValueError(f"Gemm {node.name!r}: transA=1 is not supported")
    if not w.graph.tensors[node.inputs[1]].constant:
        raise ValueError(f"Gemm {node.name!r}: the weight must be a constant")
    k = w.ir_shape(node.inputs[0])[-1]
    n = w.ir_shape(node.outputs[0])[-1]
    _fully_connected(w, node, k, n, node.inputs[2] if len(node.inputs) > 2 else "", keep_dims=False)


def _fully_connected(w: _Writer, node: Node, k: int, n: int, bias: str, keep_dims: bool) -> None:
    x = w.get(node.inputs[0], IR)
    filt = w.weight(node.inputs[1], (n, k), lambda: w.rng.standard_normal((n, k)) / math.sqrt(k))
    ins = [x, filt] + ([w.bias(bias, n, x, filt)] if bias else [])
    y = w.output(node, IR)
    w.emit("FULLY_CONNECTED", ins, [y], "FullyConnectedOptions", FusedActivationFunction=w.activation_of(node),
           KeepNumDims=keep_dims)


def _matmul(w: _Writer, node: Node) -> None:
    b = w.graph.tensors[node.inputs[1]]
    if b.constant and len(b.shape) == 2:
        _fully_connected(w, node, b.shape[0], b.shape[1], "", keep_dims=True)
        return
    if b.constant or w.graph.tensors[node.inputs[0]].constant:
        raise ValueError(f"MatMul {node.name!r}: constant operands other than a 2-D right-hand side are not supported")
    x, y_in = w.get(node.inputs[0], IR), w.get(node.inputs[1], IR)
    y = w.output(node, IR)
    w.emit("BATCH_MATMUL", [x, y_in], [y], "BatchMatMulOptions", AdjX=False, AdjY=False)


def _concat(w: _Writer, node: Node) -> None:
    rank = len(w.ir_shape(node.outputs[0]))
    axis = int(node.attrs.get("axis", 1)) % rank
    layout = NHWC if rank == 4 else IR
    ins = []
    for name in node.inputs:
        t = w.graph.tensors[name]
        ins.append(w.requantized(w.small_weight(name, w.shape_in(name, layout)) if t.constant else w.get(name, layout)))
    y = w.output(node, layout)
    w.emit("CONCATENATION", ins, [y], "ConcatenationOptions",
           Axis=NCHW_AXIS_IN_NHWC[axis] if layout == NHWC else axis, FusedActivationFunction=w.activation_of(node))


def _softmax(w: _Writer, node: Node) -> None:
    rank = len(w.ir_shape(node.inputs[0]))
    axis = int(node.attrs.get("axis", -1)) % rank
    if rank == 4 and axis == 1:
        layout = NHWC
    elif axis == rank - 1:
        layout = IR
    else:
        raise ValueError(f"Softmax {node.name!r}: softmax over axis {axis} of a rank-{rank} tensor is not supported")
    x = w.get(node.inputs[0], layout)
    y = w.output(node, layout, op="SOFTMAX")
    w.emit("SOFTMAX", [x], [y], "SoftmaxOptions", Beta=1.0)


def _pad(w: _Writer, node: Node) -> None:
    pads = node.attrs.get("pads") or _const_value(w.graph.tensor(node.inputs[1]), "pads", node)
    rank = len(w.ir_shape(node.inputs[0]))
    pairs = [[pads[i], pads[i + rank]] for i in range(rank)]
    layout = NHWC if rank == 4 else IR
    if layout == NHWC:
        pairs = [pairs[p] for p in TO_NHWC]
    x = w.get(node.inputs[0], layout)
    y = w.output(node, layout, like=x)
    mode = str(node.attrs.get("mode", "constant"))
    paddings = w.ints(f"{node.name}/paddings", pairs)
    if mode == "constant":
        w.emit("PAD", [x, paddings], [y], "PadOptions")
    elif mode == "reflect":
        w.emit("MIRROR_PAD", [x, paddings], [y], "MirrorPadOptions", Mode=tflite.MirrorPadMode.REFLECT)
    else:
        raise ValueError(f"Pad {node.name!r}: mode {mode!r} is not supported")


def _resize(w: _Writer, node: Node) -> None:
    shape_out = w.ir_shape(node.outputs[0])
    if len(shape_out) != 4 or shape_out[:2] != w.ir_shape(node.inputs[0])[:2]:
        raise ValueError(f"Resize {node.name!r}: only spatial resizing of NCHW tensors is supported")
    mode = str(node.attrs.get("mode", "nearest"))
    x = w.get(node.inputs[0], NHWC)
    y = w.output(node, NHWC, like=x)
    size = w.ints(f"{node.name}/size", shape_out[2:])
    if mode == "nearest":
        w.emit("RESIZE_NEAREST_NEIGHBOR", [x, size], [y], "ResizeNearestNeighborOptions")
    elif mode in ("linear", "bilinear"):
        half = node.attrs.get("coordinate_transformation_mode", "half_pixel") in ("half_pixel", "pytorch_half_pixel")
        w.emit("RESIZE_BILINEAR", [x, size], [y], "ResizeBilinearOptions", HalfPixelCenters=half)
    else:
        raise ValueError(f"Resize {node.name!r}: mode {mode!r} is not supported")


def _axis_in(rank: int, axis: int) -> tuple[str, int]:
    axis %= rank
    return (NHWC, NCHW_AXIS_IN_NHWC[axis]) if rank == 4 else (IR, axis)


def _split(w: _Writer, node: Node) -> None:
    rank = len(w.ir_shape(node.inputs[0]))
    layout, axis = _axis_in(rank, int(node.attrs.get("axis", 0)))
    sizes = [w.ir_shape(o)[int(node.attrs.get("axis", 0)) % rank] for o in node.outputs]
    x = w.get(node.inputs[0], layout)
    outs = [w.output(node, layout, k=k, like=x) for k in range(len(node.outputs))]
    w.emit("SPLIT_V", [x, w.ints(f"{node.name}/sizes", sizes), w.ints(f"{node.name}/axis", [axis], ())], outs,
           "SplitVOptions", NumSplits=len(outs))


def _slice(w: _Writer, node: Node) -> None:
    """ONNX Slice -> STRIDED_SLICE, with ONNX's clamping of starts and ends."""
    shape = w.ir_shape(node.inputs[0])
    rank = len(shape)
    starts = _const_value(w.graph.tensor(node.inputs[1]), "starts", node)
    ends = _const_value(w.graph.tensor(node.inputs[2]), "ends", node)
    optional = [w.graph.tensor(node.inputs[i]) if len(node.inputs) > i and node.inputs[i] else None for i in (3, 4)]
    axes = _const_value(optional[0], "axes", node) if optional[0] is not None else range(len(starts))
    steps = _const_value(optional[1], "steps", node) if optional[1] is not None else [1] * len(starts)
    begin, end, strides, open_end = [0] * rank, list(shape), [1] * rank, [False] * rank
    for a, st, en, sp in zip(axes, starts, ends, steps):
        a %= rank
        d = shape[a]
        st, en = (st + d if st < 0 else st), (en + d if en < 0 else en)
        if sp > 0:
            begin[a], end[a] = min(max(st, 0), d), min(max(en, 0), d)
        else:
            begin[a], end[a] = min(max(st, 0), d - 1), min(max(en, -1), d - 1)
            open_end[a] = end[a] == -1  # up to and including index 0: TFLite reads -1 as the last index
        strides[a] = sp
    layout = NHWC if rank == 4 else IR
    if layout == NHWC:
        begin, end, strides, open_end = ([v[p] for p in TO_NHWC] for v in (begin, end, strides, open_end))
    x = w.get(node.inputs[0], layout)
    y = w.output(node, layout, like=x)
    ins = [x] + [w.ints(f"{node.name}/{k}", v) for k, v in (("begin", begin), ("end", end), ("strides", strides))]
    w.emit("STRIDED_SLICE", ins, [y], "StridedSliceOptions", EndMask=sum(1 << k for k, o in enumerate(open_end) if o))


def _depth_to_space(w: _Writer, node: Node) -> None:
    x = w.get(node.inputs[0], NHWC)
    y = w.output(node, NHWC, like=x)
    w.emit("DEPTH_TO_SPACE", [x], [y], "DepthToSpaceOptions", BlockSize=int(node.attrs["blocksize"]))


def _layernorm(w: _Writer, node: Node) -> None:
    """(x - mean) * rsqrt(var + eps) * scale + bias, as converters lower it."""
    shape = w.ir_shape(node.inputs[0])
    rank = len(shape)
    axis = int(node.attrs.get("axis", -1)) % rank
    layout, axes, norm_shape = IR, list(range(axis, rank)), tuple(shape[axis:])
    x = w.get(node.inputs[0], layout)
    full = w.shape_in(node.inputs[0], layout)
    reduced = tuple(1 if k in axes else d for k, d in enumerate(full))
    stem, none = node.outputs[0], _ACTIVATIONS["NONE"]
    axes_t = w.ints(f"{node.name}/axes", axes)

    def step(op: str, ins: list[int], out_shape, options: str | None = None, **fields) -> int:
        out = w.activation(f"{stem}/{op.lower()}", out_shape)
        w.emit(op, ins, [out], options, **fields)
        return out

    mean = step("MEAN", [x, axes_t], reduced, "ReducerOptions", KeepDims=True)
    centred = step("SUB", [x, mean], full, "SubOptions", FusedActivationFunction=none)
    var = step("MEAN", [step("MUL", [centred, centred], full, "MulOptions", FusedActivationFunction=none), axes_t],
               reduced, "ReducerOptions", KeepDims=True)
    eps = w.scalar(f"{node.name}/epsilon", float(node.attrs.get("epsilon", 1e-5)))
    inv = step("RSQRT", [step("ADD", [var, eps], reduced, "AddOptions", FusedActivationFunction=none)], reduced)
    y = step("MUL", [centred, inv], full, "MulOptions", FusedActivationFunction=none)
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    scale = w.small_weight(node.inputs[1], norm_shape)
    scaled = w.output(node, layout) if not has_bias else w.activation(f"{stem}/scaled", full)
    w.emit("MUL", [y, scale], [scaled], "MulOptions", FusedActivationFunction=none)
    if has_bias:
        out = w.output(node, layout)
        shift = w.small_weight(node.inputs[2], norm_shape)
        w.emit("ADD", [scaled, shift], [out], "AddOptions", FusedActivationFunction=none)


def _operand(w: _Writer, name: str) -> int:
    """An input in the IR layout: activations as they are, constants written out (floats
    random, integers from their values or zeros, booleans false)."""
    t = w.graph.tensors[name]
    if not t.constant:
        return w.get(name, IR)
    if t.dtype.startswith("float"):
        return w.small_weight(name, t.shape)
    if t.value is not None:
        return w.tensor(name, t.shape, t.dtype, np.asarray(t.value, dtype=t.dtype))
    data = np.zeros(t.shape, dtype=t.dtype) if w.with_weights else None  # zero: a valid index, a false mask
    return w.tensor(name, t.shape, t.dtype, data)


def _gather(w: _Writer, node: Node) -> None:
    table, index = (_operand(w, name) for name in node.inputs[:2])
    y = w.output(node, IR, like=table if w.tensors[table].quant is not None else None)
    w.emit("GATHER", [table, index], [y], "GatherOptions", Axis=int(node.attrs.get("axis", 0)))


def _expand(w: _Writer, node: Node) -> None:
    x = _operand(w, node.inputs[0])
    y = w.output(node, IR, like=x)
    w.emit("BROADCAST_TO", [x, w.ints(f"{node.name}/shape", w.ir_shape(node.outputs[0]))], [y], "BroadcastToOptions")


def _where(w: _Writer, node: Node) -> None:
    ins = [_operand(w, name) for name in node.inputs]
    y = w.output(node, IR)
    w.emit("SELECT_V2", ins, [y], "SelectV2Options")


_HANDLERS: dict[str, Callable[[_Writer, Node], None]] = {
    "LayerNormalization": _layernorm, "Gather": _gather, "Expand": _expand, "Where": _where,
    "Conv": _conv, "ConvTranspose": _conv_transpose, "BatchNormalization": _batchnorm,
    **dict.fromkeys(_BINARY, _binary), **dict.fromkeys(_UNARY, _unary), "Clip": _clip,
    "HardSigmoid": _hard_sigmoid, "Identity": _identity, "Dropout": _identity,
    "MaxPool": _pool, "AveragePool": _pool, "GlobalAveragePool": _global_pool, "GlobalMaxPool": _global_pool,
    "ReduceMean": _reduce_mean, "Flatten": _reshape, "Reshape": _reshape, "Transpose": _transpose,
    "Gemm": _gemm, "MatMul": _matmul, "Concat": _concat, "Softmax": _softmax, "Pad": _pad,
    "Resize": _resize, "Split": _split, "Slice": _slice, "DepthToSpace": _depth_to_space,
}


# --- flatbuffer serialisation ------------------------------------------------------------------
def _byte_vector(b: flatbuffers.Builder, data: bytes) -> int:
    b.StartVector(1, len(data), BUFFER_ALIGNMENT)
    b.head -= len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    b.vectorNumElems = len(data)
    return b.EndVector()


def _offset_vector(b: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _ints(b: flatbuffers.Builder, values: Sequence[int], dtype=np.int32) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=dtype).reshape(-1))


def _table(b: flatbuffers.Builder, name: str, fields: dict) -> int:
    vectors = {k: _ints(b, v) for k, v in fields.items() if isinstance(v, tuple)}
    getattr(tflite, f"{name}Start")(b)
    for key, value in fields.items():
        getattr(tflite, f"{name}Add{key}")(b, vectors.get(key, value))
    return getattr(tflite, f"{name}End")(b)


def _quantization(b: flatbuffers.Builder, q: _Quant) -> int:
    scales = b.CreateNumpyVector(np.asarray(q.scales, np.float32))
    zeros = _ints(b, q.zero_points, np.int64)
    return _table(b, "QuantizationParameters", {"Scale": scales, "ZeroPoint": zeros})


def _tensor(b: flatbuffers.Builder, t: TTensor) -> int:
    shape = _ints(b, t.shape)
    signature = _ints(b, t.signature) if t.signature is not None else None
    name = b.CreateString(t.name)
    quant = _quantization(b, t.quant) if t.quant is not None else None
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddType(b, _TENSOR_TYPES[t.dtype])
    tflite.TensorAddBuffer(b, t.buffer)
    tflite.TensorAddName(b, name)
    if quant is not None:
        tflite.TensorAddQuantization(b, quant)
    if signature is not None:
        tflite.TensorAddShapeSignature(b, signature)
    return tflite.TensorEnd(b)


def _operator(b: flatbuffers.Builder, op: TOp, opcode: int) -> int:
    inputs, outputs = _ints(b, op.inputs), _ints(b, op.outputs)
    options = _table(b, op.options, op.fields) if op.options else None
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, opcode)
    tflite.OperatorAddInputs(b, inputs)
    tflite.OperatorAddOutputs(b, outputs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, op.options))
        tflite.OperatorAddBuiltinOptions(b, options)
    return tflite.OperatorEnd(b)


def _operator_code(b: flatbuffers.Builder, op: str, custom_code: str | None) -> int:
    code = _BUILTIN_CODES[op]
    custom = b.CreateString(custom_code) if custom_code is not None else None
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, tflite.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES))
    tflite.OperatorCodeAddBuiltinCode(b, code)
    if custom is not None:
        tflite.OperatorCodeAddCustomCode(b, custom)
    tflite.OperatorCodeAddVersion(b, _OP_VERSIONS.get(op, 1))
    return tflite.OperatorCodeEnd(b)


def _subgraph(b: flatbuffers.Builder, sg: TSubgraph, codes: dict[tuple[str, str | None], int]) -> int:
    tensors = [_tensor(b, t) for t in sg.tensors]
    operators = [_operator(b, op, codes[(op.op, op.custom_code)]) for op in sg.ops]
    tensor_vec, op_vec = _offset_vector(b, tensors), _offset_vector(b, operators)
    inputs, outputs = _ints(b, sg.inputs), _ints(b, sg.outputs)
    name = b.CreateString(sg.name)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vec)
    tflite.SubGraphAddInputs(b, inputs)
    tflite.SubGraphAddOutputs(b, outputs)
    tflite.SubGraphAddOperators(b, op_vec)
    tflite.SubGraphAddName(b, name)
    return tflite.SubGraphEnd(b)


def serialize(subgraphs: Sequence[TSubgraph], buffers: Sequence[bytes]) -> bytes:
    """The flatbuffer of a model: ``buffers[0]`` must be empty (the TFLite sentinel)."""
    b = flatbuffers.Builder(1024 + sum(len(d) + BUFFER_ALIGNMENT for d in buffers))
    buffer_offsets = []
    for data in buffers:
        vec = _byte_vector(b, data) if data else None
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buffer_offsets.append(tflite.BufferEnd(b))
    kinds = list(dict.fromkeys((op.op, op.custom_code) for sg in subgraphs for op in sg.ops))
    codes = {kind: k for k, kind in enumerate(kinds)}
    subgraph_vec = _offset_vector(b, [_subgraph(b, sg, codes) for sg in subgraphs])
    code_vec = _offset_vector(b, [_operator_code(b, op, custom) for op, custom in kinds])
    buffer_vec = _offset_vector(b, buffer_offsets)
    description = b.CreateString("perfcast")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, SCHEMA_VERSION)
    tflite.ModelAddOperatorCodes(b, code_vec)
    tflite.ModelAddSubgraphs(b, subgraph_vec)
    tflite.ModelAddDescription(b, description)
    tflite.ModelAddBuffers(b, buffer_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())
