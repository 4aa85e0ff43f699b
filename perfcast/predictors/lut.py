"""FBNet's lookup table (Wu et al., CVPR 2019), with per-operator costs learned from end-to-end labels.

FBNet sums a table of per-operator latencies measured one operator at a time. Public benchmarks
publish whole-network numbers only, so here the table is learned: every node maps to an entry keyed
by its op type, the shapes of its non-constant inputs, the shapes of its outputs and its key
attributes (:data:`KEY_ATTRS`: kernel, stride, padding, dilation, group, axis, permutation). A network
is the vector of its entry counts, and for every target

    ``y = sum_e n_e c_e + sum_t (a_t MACs_t + b_t bytes_t) + c_0``

where ``n_e`` counts entry ``e``, ``MACs_t`` and ``bytes_t`` (read + written) are summed over the
nodes of op type ``t`` and ``c_0`` is a per-network overhead. For ``memory_bytes`` the table prices
what nodes hold (weights) and one more term ``d * activation_peak_bytes`` covers the activations,
whose peak is a maximum over time rather than a sum over nodes. Every coefficient is non-negative and
fitted in one least-squares problem on relative error (columns scaled to unit norm); the entry costs
``c_e`` carry a ridge penalty ``ridge * ||c||^2`` (in the scaled space), so the op-type rates explain
what they can and an entry seen rarely stays near its op type's rate. The cost of one occurrence
of entry ``e`` (see :meth:`LookupTable.table`) is ``c_e + a_t MACs_e + b_t bytes_e``.

An entry never seen in training is priced by its op type's rates alone (an op type never seen by
the MAC- and byte-weighted mean rates of the training set), and its graph is out of domain.

The table's keys and op types are stored as JSON text in ``predictor.json``; costs, rates and
training counts as arrays.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from perfcast.analysis import analyze_graph
from perfcast.analysis.liveness import read_graph
from perfcast.errors import UsageError
from perfcast.ir.graph import Graph, Node
from perfcast.predictors.base import Predictor, model_reading, nnls, register_predictor
from perfcast.predictors.features import COLUMNS, GraphStats

KEY_ATTRS = ("kernel_shape", "strides", "pads", "dilations", "group", "axis", "perm")
CACHE_SIZE = 8192
_PEAK = COLUMNS.index("activation_peak_bytes")


@dataclass(frozen=True)
class EntryCounts:
    """The table entries of one graph: distinct keys with their counts, op types, MACs and bytes
    of one occurrence."""

    keys: tuple[str, ...]
    op_types: tuple[str, ...]
    counts: np.ndarray
    macs: np.ndarray
    nbytes: np.ndarray


def _shapes(graph: Graph, names: Sequence[str], skip_constants: bool) -> str:
    parts = []
    for name in names:
        t = graph.tensor(name) if name else None
        if t is None or (skip_constants and t.constant):
            continue
        parts.append("?" if t.shape is None else "x".join(map(str, t.shape)) or "scalar")
    return ",".join(parts)


def _attr_text(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def entry_key(node: Node, graph: Graph) -> str:
    """The table key of one node, e.g. ``Conv|1x16x32x32|1x16x32x32|kernel_shape=3x3|...``."""
    attrs = [f"{k}={_attr_text(node.attrs[k])}" for k in KEY_ATTRS if k in node.attrs]
    return "|".join([node.op_type, _shapes(graph, node.inputs, True), _shapes(graph, node.outputs, False), *attrs])


def compute_entries(graph: Graph) -> EntryCounts:
    """Count the table entries of one graph (uncached)."""
    costs = analyze_graph(graph).node_costs
    found: dict[str, list] = {}
    for node, cost in zip(graph.nodes, costs):
        key = entry_key(node, graph)
        slot = found.setdefault(key, [node.op_type, 0, 0.0, 0.0])
        slot[1] += 1
        if cost is not None:
            slot[2] += cost.macs
            slot[3] += cost.bytes_read + cost.bytes_written
    keys = tuple(sorted(found))
    counts = np.array([found[k][1] for k in keys], float)
    return EntryCounts(keys, tuple(found[k][0] for k in keys), counts,
                       np.array([found[k][2] for k in keys]) / counts, np.array([found[k][3] for k in keys]) / counts)


_CACHE: OrderedDict[str, EntryCounts] = OrderedDict()


def graph_entries(graph: Graph) -> EntryCounts:
    """:func:`compute_entries`, cached per content hash."""
    key = graph.content_hash
    hit = _CACHE.get(key)
    if hit is None:
        hit = _CACHE[key] = compute_entries(graph)
        if len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return hit


# --- the fit -------------------------------------------------------------------------------------
def _design(entries: Sequence[EntryCounts], keys: Sequence[str], op_types: Sequence[str]) -> np.ndarray:
    """Columns: entry counts, MACs per op type, bytes per op type, one constant."""
    key_col = {k: i for i, k in enumerate(keys)}
    type_col = {t: i for i, t in enumerate(op_types)}
    e, t = len(keys), len(op_types)
    a = np.zeros((len(entries), e + 2 * t + 1))
    a[:, -1] = 1.0
    for row, ent in enumerate(entries):
        for key, op, n, m, b in zip(ent.keys, ent.op_types, ent.counts, ent.macs, ent.nbytes):
            if key in key_col:
                a[row, key_col[key]] += n
            if op in type_col:
                a[row, e + type_col[op]] += n * m
                a[row, e + t + type_col[op]] += n * b
    return a


def fit_ridge_nnls(a: np.ndarray, y: np.ndarray, penalised: int, ridge: float,
                   reference: np.ndarray | None = None) -> np.ndarray:
    """Non-negative ``x`` minimising ``||(a x - y) / y||^2 + ridge ||s x[:penalised]||^2`` where ``s``
    is the norm of each column of ``a / y`` (of ``reference / y`` when given: one reference column
    per penalised column, so a column that is rarely non-zero is penalised in the units of a
    common one and cannot take a large coefficient cheaply)."""
    weight = 1.0 / np.maximum(y, max(float(np.median(y)), 1e-30) * 1e-3)
    aw = a * weight[:, None]
    norms = np.linalg.norm(aw, axis=0)
    norms[norms == 0] = 1.0
    scale = np.ones(penalised)
    if reference is not None:
        ref = np.linalg.norm(reference * weight[:, None], axis=0)
        scale = np.where(ref > 0, np.maximum(ref / norms[:penalised], 1.0), 1.0)
    prior = np.zeros((penalised, a.shape[1]))
    prior[:, :penalised] = np.sqrt(ridge) * np.diag(scale)
    return nnls(np.vstack([aw / norms, prior]), np.r_[y * weight, np.zeros(penalised)]) / norms


def _peak(target: str, stats: Sequence[GraphStats]) -> np.ndarray:
    """The activation peak of each graph for ``memory_bytes`` (a maximum over time, not a sum over
    nodes, so it is one column beside the table); zeros for other targets."""
    if target != "memory_bytes":
        return np.zeros(len(stats))
    return np.array([s.row[_PEAK] for s in stats])


def _unpack(model: Mapping) -> tuple[list[str], list[str]]:
    return json.loads(model["keys"]), json.loads(model["op_types"])


@register_predictor("lut")
class LookupTable(Predictor):
    """Sum of learned per-(op, shapes, attributes) costs with per-op-type MAC and byte rates."""

    LEARNS_FOLDING = True

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = ridge

    def _check_params(self) -> None:
        if isinstance(self.ridge, bool) or not isinstance(self.ridge, (int, float)) or not self.ridge >= 0:
            raise UsageError("ridge", f"must be a number >= 0, not {self.ridge!r}")

    # -- hooks ---------------------------------------------------------------------------------------
    @staticmethod
    def _entries(stats: list[GraphStats]) -> list[EntryCounts]:
        graphs = [s.graph for s in stats]
        if any(g is None for g in graphs):
            raise UsageError("graph", "is no longer in memory: price graphs while they are alive")
        return [graph_entries(g) for g in graphs]

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        entries = self._entries(stats)
        keys = sorted({k for e in entries for k in e.keys})
        first = {}
        for ent in entries:
            for k, op, m, b in zip(ent.keys, ent.op_types, ent.macs, ent.nbytes):
                first.setdefault(k, (op, m, b))
        op_types = sorted({op for op, _, _ in first.values()})
        a = np.column_stack([_design(entries, keys, op_types), _peak(target, stats)])
        coef = fit_ridge_nnls(a, y, len(keys), float(self.ridge))
        e, t = len(keys), len(op_types)
        rates = np.column_stack([coef[e:e + t], coef[e + t:e + 2 * t]])
        totals = a[:, e:e + 2 * t].sum(axis=0).reshape(2, t).T  # (op type, [MACs, bytes]) over training
        global_rate = (rates * totals).sum(axis=0) / np.maximum(totals.sum(axis=0), 1e-300)
        return {
            "keys": json.dumps(keys), "op_types": json.dumps(op_types),
            "entry_cost": coef[:e], "entry_count": a[:, :e].sum(axis=0),
            "entry_macs": np.array([first[k][1] for k in keys]), "entry_bytes": np.array([first[k][2] for k in keys]),
            "type_rate": rates, "global_rate": global_rate, "const": coef[-2:-1], "per_peak_byte": coef[-1:],
        }

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        keys, op_types = _unpack(model)
        key_index = {k: i for i, k in enumerate(keys)}
        type_index = {t: i for i, t in enumerate(op_types)}
        cost, rates, fallback = model["entry_cost"], np.asarray(model["type_rate"]).reshape(-1, 2), model["global_rate"]
        out = float(model["const"][0]) + float(model["per_peak_byte"][0]) * _peak(target, stats)
        for row, ent in enumerate(self._entries(stats)):
            for key, op, n, m, b in zip(ent.keys, ent.op_types, ent.counts, ent.macs, ent.nbytes):
                rate = rates[type_index[op]] if op in type_index else fallback
                out[row] += n * (cost[key_index[key]] if key in key_index else 0.0) + n * (rate[0] * m + rate[1] * b)
        return out

    def in_domain(self, graphs) -> np.ndarray:
        """The feature-space check of every predictor, and False where a graph (folded, for a
        target whose device folds) has a table entry that no training graph had."""
        mask = super().in_domain(graphs)
        for model in self.models_.values():
            known = set(_unpack(model)[0])
            priced = [read_graph(g, model_reading(model)) for g in graphs]
            mask &= np.array([known.issuperset(graph_entries(g).keys) for g in priced], bool)
        return mask

    def table(self, target: str = "latency_ms") -> dict[str, float]:
        """``{entry key: cost of one occurrence}`` learned for ``target`` (its units per node)."""
        self._fitted()
        if target not in self.models_:
            raise UsageError("target", f"no table fitted for {target!r}")
        model = self.models_[target]
        keys, op_types = _unpack(model)
        rates = np.asarray(model["type_rate"]).reshape(-1, 2)
        ops = [k.split("|", 1)[0] for k in keys]
        linear = [rates[op_types.index(op)] @ (m, b) for op, m, b in zip(ops, model["entry_macs"], model["entry_bytes"])]
        return {k: float(c + lin) for k, c, lin in zip(keys, model["entry_cost"], linear)}
