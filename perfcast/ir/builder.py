"""Build IR graphs directly, with shapes computed here: the fast path from a spec
string to a graph, with no framework in between.

Layer helpers emit ONNX operators (NCHW), with the attributes written out in
full, so that writing the graph as ONNX (:mod:`perfcast.frontends.onnx_writer`)
and reading it back gives the same graph and the same content hash.
"""

from __future__ import annotations

import math
from typing import Sequence

from perfcast.ir.graph import INT_DTYPES, Graph, Node, Tensor, float32

OPSET = 20


def _conv_out(size: int, k: int, s: int, p0: int, p1: int, d: int = 1) -> int:
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


class GraphBuilder:
    """Accumulates nodes and tensors; :meth:`build` returns a frozen :class:`Graph`.

    Every helper takes tensor names and returns the name of its output.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._nodes: list[Node] = []
        self._tensors: dict[str, Tensor] = {}
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._counter = 0
        self._scope: list[str] = []

    # -- primitives ------------------------------------------------------------------
    def _fresh(self, stem: str) -> str:
        self._counter += 1
        if self._scope:
            return f"{'.'.join(self._scope)}.{stem}_{self._counter}"
        return f"{stem}_{self._counter}"

    def input(self, shape: Sequence[int], dtype: str = "float32", name: str | None = None) -> str:
        name = name or ("input" if not self._inputs else f"input_{len(self._inputs)}")
        self._tensors[name] = Tensor(name, tuple(int(d) for d in shape), dtype)
        self._inputs.append(name)
        return name

    def const(self, shape: Sequence[int], dtype: str = "float32", value: Sequence[float] | None = None,
              stem: str = "w") -> str:
        """A constant; ``value`` is given for literals (shapes, axes, scalars), left out for weights."""
        name = self._fresh(stem)
        if value is not None:
            value = tuple(map(int, value)) if dtype in INT_DTYPES else tuple(float32(float(v)) for v in value)
        self._tensors[name] = Tensor.make(name, tuple(map(int, shape)), dtype, constant=True, value=value)
        return name

    def ints(self, values: Sequence[int], stem: str = "shape") -> str:
        """A 1-D int64 constant (shapes, axes, pads)."""
        return self.const((len(values),), "int64", values, stem)

    def scalar(self, stem: str, value: float, dtype: str = "float32") -> str:
        """A 0-d literal (clip bounds, scales, fill values); its value is part of the architecture."""
        return self.const((), dtype, (value,), stem)

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        attrs: dict | None = None,
        out_shapes: Sequence[Sequence[int]] | None = None,
        out_dtype: str | None = None,
        n_outputs: int = 1,
    ) -> str | list[str]:
        """Add a node. ``out_shapes`` default to the first input's shape."""
        if out_shapes is None:
            out_shapes = [self.shape(inputs[0])] * n_outputs
        dtype = out_dtype or self.dtype(inputs[0])
        outs = []
        for shp in out_shapes:
            out = self._fresh(op_type.lower())
            self._tensors[out] = Tensor.make(out, tuple(map(int, shp)), dtype)
            outs.append(out)
        self._nodes.append(Node.make(self._fresh(op_type), op_type, tuple(inputs), tuple(outs), attrs))
        return outs[0] if len(outs) == 1 else outs

    def shape(self, name: str) -> tuple[int, ...]:
        return self._tensors[name].shape  # type: ignore[return-value]

    def dtype(self, name: str) -> str:
        return self._tensors[name].dtype if name else "float32"

    def output(self, name: str) -> None:
        self._outputs.append(name)

    def scope(self, label: str) -> "_Scope":
        return _Scope(self, label)

    def build(self) -> Graph:
        outputs = self._outputs or [self._nodes[-1].outputs[0]]
        return Graph(self._nodes, self._tensors, self._inputs, outputs, name=self.name, source_format="spec")

    # -- convolution and linear layers --------------------------------------------------
    def conv(
        self, x: str, cout: int, k: int | Sequence[int], stride: int | Sequence[int] = 1,
        pad: int | Sequence[int] | None = None, groups: int = 1, dilation: int | Sequence[int] = 1,
        bias: bool = False,
    ) -> str:
        shp = self.shape(x)
        nsp = len(shp) - 2
        ks = _tuple(k, nsp)
        ss = _tuple(stride, nsp)
        ds = _tuple(dilation, nsp)
        if pad is None:
            pads = tuple(d * (kk - 1) // 2 for kk, d in zip(ks, ds)) * 2
        else:
            p = _tuple(pad, nsp) if not (isinstance(pad, Sequence) and len(pad) == 2 * nsp) else tuple(pad)
            pads = p if len(p) == 2 * nsp else p * 2
        cin = shp[1]
        if cin % groups or cout % groups:
            raise ValueError(f"channels {cin}->{cout} not divisible by groups={groups}")
        w = self.const((cout, cin // groups, *ks), stem="weight")
        ins = [x, w]
        if bias:
            ins.append(self.const((cout,), stem="bias"))
        spatial = [
            _conv_out(shp[2 + i], ks[i], ss[i], pads[i], pads[i + nsp], ds[i]) for i in range(nsp)
        ]
        attrs = {"dilations": ds, "group": groups, "kernel_shape": ks, "pads": pads, "strides": ss}
        return self.op("Conv", ins, attrs, [(shp[0], cout, *spatial)])

    def conv_transpose(self, x: str, cout: int, k: int, stride: int = 1, pad: int = 0, output_padding: int = 0,
                       groups: int = 1, bias: bool = False) -> str:
        shp = self.shape(x)
        nsp = len(shp) - 2
        w = self.const((shp[1], cout // groups, *([k] * nsp)), stem="weight")
        ins = [x, w] + ([self.const((cout,), stem="bias")] if bias else [])
        spatial = [(s - 1) * stride - 2 * pad + k + output_padding for s in shp[2:]]
        attrs = {"dilations": (1,) * nsp, "group": groups, "kernel_shape": (k,) * nsp,
                 "output_padding": (output_padding,) * nsp, "pads": (pad,) * (2 * nsp), "strides": (stride,) * nsp}
        return self.op("ConvTranspose", ins, attrs, [(shp[0], cout, *spatial)])

    def linear(self, x: str, cout: int, bias: bool = True) -> str:
        """torch.nn.Linear: Gemm on 2-D input, MatMul (+ Add) otherwise."""
        shp = self.shape(x)
        if len(shp) == 2:
            w = self.const((cout, shp[1]), stem="weight")
            ins = [x, w] + ([self.const((cout,), stem="bias")] if bias else [])
            return self.op("Gemm", ins, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}, [(shp[0], cout)])
        w = self.const((shp[-1], cout), stem="weight")
        y = self.op("MatMul", [x, w], {}, [(*shp[:-1], cout)])
        if bias:
            y = self.op("Add", [y, self.const((cout,), stem="bias")])
        return y

    def matmul(self, a: str, b: str) -> str:
        sa, sb = self.shape(a), self.shape(b)
        batch = _broadcast(sa[:-2], sb[:-2])
        return self.op("MatMul", [a, b], {}, [(*batch, sa[-2], sb[-1])])

    # -- normalisation -------------------------------------------------------------------
    def bn(self, x: str, eps: float = 1e-5) -> str:
        c = self.shape(x)[1]
        ins = [x] + [self.const((c,), stem=s) for s in ("bn_scale", "bn_bias", "bn_mean", "bn_var")]
        return self.op("BatchNormalization", ins, {"epsilon": eps, "momentum": 0.9})

    def layernorm(self, x: str, eps: float = 1e-5, bias: bool = True) -> str:
        c = self.shape(x)[-1]
        ins = [x, self.const((c,), stem="ln_scale")] + ([self.const((c,), stem="ln_bias")] if bias else [])
        return self.op("LayerNormalization", ins, {"axis": -1, "epsilon": eps})

    def groupnorm(self, x: str, groups: int, eps: float = 1e-5) -> str:
        c = self.shape(x)[1]
        ins = [x, self.const((c,), stem="gn_scale"), self.const((c,), stem="gn_bias")]
        return self.op("GroupNormalization", ins, {"epsilon": eps, "num_groups": groups})

    def instancenorm(self, x: str, eps: float = 1e-5) -> str:
        c = self.shape(x)[1]
        ins = [x, self.const((c,), stem="in_scale"), self.const((c,), stem="in_bias")]
        return self.op("InstanceNormalization", ins, {"epsilon": eps})

    # -- activations ------------------------------------------------------------------------
    def act(self, x: str, kind: str) -> str:
        """Activation by name: relu, relu6, hswish, hsigmoid, sigmoid, silu/swish, gelu, tanh,
        leaky_relu, elu, identity."""
        kind = kind.lower()
        if kind in ("identity", "none", "linear"):
            return x
        if kind == "relu":
            return self.op("Relu", [x])
        if kind == "relu6":
            return self.op("Clip", [x, self.scalar("clip_min", 0.0), self.scalar("clip_max", 6.0)])
        if kind in ("hswish", "hardswish"):
            return self.op("HardSwish", [x])
        if kind in ("hsigmoid", "hardsigmoid"):
            return self.op("HardSigmoid", [x], {"alpha": 1.0 / 6, "beta": 0.5})
        if kind == "sigmoid":
            return self.op("Sigmoid", [x])
        if kind in ("silu", "swish"):
            return self.op("Mul", [x, self.op("Sigmoid", [x])])
        if kind == "gelu":
            return self.op("Gelu", [x], {"approximate": "none"})
        if kind == "tanh":
            return self.op("Tanh", [x])
        if kind == "leaky_relu":
            return self.op("LeakyRelu", [x], {"alpha": 0.01})
        if kind == "elu":
            return self.op("Elu", [x], {"alpha": 1.0})
        raise ValueError(f"unknown activation {kind!r}")

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b], {}, [_broadcast(self.shape(a), self.shape(b))])

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b], {}, [_broadcast(self.shape(a), self.shape(b))])

    def softmax(self, x: str, axis: int = -1) -> str:
        return self.op("Softmax", [x], {"axis": axis})

    # -- pooling and resampling ----------------------------------------------------------------
    def maxpool(self, x: str, k: int, stride: int | None = None, pad: int = 0, ceil: bool = False) -> str:
        return self._pool("MaxPool", x, k, stride or k, pad, ceil)

    def avgpool(self, x: str, k: int, stride: int | None = None, pad: int = 0, ceil: bool = False,
                count_include_pad: bool = False) -> str:
        return self._pool("AveragePool", x, k, stride or k, pad, ceil, count_include_pad)

    def _pool(self, op: str, x: str, k: int, s: int, p: int, ceil: bool, count_include_pad: bool = False) -> str:
        shp = self.shape(x)
        nsp = len(shp) - 2
        spatial = []
        for size in shp[2:]:
            span = size + 2 * p - k
            n = (-(-span // s) if ceil else span // s) + 1
            if ceil and (n - 1) * s >= size + p:
                n -= 1
            spatial.append(n)
        attrs = {"ceil_mode": int(ceil), "kernel_shape": (k,) * nsp, "pads": (p,) * (2 * nsp), "strides": (s,) * nsp}
        if op == "AveragePool":
            attrs["count_include_pad"] = int(count_include_pad)
        else:
            attrs["dilations"] = (1,) * nsp
        return self.op(op, [x], attrs, [(*shp[:2], *spatial)])

    def global_avgpool(self, x: str) -> str:
        shp = self.shape(x)
        return self.op("GlobalAveragePool", [x], {}, [(*shp[:2], *([1] * (len(shp) - 2)))])

    def global_maxpool(self, x: str) -> str:
        shp = self.shape(x)
        return self.op("GlobalMaxPool", [x], {}, [(*shp[:2], *([1] * (len(shp) - 2)))])

    def resize(self, x: str, scale: float | None = None, size: Sequence[int] | None = None, mode: str = "nearest") -> str:
        shp = self.shape(x)
        if size is None:
            size = [int(math.floor(s * scale)) for s in shp[2:]]
        out = (*shp[:2], *size)
        attrs = {"coordinate_transformation_mode": "asymmetric" if mode == "nearest" else "half_pixel",
                 "mode": mode, "nearest_mode": "floor"}
        return self.op("Resize", [x, "", "", self.ints(out, "sizes")], attrs, [out])

    # -- shape manipulation --------------------------------------------------------------------
    def flatten(self, x: str, axis: int = 1) -> str:
        shp = self.shape(x)
        return self.op("Flatten", [x], {"axis": axis}, [(math.prod(shp[:axis]), math.prod(shp[axis:]))])

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        shp = self.shape(x)
        shape = list(shape)
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            shape[shape.index(-1)] = math.prod(shp) // known
        if math.prod(shape) != math.prod(shp):
            raise ValueError(f"cannot reshape {shp} to {shape}")
        return self.op("Reshape", [x, self.ints(shape)], {"allowzero": 0}, [tuple(shape)])

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        shp = self.shape(x)
        return self.op("Transpose", [x], {"perm": tuple(perm)}, [tuple(shp[p] for p in perm)])

    def concat(self, xs: Sequence[str], axis: int = 1) -> str:
        shapes = [self.shape(x) for x in xs]
        ax = axis % len(shapes[0])
        out = list(shapes[0])
        out[ax] = sum(s[ax] for s in shapes)
        return self.op("Concat", list(xs), {"axis": axis}, [tuple(out)])

    def split(self, x: str, sizes: Sequence[int], axis: int = 1) -> list[str]:
        shp = self.shape(x)
        ax = axis % len(shp)
        outs = [tuple(s if i != ax else n for i, s in enumerate(shp)) for n in sizes]
        res = self.op("Split", [x, self.ints(sizes, "split")], {"axis": axis}, outs, n_outputs=len(sizes))
        return res if isinstance(res, list) else [res]

    def slice(self, x: str, axis: int, start: int, end: int) -> str:
        shp = list(self.shape(x))
        ax = axis % len(shp)
        end = min(end, shp[ax])
        shp[ax] = end - start
        ins = [x, self.ints([start], "starts"), self.ints([end], "ends"), self.ints([axis], "axes")]
        return self.op("Slice", ins, {}, [tuple(shp)])

    def pad(self, x: str, pads: Sequence[int], mode: str = "constant") -> str:
        shp = self.shape(x)
        n = len(shp)
        out = tuple(s + pads[i] + pads[i + n] for i, s in enumerate(shp))
        return self.op("Pad", [x, self.ints(pads, "pads")], {"mode": mode}, [out])

    def depth_to_space(self, x: str, block: int) -> str:
        n, c, h, w = self.shape(x)
        return self.op("DepthToSpace", [x], {"blocksize": block, "mode": "CRD"},
                       [(n, c // (block * block), h * block, w * block)])

    def reduce_mean(self, x: str, axes: Sequence[int], keepdims: bool = True) -> str:
        shp = self.shape(x)
        axs = {a % len(shp) for a in axes}
        out = tuple((1 if i in axs else s) for i, s in enumerate(shp) if keepdims or i not in axs)
        return self.op("ReduceMean", [x, self.ints(list(axes), "axes")], {"keepdims": int(keepdims)}, [out])

    # -- recurrent layers -------------------------------------------------------------------------
    def rnn(self, x: str, hidden: int, kind: str = "LSTM", bidirectional: bool = False) -> str:
        """x: (seq, batch, features). Returns Y: (seq, directions, batch, hidden)."""
        seq, batch, feat = self.shape(x)
        gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
        nd = 2 if bidirectional else 1
        w = self.const((nd, gates * hidden, feat), stem="W")
        r = self.const((nd, gates * hidden, hidden), stem="R")
        b = self.const((nd, 2 * gates * hidden), stem="B")
        attrs = {"direction": "bidirectional" if bidirectional else "forward", "hidden_size": hidden}
        if kind == "GRU":
            attrs["linear_before_reset"] = 1
        return self.op(kind, [x, w, r, b], attrs, [(seq, nd, batch, hidden)])


class _Scope:
    def __init__(self, builder: GraphBuilder, label: str) -> None:
        self.builder, self.label = builder, label

    def __enter__(self) -> GraphBuilder:
        self.builder._scope.append(self.label)
        return self.builder

    def __exit__(self, *exc) -> None:
        self.builder._scope.pop()


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    if type(v) is int:
        return (v,) * n
    if isinstance(v, Sequence):
        return tuple(int(x) for x in v)
    return (int(v),) * n


def _broadcast(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    if a == b:
        return tuple(a)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ValueError(f"shapes {a} and {b} do not broadcast")
        out.append(max(x, y))
    return tuple(out)
