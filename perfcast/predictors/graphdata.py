"""Graphs as tensors for graph-learning predictors: per-node and per-edge features and graph-level
statistics, as a :class:`torch_geometric.data.Data` per network.

Nodes are the graph's operators in topological order (the rows of its
:class:`~perfcast.predictors.features.NodeTable`). Each node has

- ``kind``: the index of its op kind in :data:`KINDS` (``Conv:dw`` for a depthwise convolution);
  index 0 (``other``) for a kind not listed, so the vocabulary, and every model's input width,
  is fixed whatever the training set;
- ``x`` (:data:`NODE_FEATURES`): the one-hot of ``kind``, the one-hot of its op family
  (:data:`~perfcast.predictors.features.FAMILIES`), then ``log1p`` of kernel size, stride, group,
  input and output channels, input, output and weight elements, MACs, FLOPs, bytes moved (read +
  written) and arithmetic intensity (FLOPs per byte moved), and the flags ``costed`` and
  ``const_fed``.

An edge ``j -> i`` joins a producer to a consumer (one per distinct pair, as in the NodeTable);
``edge_attr`` holds ``log1p`` of the elements and of the bytes of the tensors that flow along it.
``u`` is the graph's summary feature row (the first :data:`~perfcast.predictors.features.N_SUMMARY` columns,
without the hashed structure counts that the graph network learns itself) in ``log1p``.

:func:`graph_data` converts a graph; :func:`stats_data` does the same from its
:class:`~perfcast.predictors.features.GraphStats`. Both are cached per content hash.
:func:`batch` joins several into one :class:`torch_geometric.data.Batch`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from perfcast.errors import UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.features import FAMILIES, N_SUMMARY, NODE_COLUMNS, GraphStats, graph_stats

OTHER = "other"
KINDS: tuple[str, ...] = (
    OTHER,
    # convolution and dense algebra
    "Conv", "Conv:dw", "ConvTranspose", "Gemm", "MatMul", "Einsum", "LSTM", "GRU", "RNN",
    # normalisation
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "InstanceNormalization",
    # activations
    "Relu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "PRelu", "Elu", "Gelu", "Erf",
    "Softmax", "LogSoftmax",
    # elementwise arithmetic
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Reciprocal", "Where", "Equal", "Less",
    "Greater", "Max", "Min", "Sum",
    # pooling and reductions
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax",
    # data movement
    "Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice", "Gather", "Squeeze", "Unsqueeze", "Expand",
    "Pad", "Resize", "DepthToSpace", "SpaceToDepth", "Identity", "Cast", "Shape", "ConstantOfShape", "Range",
    "Tile", "CumSum", "TopK", "ArgMax",
)
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
NUMERIC = ("kernel", "stride", "group", "in_channels", "out_channels", "in_elems", "out_elems", "weight_elems",
           "macs", "flops", "bytes", "intensity")
FLAGS = ("costed", "const_fed")
NODE_FEATURES: tuple[str, ...] = (tuple(f"kind_{k}" for k in KINDS) + tuple(f"family_{f}" for f in FAMILIES)
                                  + NUMERIC + FLAGS)
EDGE_FEATURES: tuple[str, ...] = ("elems", "bytes")
NUMERIC_START = len(KINDS) + len(FAMILIES)  # where the log1p numeric node features begin

_N = {c: i for i, c in enumerate(NODE_COLUMNS)}
_DIRECT = [_N[c] for c in ("kernel", "stride", "group", "in_channels", "out_channels", "in_elems", "out_elems",
                           "weight_elems", "macs", "flops")]
_FAMILY_INDEX = {f: i for i, f in enumerate(FAMILIES)}
CACHE_SIZE = 8192
_CACHE: "OrderedDict[str, object]" = OrderedDict()


def kind_index(kinds: Sequence[str]) -> np.ndarray:
    """Index of each op kind in :data:`KINDS` (0, ``other``, where not listed)."""
    return np.fromiter((KIND_INDEX.get(k, 0) for k in kinds), dtype=np.int64, count=len(kinds))


def node_features(stats: GraphStats) -> tuple[np.ndarray, np.ndarray]:
    """``(kind, x)`` of every node of one graph: kind indices and the :data:`NODE_FEATURES` rows."""
    table = stats.nodes
    n = len(table)
    values = np.maximum(table.values, 0.0)
    kind = kind_index(table.kinds)
    x = np.zeros((n, len(NODE_FEATURES)), dtype=np.float32)
    rows = np.arange(n)
    x[rows, kind] = 1.0
    x[rows, len(KINDS) + np.fromiter((_FAMILY_INDEX[f] for f in table.families), np.int64, n)] = 1.0
    moved = values[:, _N["bytes_read"]] + values[:, _N["bytes_written"]]
    intensity = values[:, _N["flops"]] / np.maximum(moved, 1.0)
    numeric = np.column_stack([values[:, _DIRECT], moved, intensity])
    x[:, NUMERIC_START:NUMERIC_START + len(NUMERIC)] = np.log1p(numeric)
    x[:, NUMERIC_START + len(NUMERIC):] = values[:, [_N[c] for c in FLAGS]]
    return kind, x


def edge_features(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """``(edge_index, edge_attr)``: one edge per (producer, consumer) pair of nodes, with ``log1p``
    of the elements and bytes of the distinct tensors the consumer reads from that producer (a
    tensor of unknown shape counts 0)."""
    producer: dict[str, int] = {}
    sizes: dict[tuple[int, int], list[float]] = {}
    for i, node in enumerate(graph.nodes):
        for name in dict.fromkeys(node.inputs):
            j = producer.get(name)
            if j is None:
                continue
            t = graph.tensors.get(name)
            elems, nbytes = (t.numel, t.nbytes) if t is not None and t.known else (0, 0)
            acc = sizes.setdefault((j, i), [0.0, 0.0])
            acc[0] += elems
            acc[1] += nbytes
        for name in node.outputs:
            if name:
                producer[name] = i
    if not sizes:
        return np.zeros((2, 0), np.int64), np.zeros((0, len(EDGE_FEATURES)), np.float32)
    index = np.array(list(sizes), dtype=np.int64).T
    attr = np.log1p(np.array(list(sizes.values()), dtype=np.float64)).astype(np.float32)
    return index, attr


def _convert(graph: Graph, stats: GraphStats):
    import torch
    from torch_geometric.data import Data

    kind, x = node_features(stats)
    index, attr = edge_features(graph)
    u = np.log1p(np.maximum(stats.row[:N_SUMMARY], 0.0)).astype(np.float32)[None, :]
    return Data(x=torch.from_numpy(x), kind=torch.from_numpy(kind), edge_index=torch.from_numpy(index),
                edge_attr=torch.from_numpy(attr), u=torch.from_numpy(u), num_nodes=x.shape[0])


def _cached(key: str, graph: Graph | None, stats: GraphStats):
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    if graph is None:
        raise UsageError("graph", "is no longer in memory: convert graphs while they are alive")
    data = _convert(graph, stats)
    _CACHE[key] = data
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return data


def graph_data(graph: Graph):
    """The :class:`torch_geometric.data.Data` of one graph (cached per content hash; treat as
    read-only)."""
    return _cached(graph.content_hash, graph, graph_stats(graph))


def stats_data(stats: GraphStats):
    """:func:`graph_data` of the graph that ``stats`` describe (which must still be in memory
    unless it was converted before)."""
    hit = _CACHE.get(stats.content_hash)
    if hit is not None:
        _CACHE.move_to_end(stats.content_hash)
        return hit
    return _cached(stats.content_hash, stats.graph, stats)


def batch(datas: Sequence):
    """One :class:`torch_geometric.data.Batch` of several graphs' data."""
    from torch_geometric.data import Batch

    return Batch.from_data_list(list(datas))
