"""Graph-level features for predictors, computed from :func:`perfcast.analysis.analyze_graph`.

One row per graph, with named columns:

- totals: ``macs``, ``flops``, ``params``, ``bytes_read``, ``bytes_written``, ``weight_bytes``,
  ``activation_peak_bytes``, ``nodes``;
- input: ``batch`` (first dimension of the first graph input) and ``input_elems`` (elements of
  all graph inputs per sample: 3 x H x W for an image network);
- per op family (see :data:`FAMILIES`): ``<family>_macs``, ``<family>_flops``, ``<family>_bytes``
  (read + written) and ``<family>_count``.

Op families are looked up by exact op type (ONNX and TFLite names) in :data:`OP_FAMILY`; an op type
that is not listed counts as ``other``. A ``Conv`` whose ``group`` equals its input channels (and is
above 1) is a depthwise convolution, as is TFLite's ``DEPTHWISE_CONV_2D``.

Results are cached per graph content hash (the architecture, not the object), so the same
network seen by several predictors or folds is analysed once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from perfcast.analysis import analyze_graph
from perfcast.ir.graph import Graph, Node
from perfcast.ops import onnx_ops, tflite_ops

FAMILIES = ("conv", "dwconv", "gemm", "norm", "activation", "pool", "elementwise", "data_movement", "other")

_ACTIVATIONS = (
    "Relu", "Sigmoid", "Tanh", "Clip", "Elu", "Selu", "Celu", "LeakyRelu", "PRelu", "HardSigmoid",
    "HardSwish", "Swish", "Gelu", "Mish", "Softplus", "Softsign", "ThresholdedRelu", "Softmax",
    "LogSoftmax", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH", "LEAKY_RELU",
    "PRELU", "ELU", "HARD_SWISH", "GELU", "SOFTMAX", "LOG_SOFTMAX",
)
_FAMILY_MEMBERS: dict[str, tuple[str, ...]] = {
    "conv": ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "DeformConv", "CONV_2D", "CONV_3D",
             "TRANSPOSE_CONV"),
    "dwconv": ("DEPTHWISE_CONV_2D",),
    "gemm": ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "Einsum", "Attention", "FULLY_CONNECTED",
             "BATCH_MATMUL", "LSTM", "GRU", "RNN", "UNIDIRECTIONAL_SEQUENCE_LSTM",
             "BIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN"),
    "norm": ("BatchNormalization", "LayerNormalization", "GroupNormalization", "InstanceNormalization",
             "MeanVarianceNormalization", "RMSNormalization", "SimplifiedLayerNormalization",
             "LpNormalization", "LRN", "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION"),
    "activation": _ACTIVATIONS,
    "pool": ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
             "MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D", "MEAN", "REDUCE_MAX"),
    "elementwise": tuple(
        op for op in (*onnx_ops.SIMPLE_ELEMENTWISE, *onnx_ops.COMPOUND_FLOPS, "Sum", "Max", "Min", "Mean",
                      *tflite_ops.ELEMENTWISE_FLOPS)
        if op not in _ACTIVATIONS
    ),
    "data_movement": (*onnx_ops.DATA_MOVEMENT, *tflite_ops.DATA_MOVEMENT),
}
OP_FAMILY: dict[str, str] = {op: fam for fam, ops in _FAMILY_MEMBERS.items() for op in ops}

TOTALS = ("macs", "flops", "params", "bytes_read", "bytes_written", "weight_bytes", "activation_peak_bytes",
          "nodes", "batch", "input_elems")
COLUMNS: tuple[str, ...] = TOTALS + tuple(
    f"{fam}_{what}" for fam in FAMILIES for what in ("macs", "flops", "bytes", "count")
)
_COLUMN_INDEX = {c: i for i, c in enumerate(COLUMNS)}


@dataclass(frozen=True)
class GraphStats:
    """What predictors need of one graph: its feature row and per-node FLOPs and bytes."""

    content_hash: str
    row: np.ndarray  # float64, aligned with COLUMNS
    node_flops: np.ndarray  # float64, one entry per costed node
    node_bytes: np.ndarray  # bytes read + written per costed node


@dataclass(frozen=True)
class FeatureTable:
    """Feature rows of several graphs with named columns."""

    columns: tuple[str, ...]
    matrix: np.ndarray  # (graphs, columns) float64
    hashes: tuple[str, ...]

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, self.columns.index(name)]


def op_family(node: Node, graph: Graph) -> str:
    """The family of one node (see :data:`FAMILIES`)."""
    if node.op_type == "Conv" and _is_depthwise(node, graph):
        return "dwconv"
    return OP_FAMILY.get(node.op_type, "other")


def _is_depthwise(node: Node, graph: Graph) -> bool:
    group = node.attrs.get("group", 1)
    x = graph.tensor(node.inputs[0]) if node.inputs else None
    if not isinstance(group, int) or group <= 1 or x is None or x.shape is None or len(x.shape) < 2:
        return False
    return x.shape[1] == group


def _input_dims(graph: Graph) -> tuple[float, float]:
    shapes = [t.shape for name in graph.inputs if (t := graph.tensor(name)) is not None and t.known and t.shape]
    if not shapes:
        return 1.0, 0.0
    batch = max(shapes[0][0], 1)
    return float(batch), float(sum(int(np.prod(s)) for s in shapes) / batch)


def compute_stats(graph: Graph) -> GraphStats:
    """Analyse one graph into its :class:`GraphStats` (uncached)."""
    a = analyze_graph(graph)
    row = np.zeros(len(COLUMNS))
    for name in ("macs", "flops", "params", "bytes_read", "bytes_written", "weight_bytes", "activation_peak_bytes"):
        row[_COLUMN_INDEX[name]] = getattr(a, name)
    row[_COLUMN_INDEX["nodes"]] = len(graph.nodes)
    row[_COLUMN_INDEX["batch"]], row[_COLUMN_INDEX["input_elems"]] = _input_dims(graph)
    flops, nbytes = [], []
    for node, cost in zip(graph.nodes, a.node_costs):
        fam = op_family(node, graph)
        row[_COLUMN_INDEX[f"{fam}_count"]] += 1
        if cost is None:
            continue
        moved = cost.bytes_read + cost.bytes_written
        row[_COLUMN_INDEX[f"{fam}_macs"]] += cost.macs
        row[_COLUMN_INDEX[f"{fam}_flops"]] += cost.flops
        row[_COLUMN_INDEX[f"{fam}_bytes"]] += moved
        flops.append(cost.flops)
        nbytes.append(moved)
    return GraphStats(graph.content_hash, row, np.asarray(flops, float), np.asarray(nbytes, float))


_CACHE: OrderedDict[str, GraphStats] = OrderedDict()
CACHE_SIZE = 8192


def graph_stats(graph: Graph) -> GraphStats:
    """:func:`compute_stats`, cached per content hash (least recently used out past CACHE_SIZE)."""
    key = graph.content_hash
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    stats = compute_stats(graph)
    _CACHE[key] = stats
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return stats


def graph_features(graphs: Sequence[Graph]) -> FeatureTable:
    """The feature table of several graphs (rows in the order given)."""
    stats = [graph_stats(g) for g in graphs]
    matrix = np.vstack([s.row for s in stats]) if stats else np.zeros((0, len(COLUMNS)))
    return FeatureTable(COLUMNS, matrix, tuple(s.content_hash for s in stats))
