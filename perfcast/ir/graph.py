"""The graph IR: frozen tensors, nodes and graphs, free of any framework import.

Op types use ONNX names (``Conv``, ``Gemm``...) for graphs from ONNX, PyTorch and
spec strings, and TFLite builtin names (``CONV_2D``...) for TFLite graphs; the
layout of each family follows its source (NCHW for ONNX, NHWC for TFLite).
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import json
import math
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from perfcast.errors import GraphError

DTYPE_BYTES: Mapping[str, int] = MappingProxyType(
    {
        "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
        "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
        "int64": 8, "uint64": 8, "bool": 1, "int4": 1, "uint4": 1,
        "float8e4m3fn": 1, "float8e5m2": 1, "complex64": 8, "complex128": 16, "string": 0,
    }
)

INT_DTYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool", "int4", "uint4"})

AttrValue = int | float | str | tuple


_PLAIN = frozenset((int, str))  # exact types that are already frozen (bool, a subclass of int, is not)


_FLOAT32 = struct.Struct("f")


def float32(value: float) -> float:
    """``value`` rounded to float32, the precision ONNX and TFLite store."""
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


def _freeze(value: Any) -> AttrValue:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is tuple and _PLAIN.issuperset(map(type, value)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        # attributes are stored as float32 by ONNX and TFLite: keep that precision
        return float32(value)
    if isinstance(value, (int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)


_NO_ATTRS: Mapping[str, AttrValue] = MappingProxyType({})


def freeze_attrs(attrs: Mapping[str, Any] | None) -> Mapping[str, AttrValue]:
    """Attributes as nodes keep them: sorted by name, values frozen, read-only."""
    if not attrs:
        return _NO_ATTRS
    return MappingProxyType({k: _freeze(v) for k, v in sorted(dict(attrs).items())})


BUILD_GC_THRESHOLD = 10_000


@contextmanager
def fewer_collections(threshold: int = BUILD_GC_THRESHOLD):
    """Run the block with the cyclic garbage collector's first threshold raised to ``threshold``
    allocations (restored afterwards). Building a graph allocates thousands of small objects
    that all stay alive, and at Python's default of 700 the collections that keep scanning them
    cost more than the building itself (NAS-Bench-201 networks: 6.4 against 2.9 ms each)."""
    old = gc.get_threshold()
    gc.set_threshold(max(threshold, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


class _computed_once:
    """A read-only attribute computed on first use and kept in the instance's ``__dict__``:
    ``functools.cached_property`` without the lock that Python 3.11 takes on every first use
    (graph building asks it of every tensor, and the lock makes each first use about twice as slow)."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


@dataclass(frozen=True)
class Tensor:
    """A value in the graph. ``shape`` is None when the rank is unknown and a
    dimension is -1 when that dimension is unknown."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str = "float32"
    constant: bool = False
    # Values of literals, which are part of the architecture: small integer constants
    # (shapes, axes, indices) and floating-point scalars (clip bounds, scales).
    value: tuple[int | float, ...] | None = None

    @classmethod
    def make(
        cls, name: str, shape: tuple[int, ...] | None, dtype: str = "float32", constant: bool = False,
        value: tuple[int, ...] | None = None,
    ) -> "Tensor":
        """``Tensor(name, shape, dtype, constant, value)`` without the dataclass machinery:
        the same tensor, built faster (the path of the graph builder)."""
        t = object.__new__(cls)
        t.__dict__.update(name=name, shape=shape, dtype=dtype, constant=constant, value=value)
        return t

    # computed once per tensor (a frozen tensor never changes; cost rules ask thousands of times)
    @_computed_once
    def known(self) -> bool:
        return self.shape is not None and (not self.shape or min(self.shape) >= 0)

    @_computed_once
    def numel(self) -> int:
        if not self.known:
            raise ValueError(f"tensor {self.name!r} has unknown shape {self.shape}")
        return math.prod(self.shape)

    @_computed_once
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES.get(self.dtype, 4)


@dataclass(frozen=True)
class Node:
    """One operator. An omitted optional input is the empty string."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, AttrValue] = field(default_factory=dict, hash=False)
    domain: str = ""

    def __post_init__(self) -> None:
        if type(self.inputs) is not tuple:
            object.__setattr__(self, "inputs", tuple(self.inputs))
        if type(self.outputs) is not tuple:
            object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "attrs", freeze_attrs(self.attrs))

    @classmethod
    def make(
        cls, name: str, op_type: str, inputs: tuple[str, ...], outputs: tuple[str, ...],
        attrs: Mapping[str, Any] | None = None, domain: str = "",
    ) -> "Node":
        """``Node(name, op_type, inputs, outputs, attrs, domain)`` without the dataclass
        machinery: the same node, built faster (the path of the graph builder)."""
        node = object.__new__(cls)
        node.__dict__.update(
            name=name, op_type=op_type, inputs=inputs if type(inputs) is tuple else tuple(inputs),
            outputs=outputs if type(outputs) is tuple else tuple(outputs), attrs=freeze_attrs(attrs), domain=domain,
        )
        return node


class Graph:
    """A dataflow graph whose nodes are kept in topological order.

    Construction checks that every node input is produced by exactly one node, is a
    graph input or a constant, and that there is no cycle.
    """

    __slots__ = ("name", "nodes", "tensors", "inputs", "outputs", "source_format", "_hash", "__weakref__")

    def __init__(
        self,
        nodes: Iterable[Node],
        tensors: Mapping[str, Tensor] | Iterable[Tensor],
        inputs: Iterable[str],
        outputs: Iterable[str],
        name: str = "",
        source_format: str = "",
    ) -> None:
        if not isinstance(tensors, Mapping):
            tensors = {t.name: t for t in tensors}
        self.name = name
        self.source_format = source_format
        self.tensors: Mapping[str, Tensor] = MappingProxyType(dict(tensors))
        self.inputs: tuple[str, ...] = tuple(inputs)
        self.outputs: tuple[str, ...] = tuple(outputs)
        self.nodes: tuple[Node, ...] = _toposort(tuple(nodes), self.tensors, self.inputs, self.outputs)
        self._hash: str | None = None

    # -- queries -------------------------------------------------------------------
    def tensor(self, name: str) -> Tensor | None:
        return self.tensors.get(name) if name else None

    def producers(self) -> dict[str, int]:
        return {out: i for i, n in enumerate(self.nodes) for out in n.outputs if out}

    def consumers(self) -> dict[str, list[int]]:
        users: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for inp in n.inputs:
                if inp:
                    users.setdefault(inp, []).append(i)
        return users

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes, format={self.source_format!r})"

    # -- identity ------------------------------------------------------------------
    def canonical(self) -> list:
        """A description of the architecture that ignores names and weight values."""
        ids: dict[str, str] = {}
        for k, name in enumerate(self.inputs):
            ids[name] = f"i{k}"
        out: list = [[_tensor_sig(self.tensors[n]) for n in self.inputs]]
        for i, node in enumerate(self.nodes):
            ins = []
            for name in node.inputs:
                if not name:
                    ins.append(None)
                elif name in ids:
                    ins.append(ids[name])
                else:  # constant
                    ins.append(["c", *_tensor_sig(self.tensors[name])])
            outs = []
            for k, name in enumerate(node.outputs):
                if name:
                    ids[name] = f"n{i}.{k}"
                    outs.append(_tensor_sig(self.tensors[name]) if name in self.tensors else None)
                else:
                    outs.append(None)
            out.append([node.domain, node.op_type, sorted(node.attrs.items()), ins, outs])
        out.append([ids.get(n, n) for n in self.outputs])
        return out

    @property
    def known_hash(self) -> str | None:
        """The content hash if it has been computed already, else None (computing it costs about as
        much as analysing the graph)."""
        return self._hash

    @property
    def content_hash(self) -> str:
        if self._hash is None:
            blob = json.dumps(self.canonical(), separators=(",", ":"), default=list)
            self._hash = hashlib.sha256(blob.encode()).hexdigest()[:32]
        return self._hash


def _tensor_sig(t: Tensor) -> list:
    return [list(t.shape) if t.shape is not None else None, t.dtype, list(t.value) if t.value is not None else None]


def _toposort(
    nodes: tuple[Node, ...], tensors: Mapping[str, Tensor], inputs: tuple[str, ...], outputs: tuple[str, ...]
) -> tuple[Node, ...]:
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for out in n.outputs:
            if not out:
                continue
            if out in producer:
                raise GraphError(n.name or n.op_type, f"tensor {out!r} is produced by two nodes")
            if out in inputs:
                raise GraphError(n.name or n.op_type, f"tensor {out!r} is a graph input and a node output")
            producer[out] = i
    graph_inputs = set(inputs)
    in_order = True
    for i, n in enumerate(nodes):
        for inp in n.inputs:
            if not inp:
                continue
            j = producer.get(inp)
            if j is None:
                if inp not in graph_inputs and not _is_constant(tensors, inp):
                    raise GraphError(n.name or n.op_type, f"reads {inp!r}, which no node, graph input or constant provides")
            elif j >= i:
                in_order = False
    for out in outputs:
        if out not in producer and out not in graph_inputs and not _is_constant(tensors, out):
            raise GraphError(out, "graph output is produced by no node")
    if in_order:
        return nodes  # already in order, which is also the order the loop below would give
    deps = [{producer[inp] for inp in n.inputs if inp in producer} for n in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    indeg = [len(d) for d in deps]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    ready = [i for i, k in enumerate(indeg) if k == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        stuck = next(i for i, k in enumerate(indeg) if k > 0)
        raise GraphError(nodes[stuck].name or nodes[stuck].op_type, "the graph has a cycle through this node")
    return tuple(nodes[i] for i in order)


def _is_constant(tensors: Mapping[str, Tensor], name: str) -> bool:
    t = tensors.get(name)
    return t is not None and t.constant
