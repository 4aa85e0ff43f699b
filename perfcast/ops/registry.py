"""The rule registry and the context a rule sees.

A rule is a pure function of the node's attributes and its tensors' shapes. It
returns MACs, FLOPs and which inputs are trainable parameters; bytes read and
written default to the sizes of the non-omitted inputs and outputs.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple

from perfcast.ir.graph import Graph, Node, Tensor


class UnknownShape(Exception):
    """A shape the rule needs is not known (no shape inference result)."""


class OpCost(NamedTuple):
    """The cost of one node (a named tuple: built once per node of every graph analysed, and a
    tuple is built in half the time of a frozen dataclass)."""

    macs: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    params: int = 0
    # Names of the constant input tensors counted in ``params`` (for de-duplication).
    param_tensors: tuple[str, ...] = ()


class Work(NamedTuple):
    """What a rule returns: arithmetic work and the parameter inputs (a named tuple, as
    :class:`OpCost`)."""

    macs: int = 0
    flops: int = 0
    param_inputs: tuple[int, ...] = ()
    # Override the default byte counts where an op touches less than its tensors.
    bytes_read: int | None = None
    bytes_written: int | None = None


class OpContext:
    """The node with its tensors, and small helpers for shape arithmetic."""

    __slots__ = ("node", "graph", "attrs")

    def __init__(self, node: Node, graph: Graph) -> None:
        self.node = node
        self.graph = graph
        self.attrs = node.attrs

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def n_inputs(self) -> int:
        return len(self.node.inputs)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and bool(self.node.inputs[i])

    def input(self, i: int) -> Tensor | None:
        if not self.has_input(i):
            return None
        return self.graph.tensors.get(self.node.inputs[i])

    def output(self, i: int = 0) -> Tensor | None:
        if i >= len(self.node.outputs) or not self.node.outputs[i]:
            return None
        return self.graph.tensors.get(self.node.outputs[i])

    def in_shape(self, i: int = 0) -> tuple[int, ...]:
        return _known(self.input(i), self.node, f"input {i}")

    def out_shape(self, i: int = 0) -> tuple[int, ...]:
        return _known(self.output(i), self.node, f"output {i}")

    def in_numel(self, i: int = 0) -> int:
        return math.prod(self.in_shape(i))

    def out_numel(self, i: int = 0) -> int:
        return math.prod(self.out_shape(i))

    def inputs_nbytes(self) -> int:
        """Bytes of the node's inputs of known shape: what it reads by default."""
        return _tensor_bytes(self.graph, self.node.inputs)

    def is_constant(self, i: int) -> bool:
        t = self.input(i)
        return t is not None and t.constant

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def all_outputs_numel(self) -> int:
        return sum(math.prod(_known(self.output(i), self.node, f"output {i}")) for i in range(len(self.node.outputs)) if self.output(i) is not None)


def _known(t: Tensor | None, node: Node, what: str) -> tuple[int, ...]:
    if t is None or not t.known:
        raise UnknownShape(f"{node.op_type} {node.name!r}: shape of {what} is unknown")
    return t.shape  # type: ignore[return-value]


Rule = Callable[[OpContext], Work]
_RULES: dict[str, Rule] = {}
# Rules for one source format, where its op names collide with another's (TFLite LSTM vs ONNX LSTM).
_FORMAT_RULES: dict[tuple[str, str], Rule] = {}


def register(*op_types: str, source_format: str = "") -> Callable[[Rule], Rule]:
    """Register a rule; with ``source_format`` it applies only to graphs of that format
    and takes precedence there over a rule for the same op type."""

    def deco(fn: Rule) -> Rule:
        table = _FORMAT_RULES if source_format else _RULES
        for op in op_types:
            key = (source_format, op) if source_format else op
            if key in table:
                raise ValueError(f"two rules for op type {op}")
            table[key] = fn
        return fn

    return deco


def rule_for(op_type: str) -> Rule | None:
    return _RULES.get(op_type)


def supported_op_types() -> list[str]:
    return sorted(_RULES)


def _tensor_bytes(graph: Graph, names: Iterable[str]) -> int:
    total = 0
    for name in names:
        t = graph.tensors.get(name) if name else None
        if t is not None and t.known:
            total += t.nbytes
    return total


def node_cost(node: Node, graph: Graph) -> OpCost | None:
    """The cost of one node, or None when no rule covers its op type.

    Raises :class:`UnknownShape` when a rule needs a shape that is unknown.
    """
    rule = _FORMAT_RULES.get((graph.source_format, node.op_type)) or _RULES.get(node.op_type)
    if rule is None:
        return None
    ctx = OpContext(node, graph)
    work = rule(ctx)
    params = 0
    param_names: list[str] = []
    for i in work.param_inputs:
        t = ctx.input(i)
        if t is not None and t.constant and t.known and t.name not in param_names:
            params += t.numel
            param_names.append(t.name)
    return OpCost(
        macs=int(work.macs),
        flops=int(work.flops),
        bytes_read=_tensor_bytes(graph, node.inputs) if work.bytes_read is None else int(work.bytes_read),
        bytes_written=_tensor_bytes(graph, node.outputs) if work.bytes_written is None else int(work.bytes_written),
        params=params,
        param_tensors=tuple(param_names),
    )
