"""Which operators a folding runtime still runs: constant folding and dead-code elimination.

Graph optimisers of inference runtimes (TFLite's converter, onnxruntime's optimiser, TensorRT's
builder) evaluate at build time every operator whose inputs are all known, and drop every
operator whose result cannot reach an output. How far a runtime goes differs, so the graph IR
keeps every operator of the model and this pass gives two readings of what survives: the
*folded* graph (:func:`folded_graph`, the strongest common form: constants and zeros propagate
through the operators) and the *pruned* graph (:func:`pruned_graph`, dead-code elimination
alone: a product with a literal zero needs nothing, but operators that read that zero still run,
as on a runtime that drops unused layers and evaluates nothing at build time). Predictors get the
full and the surviving costs (:data:`READINGS`) and learn from the measurements which one a
device behaves like.

The rules, applied in topological order:

- a tensor is *constant* when it is an initializer or literal, or every input of its producer
  is constant; shape queries (``Shape``, ``Size``) of a tensor of known shape are constant;
- a tensor is *zero* when its producer multiplies by a literal zero (``Mul``), subtracts a tensor
  from itself (``Sub(x, x)``), or is a zero-preserving operator (additions, ReLU, pooling,
  layout changes, a convolution or matrix product without bias) whose data inputs are all zero;
  a zero tensor is constant, whatever its other operands are;
- an operator *runs* when its outputs are not all constant and one of them is a graph output
  or an input of an operator that runs.

Networks whose output is cut off from their input (every path multiplies by zero) run nothing.

Pruning keeps the first and last rules only: a tensor is *free* when it is an initializer or
literal, is computed from free tensors alone by operators that read no network input (weight
preprocessing), or is a product with a literal zero (``Mul``) or ``Sub(x, x)``; an operator runs
when its outputs are not all free and one of them is a graph output or an input of an operator
that runs. A NAS-Bench-201 cell whose output node reads a node only through a ``none`` edge then
drops that node's operators, while the convolutions of a branch fed by a zero still run.
"""

from __future__ import annotations

import weakref

from perfcast.ir.graph import Graph, Node, Tensor

# Zero when every input is zero.
SUMS = frozenset({"Add", "Sum", "Sub", "Concat", "Max", "Min", "ADD", "SUB", "CONCATENATION", "MAXIMUM", "MINIMUM"})
# Zero when the first (data) input is zero; other inputs are shapes, axes, pads or bounds.
ZERO_PRESERVING = frozenset({
    "Relu", "LeakyRelu", "Identity", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Split", "Pad", "Resize", "Upsample",
    "Tile", "Expand", "Neg", "Abs", "Clip", "Tanh", "Sin", "Sqrt", "ReduceMean", "ReduceSum", "ReduceMax",
    "DepthToSpace", "SpaceToDepth", "Dropout", "Cast",
    "RELU", "RELU6", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "TRANSPOSE", "SQUEEZE", "PAD", "MEAN", "TANH",
})
# Products with weights: zero data in gives zero out unless a bias is added.
BIASED_PRODUCTS = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2,
                   "FULLY_CONNECTED": 2, "MatMul": None, "BATCH_MATMUL": None}
MULTIPLIES = frozenset({"Mul", "MUL"})
SHAPE_QUERIES = frozenset({"Shape", "Size", "SHAPE"})


def _is_literal_zero(graph: Graph, name: str) -> bool:
    t = graph.tensors.get(name)
    return t is not None and t.value is not None and len(t.value) > 0 and all(v == 0 for v in t.value)


def _multiplies_by_zero(node: Node, graph: Graph) -> bool:
    """A product with a literal zero, or ``Sub(x, x)``: zero whatever the data."""
    ins = [i for i in node.inputs if i]
    if node.op_type in MULTIPLIES:
        return any(_is_literal_zero(graph, i) for i in ins)
    return node.op_type in ("Sub", "SUB") and len(ins) == 2 and ins[0] == ins[1]


def _produces_zero(node: Node, graph: Graph, zero: set[str]) -> bool:
    if _multiplies_by_zero(node, graph):
        return True
    ins = [i for i in node.inputs if i]
    op = node.op_type
    if op in MULTIPLIES:
        return any(i in zero for i in ins)
    if op in BIASED_PRODUCTS:
        bias_at = BIASED_PRODUCTS[op]
        has_bias = bias_at is not None and len(node.inputs) > bias_at and bool(node.inputs[bias_at])
        return not has_bias and bool(ins) and ins[0] in zero
    if op in SUMS:
        return bool(ins) and all(i in zero or _is_literal_zero(graph, i) for i in ins)
    if op in ZERO_PRESERVING:
        return bool(ins) and ins[0] in zero
    return False


def _folded_constants(graph: Graph) -> set[str]:
    constant: set[str] = {name for name, t in graph.tensors.items() if t.constant}
    zero: set[str] = set()
    for node in graph.nodes:
        ins = [i for i in node.inputs if i]
        if _produces_zero(node, graph, zero):
            zero.update(node.outputs)
            constant.update(node.outputs)
        elif all(i in constant for i in ins) or (
                node.op_type in SHAPE_QUERIES and ins and graph.tensors[ins[0]].known):
            constant.update(node.outputs)
    return constant


def _free_tensors(graph: Graph) -> set[str]:
    """What pruning needs no operator for: weights, what is computed from weights alone, and
    products with a literal zero (which do not propagate)."""
    weights: set[str] = {name for name, t in graph.tensors.items() if t.constant}
    zeros: set[str] = set()
    for node in graph.nodes:
        if _multiplies_by_zero(node, graph):
            zeros.update(node.outputs)
        elif all(i in weights for i in node.inputs if i):
            weights.update(node.outputs)
    return weights | zeros


def running_nodes(graph: Graph, fold_constants: bool = True) -> list[bool]:
    """One flag per node of ``graph.nodes``: True when the node still runs after folding (after
    dead-code elimination alone with ``fold_constants=False``)."""
    constant = _folded_constants(graph) if fold_constants else _free_tensors(graph)
    needed: set[str] = {o for o in graph.outputs if o not in constant}
    runs = [False] * len(graph.nodes)
    for k in range(len(graph.nodes) - 1, -1, -1):
        node = graph.nodes[k]
        if any(o in needed for o in node.outputs):
            runs[k] = True
            needed.update(i for i in node.inputs if i and i not in constant)
    return runs


READINGS = ("as given", "folded", "pruned")  # what a device runs; a model stores the index

_KEPT: dict[bool, "weakref.WeakKeyDictionary[Graph, Graph]"] = {
    True: weakref.WeakKeyDictionary(), False: weakref.WeakKeyDictionary()}


def folded_graph(graph: Graph) -> Graph:
    """``graph`` as a folding runtime runs it: only the nodes :func:`running_nodes` keeps, and
    every tensor they read from a dropped node turned into a constant (of the same shape). The
    graph itself when every node runs. Name, format, inputs and outputs are kept; a network that
    runs nothing is a graph without nodes whose outputs are constants. Cached per graph object."""
    return _kept_graph(graph, True)


def pruned_graph(graph: Graph) -> Graph:
    """``graph`` after dead-code elimination alone (``running_nodes(graph, fold_constants=False)``),
    built as :func:`folded_graph` builds the folded one. Cached per graph object."""
    return _kept_graph(graph, False)


def read_graph(graph: Graph, reading: int) -> Graph:
    """``graph`` as given (reading 0), folded (1) or pruned (2): the index in :data:`READINGS`."""
    if reading == 0:
        return graph
    if reading not in (1, 2):
        raise ValueError(f"reading {reading!r} is not one of 0, 1, 2")
    return _kept_graph(graph, reading == 1)


def _kept_graph(graph: Graph, fold_constants: bool) -> Graph:
    cache = _KEPT[fold_constants]
    hit = cache.get(graph)
    if hit is not None:
        return hit
    runs = running_nodes(graph, fold_constants)
    if all(runs):
        cache[graph] = graph
        return graph
    kept = [n for n, r in zip(graph.nodes, runs) if r]
    made = {o for n in kept for o in n.outputs if o}
    tensors = dict(graph.tensors)
    for name in {i for n in kept for i in n.inputs if i} | set(graph.outputs):
        t = tensors.get(name)
        if name not in made and name not in graph.inputs and t is not None and not t.constant:
            tensors[name] = Tensor.make(t.name, t.shape, t.dtype, True, t.value)
    used = made | set(graph.inputs) | set(graph.outputs) | {i for n in kept for i in n.inputs if i}
    out = Graph(kept, {k: v for k, v in tensors.items() if k in used}, graph.inputs, graph.outputs,
                name=graph.name, source_format=graph.source_format)
    cache[graph] = out
    return out
