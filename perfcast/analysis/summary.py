"""Whole-graph analysis: totals, weights, peak activation memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from perfcast.ir.graph import Graph
from perfcast.ops import OpCost, UnknownShape, node_cost


@dataclass
class OpTypeRow:
    op_type: str
    count: int = 0
    macs: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    params: int = 0


@dataclass
class Analysis:
    graph: Graph
    node_costs: list[OpCost | None]
    macs: int
    flops: int
    params: int
    bytes_read: int
    bytes_written: int
    weight_bytes: int
    activation_peak_bytes: int
    by_op_type: dict[str, OpTypeRow]
    unsupported_ops: list[str] = field(default_factory=list)
    uncosted_nodes: list[str] = field(default_factory=list)

    @property
    def op_counts(self) -> dict[str, int]:
        return {k: v.count for k, v in sorted(self.by_op_type.items())}


def activation_peak_bytes(graph: Graph) -> int:
    """Peak bytes of live non-constant tensors when nodes run in topological order.

    A tensor is live from the step that produces it (graph inputs from the start)
    to the last step that reads it; graph outputs stay live to the end. At each
    step the node's inputs and outputs are live together.
    """
    n = len(graph.nodes)
    last_use: dict[str, int] = {}
    birth: dict[str, int] = {}
    for name in graph.inputs:
        birth[name] = 0
    for i, node in enumerate(graph.nodes):
        for inp in node.inputs:
            if inp:
                last_use[inp] = i
        for out in node.outputs:
            if out:
                birth[out] = i
    for name in graph.outputs:
        last_use[name] = n
    delta = [0] * (n + 2)
    for name, start in birth.items():
        t = graph.tensors.get(name)
        if t is None or t.constant or not t.known:
            continue
        end = max(last_use.get(name, start), start)
        delta[start] += t.nbytes
        delta[end + 1] -= t.nbytes
    peak = live = 0
    for step in range(n + 1):
        live += delta[step]
        peak = max(peak, live)
    return peak


def analyze_graph(graph: Graph) -> Analysis:
    costs: list[OpCost | None] = []
    rows: dict[str, OpTypeRow] = {}
    unsupported: set[str] = set()
    uncosted: list[str] = []
    param_names: set[str] = set()
    params = 0
    for node in graph.nodes:
        row = rows.setdefault(node.op_type, OpTypeRow(node.op_type))
        row.count += 1
        try:
            cost = node_cost(node, graph)
        except UnknownShape:
            cost = None
            uncosted.append(node.name or node.op_type)
        else:
            if cost is None:
                unsupported.add(node.op_type)
        costs.append(cost)
        if cost is None:
            continue
        row.macs += cost.macs
        row.flops += cost.flops
        row.bytes_read += cost.bytes_read
        row.bytes_written += cost.bytes_written
        for name in cost.param_tensors:
            if name not in param_names:
                param_names.add(name)
                n = graph.tensors[name].numel
                params += n
                row.params += n
    weight_bytes = sum(t.nbytes for t in graph.tensors.values() if t.constant and t.known)
    return Analysis(
        graph=graph,
        node_costs=costs,
        macs=sum(r.macs for r in rows.values()),
        flops=sum(r.flops for r in rows.values()),
        params=params,
        bytes_read=sum(r.bytes_read for r in rows.values()),
        bytes_written=sum(r.bytes_written for r in rows.values()),
        weight_bytes=weight_bytes,
        activation_peak_bytes=activation_peak_bytes(graph),
        by_op_type=rows,
        unsupported_ops=sorted(unsupported),
        uncosted_nodes=uncosted,
    )
