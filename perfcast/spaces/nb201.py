"""NAS-Bench-201 networks: ``nb201:<arch_str>?dataset=cifar10|cifar100|ImageNet16-120``.

The network is NAS-Bench-201's inference model (Dong & Yang, ICLR 2020; the
``TinyNetwork`` / ``InferCell`` of its reference code) with C=16 and N=5:

- stem: 3x3 convolution 3->16 (no bias) + BatchNorm;
- three stages of 5 cells at 16, 32 and 64 channels, with a ResNet basic block between
  stages: ReLU-conv3x3 stride 2-BN, ReLU-conv3x3-BN, shortcut AvgPool(2, 2) + conv1x1
  (no bias), added;
- a cell has 4 nodes; node i (1..3) is the sum of one edge from every node j < i; an edge
  is ``none`` (zeros), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3``
  (ReLU-conv-BN, no bias) or ``avg_pool_3x3`` (AvgPool 3x3, stride 1, padding 1,
  padding excluded from the average); node 3 is the cell's output;
- head: BN-ReLU, global average pooling, linear layer.

Input 32x32 with 10 or 100 classes for CIFAR-10/100, 16x16 with 120 classes for
ImageNet16-120. Every BatchNorm is affine: its scale and bias are parameters, so the
parameter counts equal NAS-Bench-201's published ones (on CIFAR-10: 0.073306 M when the
cell has no convolution, 1.531546 M with six 3x3 convolutions). NAS-Bench-201's "FLOPs"
column is ``macs`` plus the classifier's bias additions (one per class).

``none`` edges are computed as NAS-Bench-201's reference code computes them: its ``Zero``
layer returns ``x.mul(0.)``, so a ``none`` edge is a ``Mul`` of its source node by the scalar
literal 0 and enters its node's sum like any other edge. Every layer of the reference
network is therefore in the graph, dead branches included (a node whose outgoing edges are
all ``none`` still runs its convolutions), and the 341 architectures whose output is cut off
from the input (every path contains ``none``) are valid graphs that compute constants.
Whether a runtime folds such zeros away is the runtime's business: measured latencies differ
between runtimes that do (TFLite) and runtimes that do not, and
:func:`perfcast.analysis.liveness` tells the predictors which cost remains after folding.
``skip_connect`` is the identity (no operator) and a node's sum is a chain of ``Add``.
"""

from __future__ import annotations

import os
from functools import lru_cache

from perfcast.errors import SpecError
from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.registry import register_space, reject_unknown
from perfcast.spaces.zoo.cnn import conv_bn_act

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# name -> (input resolution, classes)
DATASETS = {"cifar10": (32, 10), "cifar100": (32, 100), "ImageNet16-120": (16, 120)}
DEFAULT_DATASET = "cifar10"
STEM_CHANNELS = 16
CELLS_PER_STAGE = 5
NODES = 4
SHARED_DATA_FILES = ("hwnasbench_nb201.csv.gz", "help_nasbench201_latency.csv.gz")

# A cell: for each node 1..3, its incoming edges as (op, source node), in string order.
Cell = tuple[tuple[tuple[str, int], ...], ...]


@lru_cache(maxsize=32768)
def parse_arch(arch_str: str) -> Cell:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` -> the edges of nodes 1, 2 and 3.

    Raises :class:`SpecError` naming the first problem found.
    """
    parts = arch_str.split("+")
    if len(parts) != NODES - 1:
        raise SpecError(arch_str, f"an arch string has {NODES - 1} nodes separated by '+', found {len(parts)}")
    cell = []
    for node, part in enumerate(parts, start=1):
        if len(part) < 2 or part[0] != "|" or part[-1] != "|":
            raise SpecError(arch_str, f"node {node} {part!r} must be written |op~j|...| with '|' at both ends")
        edges = part[1:-1].split("|")
        if len(edges) != node:
            raise SpecError(arch_str, f"node {node} needs {node} incoming edge(s), found {len(edges)} in {part!r}")
        cell.append(tuple(_parse_edge(arch_str, node, e) for e in edges))
        sources = sorted(src for _, src in cell[-1])
        if sources != list(range(node)):
            raise SpecError(arch_str, f"node {node} must have one edge from each node 0..{node - 1}, found sources {sources}")
    return tuple(cell)


def _parse_edge(arch_str: str, node: int, edge: str) -> tuple[str, int]:
    op, sep, src = edge.partition("~")
    if not sep:
        raise SpecError(arch_str, f"edge {edge!r} of node {node} is not op~source")
    if op not in OPS:
        raise SpecError(arch_str, f"unknown op {op!r} in node {node} (known: {', '.join(OPS)})")
    if not src.isdigit() or int(src) >= node:
        raise SpecError(arch_str, f"edge {edge!r} of node {node} has source {src!r}; it must be 0..{node - 1}")
    return op, int(src)


def distinct_key(arch_str: str) -> str:
    """The function a cell computes, as NAS-Bench-201 identifies isomorphic cells: an edge
    with ``none`` or fed by a zero node contributes a zero term, ``skip_connect`` passes its
    source through, and the terms of a node are sorted. The 15,625 arch strings give 6,466
    keys; splits and rank metrics over NAS-Bench-201 group strings by this key."""
    nodes = ["0"]
    for edges in parse_arch(arch_str):
        terms = []
        for op, src in edges:
            if op == "none" or nodes[src] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[src])
            else:
                terms.append(f"({nodes[src]})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[-1]


def spec_from_arch(arch_str: str, dataset: str = DEFAULT_DATASET) -> str:
    """The spec string of an arch string on a dataset."""
    if dataset not in DATASETS:
        raise SpecError(dataset, f"unknown dataset (known: {', '.join(DATASETS)})")
    return f"nb201:{arch_str}" + ("" if dataset == DEFAULT_DATASET else f"?dataset={dataset}")


def spec_for_row(source_file: str, row: dict[str, str]) -> str:
    """The spec string of one row of a shared-data CSV with NAS-Bench-201 architectures.

    HW-NAS-Bench rows name their dataset; HELP's rows do not, and get the CIFAR-10 network.
    """
    if os.path.basename(source_file) not in SHARED_DATA_FILES:
        raise ValueError(f"{source_file} holds no NAS-Bench-201 architectures (files: {', '.join(SHARED_DATA_FILES)})")
    return spec_from_arch(row["arch_str"], row.get("dataset") or DEFAULT_DATASET)


def _dataset(options: dict[str, str]) -> str:
    raw = options.get("dataset", DEFAULT_DATASET)
    for name in DATASETS:
        if raw.lower() == name.lower():
            return name
    raise SpecError(f"dataset={raw}", f"unknown dataset (known: {', '.join(DATASETS)})")


@register_space("nb201", "NAS-Bench-201 cell networks, nb201:<arch_str>?dataset=cifar10|cifar100|ImageNet16-120")
def build_nb201(body: str, options: dict[str, str], batch_size: int) -> Graph:
    reject_unknown(options, {"dataset"})
    return nb201_graph(parse_arch(body), _dataset(options), batch_size, name=f"nb201:{body}")


def nb201_graph(cell: Cell, dataset: str = DEFAULT_DATASET, batch_size: int = 1, name: str = "") -> Graph:
    res, classes = DATASETS[dataset]
    b = GraphBuilder(name)
    x = conv_bn_act(b, b.input((batch_size, 3, res, res)), STEM_CHANNELS, 3, act="identity")
    channels = STEM_CHANNELS
    for stage in range(3):
        if stage:
            x = _reduction_block(b, x, 2 * channels)
            channels *= 2
        for _ in range(CELLS_PER_STAGE):
            x = _cell(b, x, cell)
    x = b.act(b.bn(x), "relu")
    y = b.linear(b.flatten(b.global_avgpool(x)), classes)
    b.output(y)
    return b.build()


def _relu_conv_bn(b: GraphBuilder, x: str, cout: int, k: int, stride: int = 1) -> str:
    return b.bn(b.conv(b.act(x, "relu"), cout, k, stride))


def _reduction_block(b: GraphBuilder, x: str, cout: int) -> str:
    """ResNet basic block with stride 2 between stages."""
    main = _relu_conv_bn(b, x, cout, 3, 2)
    main = _relu_conv_bn(b, main, cout, 3)
    shortcut = b.conv(b.avgpool(x, 2, 2), cout, 1)
    return b.add(shortcut, main)


def _edge(b: GraphBuilder, op: str, x: str) -> str:
    if op == "skip_connect":
        return x
    if op == "avg_pool_3x3":
        return b.avgpool(x, 3, 1, pad=1, count_include_pad=False)
    c = b.shape(x)[1]
    return _relu_conv_bn(b, x, c, 1 if op == "nor_conv_1x1" else 3)


def _zeros(b: GraphBuilder, x: str) -> str:
    return b.mul(x, b.scalar("zero", 0.0))


def _sum(b: GraphBuilder, terms: list[str]) -> str:
    out = terms[0]
    for t in terms[1:]:
        out = b.add(out, t)
    return out


def _cell(b: GraphBuilder, x0: str, cell: Cell) -> str:
    """One cell on input ``x0``: node i is the sum of one edge from every node j < i."""
    values = [x0]
    for edges in cell:
        values.append(_sum(b, [_zeros(b, values[j]) if op == "none" else _edge(b, op, values[j])
                               for op, j in edges]))
    return values[-1]
