"""Which operators a folding runtime still runs: constant folding and dead-code elimination.

Graph optimisers of inference runtimes (TFLite's converter, onnxruntime's optimiser, TensorRT's
builder) evaluate at build time every operator whose inputs are all known, and drop every
operator whose result cannot reach an output. How far a runtime goes differs, so the graph IR
keeps every operator of the model and this pass says which of them survive the strongest
common form of folding; predictors get both the full and the surviving cost and learn from the
measurements which one a device behaves like.

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


def _produces_zero(node: Node, graph: Graph, zero: set[str]) -> bool:
    ins = [i for i in node.inputs if i]
    op = node.op_type
    if op in MULTIPLIES:
        return any(i in zero or _is_literal_zero(graph, i) for i in ins)
    if op in ("Sub", "SUB") and len(ins) == 2 and ins[0] == ins[1]:
        return True
    if op in BIASED_PRODUCTS:
        bias_at = BIASED_PRODUCTS[op]
        has_bias = bias_at is not None and len(node.inputs) > bias_at and bool(node.inputs[bias_at])
        return not has_bias and bool(ins) and ins[0] in zero
    if op in SUMS:
        return bool(ins) and all(i in zero or _is_literal_zero(graph, i) for i in ins)
    if op in ZERO_PRESERVING:
        return bool(ins) and ins[0] in zero
    return False


def running_nodes(graph: Graph) -> list[bool]:
    """One flag per node of ``graph.nodes``: True when the node still runs after folding."""
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
    needed: set[str] = {o for o in graph.outputs if o not in constant}
    runs = [False] * len(graph.nodes)
    for k in range(len(graph.nodes) - 1, -1, -1):
        node = graph.nodes[k]
        if any(o in needed for o in node.outputs):
            runs[k] = True
            needed.update(i for i in node.inputs if i and i not in constant)
    return runs


_FOLDED: "weakref.WeakKeyDictionary[Graph, Graph]" = weakref.WeakKeyDictionary()


def folded_graph(graph: Graph) -> Graph:
    """``graph`` as a folding runtime runs it: only the nodes :func:`running_nodes` keeps, and
    every tensor they read from a dropped node turned into a constant (of the same shape). The
    graph itself when every node runs. Name, format, inputs and outputs are kept; a network that
    runs nothing is a graph without nodes whose outputs are constants. Cached per graph object."""
    hit = _FOLDED.get(graph)
    if hit is not None:
        return hit
    runs = running_nodes(graph)
    if all(runs):
        _FOLDED[graph] = graph
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
    _FOLDED[graph] = out
    return out
