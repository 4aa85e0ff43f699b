"""Graph-level features for predictors, computed from :func:`perfcast.analysis.analyze_graph`.

One row per graph, with named columns:

- totals: ``macs``, ``flops``, ``params``, ``bytes_read``, ``bytes_written``, ``weight_bytes``,
  ``activation_peak_bytes``, ``nodes``;
- input: ``batch`` (first dimension of the first graph input) and ``input_elems`` (elements of
  all graph inputs per sample: 3 x H x W for an image network);
- after folding: ``live_macs``, ``live_flops``, ``live_bytes`` and ``live_nodes`` count only the
  operators that still run after constant folding and dead-code elimination
  (:mod:`perfcast.analysis.liveness`), which some runtimes do and others do not;
- per op family (see :data:`FAMILIES`): ``<family>_macs``, ``<family>_flops``, ``<family>_bytes``
  (read + written) and ``<family>_count``;
- dataflow between families: ``flow_<a>_<b>`` counts the edges from an operator of family ``a``
  to one of family ``b`` where both still run after folding (the producer-consumer pairs that
  runtimes fuse into one kernel, or launch as two);
- storage (after the structure counts, so the summary columns keep their place): ``max_weight_bytes``
  and ``max_out_bytes``, the largest constant input and output tensor, and per op family
  ``<family>_weight_bytes`` (constant inputs: weights, and tensors computed from constants only),
  ``<family>_out_bytes`` and ``<family>_max_out_bytes``. A runtime copies, re-lays out or prepacks
  weights by the operator that reads them, and plans activations around its largest tensors.
  Predictors read them for ``memory_bytes`` only (:func:`perfcast.predictors.base._log_features`).
  On the local dataset (onnxruntime CPU, ``perfcast evaluate --data local``), gbt's memory MAPE
  on held-out networks of seen spaces fell from 5.5 % to 4.6 %. For latency they lowered that
  MAPE from 7.0 % to 6.9 % but cut the share within +-10 % on a left-out space from 49 % to 44 %
  (mean over the 13 spaces; FBNet 51 to 22 %, GPT 61 to 12 %): trees split on the weight layout
  of the spaces they know, which says little about the time of a new one;
- buffers (storage columns too, appended last): what a runtime holds beside the graph's tensors.
  ``graph_output_bytes``, the outputs, which a caller receives as copies of the runtime's
  buffers; ``deconv_buffer_bytes``, the largest column buffer of a transposed convolution
  computed as a matrix product and scattered back (output channels per group x kernel taps x
  input pixels); ``blocked_conv_weight_bytes``, convolution filters with their channel counts
  rounded up to blocks of :data:`CHANNEL_BLOCK`, the layout vectorised CPU kernels re-pack them
  into (an input side under half a block stays as it is). On the local dataset the peak memory
  of a network whose weights dominate comes while it loads (the file's weights and their
  re-laid-out copies), and otherwise during inference (resident weights, live activations, a
  transposed convolution's column buffer, the outputs once more). With these columns in the
  trees and in gbt's memory baseline, the memory MAPE on a left-out space fell from 20.0 % to
  13.4 % (mean over the 13 spaces; segmentation 57 % to 9.5 %, NAS-Bench-201 21 % to 11 %,
  keyword spotting 21 % to 24 %) and the share within +-10 % rose from 36 % to 50 %; on held-out
  networks of seen spaces it stayed at 4.7 %;
- structure: ``wl_<i>`` are Weisfeiler-Lehman subtree counts (the graph kernel of Shervashidze et
  al., JMLR 2011, used as NAS features by Ru et al., ICLR 2021), hashed into :data:`WL_BUCKETS`
  buckets. A node's label starts as its op type, marked when folding removes it; each of
  :data:`WL_ITERATIONS` rounds relabels a node by its label and the multiset of its producers'
  labels.
  Two graphs with the same operators and totals but wired differently (which edge of a cell holds
  the convolution, what a sum adds up) differ here. Labels are integer hashes (CRC-32 of the op
  type, then MurmurHash3's finaliser), the same in every process and on every machine.

Op families are looked up by exact op type (ONNX and TFLite names) in :data:`OP_FAMILY`; an op type
that is not listed counts as ``other``. A ``Conv`` whose ``group`` equals its input channels (and is
above 1) is a depthwise convolution, as is TFLite's ``DEPTHWISE_CONV_2D``.

Beside the row, :class:`GraphStats` holds a :class:`NodeTable`: one row per node (in the graph's
topological order) with its op type, family, cost (:data:`NODE_COLUMNS`) and dataflow edges, for
predictors that cost nodes or runtime kernels one by one.

Results are cached per graph object while it lives, and per content hash (the architecture, not
the object) for graphs whose hash is known, so the same network seen by several predictors or
folds is analysed once and a stream of new networks is never hashed only for the cache.
"""

from __future__ import annotations

import math
import weakref
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from perfcast.analysis import analyze_graph
from perfcast.errors import UsageError
from perfcast.analysis.liveness import running_nodes
from perfcast.ir.graph import DTYPE_BYTES, Graph, Node, fewer_collections
from perfcast.ops import onnx_ops, tflite_ops

WL_BUCKETS = 512
WL_ITERATIONS = 2
CHANNEL_BLOCK = 16  # channels per block of a blocked (NCHWc) filter layout: one AVX-512 vector of float32
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
          "nodes", "batch", "input_elems", "live_macs", "live_flops", "live_bytes", "live_nodes")
COLUMNS: tuple[str, ...] = TOTALS + tuple(
    f"{fam}_{what}" for fam in FAMILIES for what in ("macs", "flops", "bytes", "count")
) + tuple(f"flow_{a}_{b}" for a in FAMILIES for b in FAMILIES) + tuple(f"wl_{i}" for i in range(WL_BUCKETS)) + (
    "max_weight_bytes", "max_out_bytes",
) + tuple(f"{fam}_{what}" for fam in FAMILIES for what in ("weight_bytes", "out_bytes", "max_out_bytes")) + (
    "graph_output_bytes", "deconv_buffer_bytes", "blocked_conv_weight_bytes",
)
_COLUMN_INDEX = {c: i for i, c in enumerate(COLUMNS)}
_FAMILY_INDEX = {f: tuple(_COLUMN_INDEX[f"{f}_{w}"] for w in ("count", "macs", "flops", "bytes")) for f in FAMILIES}
_FLOW_INDEX = {(a, b): _COLUMN_INDEX[f"flow_{a}_{b}"] for a in FAMILIES for b in FAMILIES}
_LIVE_INDEX = tuple(_COLUMN_INDEX[c] for c in ("live_nodes", "live_macs", "live_flops", "live_bytes"))
N_AGGREGATE = COLUMNS.index(f"flow_{FAMILIES[0]}_{FAMILIES[0]}")  # totals and per-family columns come first
N_SUMMARY = COLUMNS.index("wl_0")  # every column before the structure counts
N_STORAGE = COLUMNS.index("max_weight_bytes")  # the storage columns come last, from here
N_BUFFERS = COLUMNS.index("graph_output_bytes")  # the buffer columns, appended after the other storage ones


class GraphStats:
    """What predictors need of one graph: its feature row and per-node FLOPs and bytes, and on
    demand its :class:`NodeTable` (``nodes``), built from the graph the stats were last asked for
    (most predictors never need it, so it is not built up front)."""

    __slots__ = ("_hash", "row", "node_flops", "node_bytes", "_nodes", "_graph")

    def __init__(self, content_hash: str | None, row: np.ndarray, node_flops: np.ndarray, node_bytes: np.ndarray,
                 nodes: "NodeTable | None" = None, graph: Graph | None = None) -> None:
        self._hash = content_hash
        self.row = row  # float64, aligned with COLUMNS
        self.node_flops = node_flops  # float64, one entry per costed node
        self.node_bytes = node_bytes  # bytes read + written per costed node
        self._nodes = nodes
        self._graph = weakref.ref(graph) if graph is not None else None

    @property
    def content_hash(self) -> str:
        """The graph's content hash, computed from the graph on first use."""
        if self._hash is None:
            graph = self.graph
            if graph is None:
                raise UsageError("graph", "is no longer in memory: ask for its content hash while it is alive")
            self._hash = graph.content_hash
        return self._hash

    @property
    def graph(self) -> Graph | None:
        """The graph these stats were last asked for, while it is alive (else None)."""
        return self._graph() if self._graph is not None else None

    @property
    def nodes(self) -> "NodeTable | None":
        """Per-node table of every node (see :func:`node_table`); None when the graph is gone."""
        if self._nodes is None:
            graph = self.graph
            if graph is not None:
                self._nodes = node_table(graph, analyze_graph(graph).node_costs)
        return self._nodes

    def _attach(self, graph: Graph) -> None:
        if self._nodes is None or self.graph is None:
            self._graph = weakref.ref(graph)


NODE_COLUMNS: tuple[str, ...] = (
    "macs", "flops", "bytes_read", "bytes_written", "params", "in_elems", "out_elems", "weight_elems",
    "kernel", "in_channels", "out_channels", "stride", "group", "inner_dim", "costed", "const_fed",
)
_NODE_INDEX = {c: i for i, c in enumerate(NODE_COLUMNS)}


@dataclass(frozen=True)
class NodeTable:
    """Every node of a graph in topological order with what predictors of per-node or per-kernel
    cost need (:data:`NODE_COLUMNS`):

    - ``macs``, ``flops``, ``bytes_read``, ``bytes_written``, ``params`` from the op's cost rule
      (zeros and ``costed = 0`` where no rule covers it);
    - ``in_elems`` (elements of non-constant inputs), ``out_elems``, ``weight_elems`` (elements of
      constant inputs);
    - ``kernel`` (product of the spatial kernel sizes, 1 without one), ``in_channels`` and
      ``out_channels`` (dimension 1 of the first input and output, 0 below rank 2), ``stride``
      (product of strides, 1 without), ``group``, ``inner_dim`` (last dimension of the first output);
    - ``const_fed``: 1 when every input is a constant or computed from constants only (a constant
      subgraph that a runtime can fold).

    ``producers[i]`` are the nodes whose outputs node ``i`` reads; ``consumers[i]`` the nodes that
    read an output of node ``i``; ``kinds`` are op types with ``Conv`` split into ``Conv`` and
    ``Conv:dw`` (depthwise).
    """

    names: tuple[str, ...]
    op_types: tuple[str, ...]
    kinds: tuple[str, ...]
    families: tuple[str, ...]
    values: np.ndarray  # (nodes, NODE_COLUMNS) float64
    producers: tuple[tuple[int, ...], ...]
    consumers: tuple[tuple[int, ...], ...]

    def column(self, name: str) -> np.ndarray:
        return self.values[:, _NODE_INDEX[name]]

    def __len__(self) -> int:
        return len(self.names)


def _node_row(node: Node, graph: Graph, cost, const: set[str]) -> np.ndarray:
    row = np.zeros(len(NODE_COLUMNS))
    if cost is not None:
        row[:5] = (cost.macs, cost.flops, cost.bytes_read, cost.bytes_written, cost.params)
        row[_NODE_INDEX["costed"]] = 1.0
    ins = [graph.tensor(n) for n in node.inputs if n]
    outs = [graph.tensor(n) for n in node.outputs if n]
    row[_NODE_INDEX["in_elems"]] = sum(t.numel for t in ins if t is not None and t.known and t.name not in const)
    row[_NODE_INDEX["weight_elems"]] = sum(t.numel for t in ins if t is not None and t.known and t.name in const)
    row[_NODE_INDEX["out_elems"]] = sum(t.numel for t in outs if t is not None and t.known)
    kernel = node.attrs.get("kernel_shape")
    if not isinstance(kernel, tuple) and node.op_type in ("Conv", "ConvTranspose") and len(ins) > 1 \
            and ins[1] is not None and ins[1].known:
        kernel = ins[1].shape[2:]
    row[_NODE_INDEX["kernel"]] = float(np.prod(kernel)) if isinstance(kernel, tuple) else 1.0
    strides = node.attrs.get("strides")
    row[_NODE_INDEX["stride"]] = float(np.prod(strides)) if isinstance(strides, tuple) else 1.0
    group = node.attrs.get("group", 1)
    row[_NODE_INDEX["group"]] = float(group) if isinstance(group, int) else 1.0
    first_in, first_out = (ins[0] if ins else None), (outs[0] if outs else None)
    row[_NODE_INDEX["in_channels"]] = _axis(first_in, 1)
    row[_NODE_INDEX["out_channels"]] = _axis(first_out, 1)
    row[_NODE_INDEX["inner_dim"]] = _axis(first_out, -1)
    row[_NODE_INDEX["const_fed"]] = float(all(n in const for n in node.inputs if n))
    return row


def _axis(t, axis: int) -> float:
    """Dimension ``axis`` of a tensor of known shape, 0 when it has no such dimension."""
    if t is None or not t.known or not -len(t.shape) <= axis < len(t.shape):
        return 0.0
    return float(t.shape[axis])


def node_table(graph: Graph, costs: Sequence) -> NodeTable:
    """The :class:`NodeTable` of ``graph`` given the cost of each node (None where uncosted)."""
    const = {name for name, t in graph.tensors.items() if t.constant}
    producer: dict[str, int] = {}
    rows, producers = [], []
    consumers: list[list[int]] = [[] for _ in graph.nodes]
    for i, (node, cost) in enumerate(zip(graph.nodes, costs)):
        rows.append(_node_row(node, graph, cost, const))
        if node.inputs and all(n in const for n in node.inputs if n):
            const.update(o for o in node.outputs if o)
        mine = tuple(sorted({producer[n] for n in node.inputs if n in producer}))
        producers.append(mine)
        for j in mine:
            consumers[j].append(i)
        producer.update((o, i) for o in node.outputs if o)
    families = tuple(op_family(n, graph) for n in graph.nodes)
    kinds = tuple(f"{n.op_type}:dw" if n.op_type == "Conv" and f == "dwconv" else n.op_type
                  for n, f in zip(graph.nodes, families))
    values = np.vstack(rows) if rows else np.zeros((0, len(NODE_COLUMNS)))
    return NodeTable(tuple(n.name for n in graph.nodes), tuple(n.op_type for n in graph.nodes), kinds, families,
                     values, tuple(producers), tuple(tuple(c) for c in consumers))


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
    row = [0.0] * len(COLUMNS)  # a list while summing per node: numpy item updates cost more
    for name in ("macs", "flops", "params", "bytes_read", "bytes_written", "weight_bytes", "activation_peak_bytes"):
        row[_COLUMN_INDEX[name]] = getattr(a, name)
    row[_COLUMN_INDEX["nodes"]] = len(graph.nodes)
    row[_COLUMN_INDEX["batch"]], row[_COLUMN_INDEX["input_elems"]] = _input_dims(graph)
    flops, nbytes = [], []
    running = running_nodes(graph)
    families = [op_family(node, graph) for node in graph.nodes]
    live_nodes, live_macs, live_flops, live_bytes = _LIVE_INDEX
    for cost, runs, fam in zip(a.node_costs, running, families):
        count, macs, fam_flops, fam_bytes = _FAMILY_INDEX[fam]
        row[count] += 1
        row[live_nodes] += runs
        if cost is None:
            continue
        moved = cost.bytes_read + cost.bytes_written
        if runs:
            row[live_macs] += cost.macs
            row[live_flops] += cost.flops
            row[live_bytes] += moved
        row[macs] += cost.macs
        row[fam_flops] += cost.flops
        row[fam_bytes] += moved
        flops.append(cost.flops)
        nbytes.append(moved)
    _storage(graph, families, row)
    producer: dict[str, int] = {}
    producers: list[list[int]] = []
    for i, node in enumerate(graph.nodes):
        preds = sorted({producer[n] for n in node.inputs if n in producer})
        producers.append(preds)
        if running[i]:
            for j in preds:
                if running[j]:
                    row[_FLOW_INDEX[families[j], families[i]]] += 1
        producer.update((o, i) for o in node.outputs if o)
    out = np.array(row, dtype=float)
    out[N_SUMMARY:N_SUMMARY + WL_BUCKETS] = wl_counts([n.op_type for n in graph.nodes], running, producers)
    return GraphStats(graph.known_hash, out, np.asarray(flops, float), np.asarray(nbytes, float), graph=graph)


def _storage(graph: Graph, families: Sequence[str], row: list[float]) -> None:
    """Fill the storage columns of ``row``: per family the bytes of its constant inputs (weights,
    and tensors computed from constants only), of its outputs, and its largest output; over the
    graph the largest weight and output tensors, and the buffer columns (the graph's outputs, the
    largest transposed-convolution column buffer, the channel-blocked filters)."""
    size = {name: t.nbytes for name, t in graph.tensors.items() if t.known}
    const = {name for name, t in graph.tensors.items() if t.constant}
    largest_weight = deconv_buffer = blocked_filters = 0
    sums: dict[str, list[int]] = {}
    for node, fam in zip(graph.nodes, families):
        deconv_buffer = max(deconv_buffer, _deconv_buffer(node, graph))
        blocked_filters += _blocked_filter(node, graph)
        weights = [size.get(n, 0) for n in node.inputs if n in const]
        out = [size.get(n, 0) for n in node.outputs if n]
        acc = sums.setdefault(fam, [0, 0, 0])
        acc[0] += sum(weights)
        acc[1] += sum(out)
        acc[2] = max([acc[2], *out])
        largest_weight = max([largest_weight, *weights])
        if node.inputs and all(n in const for n in node.inputs if n):  # as in node_table
            const.update(o for o in node.outputs if o)
    for fam, (weights, out, top) in sums.items():
        row[_COLUMN_INDEX[f"{fam}_weight_bytes"]] = weights
        row[_COLUMN_INDEX[f"{fam}_out_bytes"]] = out
        row[_COLUMN_INDEX[f"{fam}_max_out_bytes"]] = top
    row[_COLUMN_INDEX["max_weight_bytes"]] = largest_weight
    row[_COLUMN_INDEX["max_out_bytes"]] = max((top for _, _, top in sums.values()), default=0)
    row[_COLUMN_INDEX["graph_output_bytes"]] = sum(size.get(n, 0) for n in graph.outputs)
    row[_COLUMN_INDEX["deconv_buffer_bytes"]] = deconv_buffer
    row[_COLUMN_INDEX["blocked_conv_weight_bytes"]] = blocked_filters


def _round_up(channels: int) -> int:
    return -(-channels // CHANNEL_BLOCK) * CHANNEL_BLOCK


def _constant_input(node: Node, graph: Graph, index: int):
    """Input ``index`` of ``node`` when it is a constant of known shape, else None."""
    if len(node.inputs) <= index or not node.inputs[index]:
        return None
    t = graph.tensor(node.inputs[index])
    return t if t is not None and t.constant and t.known and t.shape else None


def _deconv_buffer(node: Node, graph: Graph) -> int:
    """Bytes of the column buffer of a transposed convolution: (output channels per group x kernel
    taps) x input pixels, in the filter's element type (0 for any other operator)."""
    if node.op_type == "ConvTranspose":  # filter (C_in, C_out / group, k...), input NC...
        w = _constant_input(node, graph, 1)
        x = graph.tensor(node.inputs[0]) if node.inputs else None
        if w is None or x is None or not x.known or len(x.shape) != len(w.shape):
            return 0
        columns, pixels = w.shape[1] * math.prod(w.shape[2:]), math.prod(x.shape[2:])
    elif node.op_type == "TRANSPOSE_CONV":  # filter (O, kh, kw, I), input NHWC (input 2)
        w = _constant_input(node, graph, 1)
        x = graph.tensor(node.inputs[2]) if len(node.inputs) > 2 else None
        if w is None or x is None or not x.known or len(w.shape) != 4 or len(x.shape) != 4:
            return 0
        columns, pixels = math.prod(w.shape[:3]), x.shape[1] * x.shape[2]
    else:
        return 0
    return columns * pixels * DTYPE_BYTES.get(w.dtype, 4)


def _blocked_filter(node: Node, graph: Graph) -> int:
    """Bytes of a 2-D convolution's filter with its channel counts rounded up to
    :data:`CHANNEL_BLOCK` (the input side only from half a block up; depthwise filters on their one
    channel side; other grouped filters as they are); 0 for any other operator."""
    if node.op_type == "Conv":  # (O, I / group, kh, kw)
        w = _constant_input(node, graph, 1)
        if w is None or len(w.shape) != 4:
            return 0
        cout, cin, taps = w.shape[0], w.shape[1], w.shape[2] * w.shape[3]
        group = node.attrs.get("group", 1)
    elif node.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):  # (O, kh, kw, I) and (1, kh, kw, C)
        w = _constant_input(node, graph, 1)
        if w is None or len(w.shape) != 4:
            return 0
        if node.op_type == "DEPTHWISE_CONV_2D":
            cout, cin, taps, group = w.shape[3], 1, w.shape[1] * w.shape[2], w.shape[3]
        else:
            cout, cin, taps, group = w.shape[0], w.shape[3], w.shape[1] * w.shape[2], 1
    else:
        return 0
    item = DTYPE_BYTES.get(w.dtype, 4)
    if group == 1:
        cin = _round_up(cin) if cin >= CHANNEL_BLOCK // 2 else cin
        return _round_up(cout) * cin * taps * item
    if cin == 1 and group == cout:
        return _round_up(cout) * taps * item
    return w.nbytes


def _mix(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, elementwise on uint64 (arithmetic modulo 2**64)."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


@lru_cache(maxsize=1024)
def _op_label(op_type: str, runs: bool) -> int:
    return zlib.crc32(f"{op_type}{'' if runs else '~'}".encode())


def wl_counts(op_types: Sequence[str], running: Sequence[bool], producers: Sequence[Sequence[int]],
              buckets: int = WL_BUCKETS, iterations: int = WL_ITERATIONS) -> np.ndarray:
    """Hashed Weisfeiler-Lehman subtree counts of a graph given per node (topological order) its op
    type, whether it runs after folding, and the indices of its producers (see the module text).

    A node's next label mixes its label with the sum of its producers' mixed labels (a sum, so the
    producers' order does not matter); round ``r`` counts ``mix(label + r)`` modulo ``buckets``.
    Integer arithmetic only: the same counts in every process, on every machine."""
    labels = np.array([_op_label(op, bool(runs)) for op, runs in zip(op_types, running)], dtype=np.uint64)
    dst = np.fromiter((i for i, preds in enumerate(producers) for _ in preds), dtype=np.intp)
    src = np.fromiter((p for preds in producers for p in preds), dtype=np.intp)
    counts = np.zeros(buckets)
    with np.errstate(over="ignore"):
        for it in range(iterations + 1):
            counts += np.bincount((_mix(labels + np.uint64(it)) % np.uint64(buckets)).astype(np.intp),
                                  minlength=buckets)
            if it < iterations:
                inflow = np.zeros(len(labels), dtype=np.uint64)
                np.add.at(inflow, dst, _mix(labels[src]))
                labels = _mix(labels * np.uint64(0x9E3779B97F4A7C15) + inflow)
    return counts


_CACHE: OrderedDict[str, GraphStats] = OrderedDict()
CACHE_SIZE = 8192


_BY_GRAPH: "weakref.WeakKeyDictionary[Graph, GraphStats]" = weakref.WeakKeyDictionary()


def graph_stats(graph: Graph) -> GraphStats:
    """:func:`compute_stats`, cached per graph object while it lives and, for a graph whose content
    hash is already known (graphs of the store and of the evaluation), per content hash across
    objects (least recently used out past CACHE_SIZE). A graph whose hash nobody asked for is not
    hashed here: hashing costs about as much as the analysis."""
    hit = _BY_GRAPH.get(graph)
    if hit is not None:
        return hit
    key = graph.known_hash
    hit = _CACHE.get(key) if key is not None else None
    if hit is not None:
        _CACHE.move_to_end(key)
        hit._attach(graph)
        _BY_GRAPH[graph] = hit
        return hit
    with fewer_collections():
        stats = compute_stats(graph)
    _BY_GRAPH[graph] = stats
    if key is not None:
        _CACHE[key] = stats
        if len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return stats


def graph_features(graphs: Sequence[Graph]) -> FeatureTable:
    """The feature table of several graphs (rows in the order given)."""
    stats = [graph_stats(g) for g in graphs]
    matrix = np.vstack([s.row for s in stats]) if stats else np.zeros((0, len(COLUMNS)))
    return FeatureTable(COLUMNS, matrix, tuple(s.content_hash for s in stats))
