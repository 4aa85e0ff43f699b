"""Graph totals and peak activation memory."""

from perfcast.analysis import activation_peak_bytes, analyze_graph
from perfcast.ir.graph import Graph, Node, Tensor


def chain(sizes):
    """x0 -> Relu -> x1 -> Relu -> ... with tensor i of sizes[i] float32 elements."""
    t = {f"x{i}": Tensor(f"x{i}", (s,)) for i, s in enumerate(sizes)}
    nodes = [Node(f"n{i}", "Relu", (f"x{i}",), (f"x{i + 1}",)) for i in range(len(sizes) - 1)]
    return Graph(nodes, t, ["x0"], [f"x{len(sizes) - 1}"])


def test_chain_peak_is_largest_adjacent_pair():
    g = chain([10, 100, 5, 1000, 1])
    # at each step input and output are live together; the input dies after its last reader
    assert activation_peak_bytes(g) == 4 * (5 + 1000)


def test_skip_connection_keeps_tensor_alive():
    t = {n: Tensor(n, (s,)) for n, s in [("a", 100), ("b", 10), ("c", 10), ("d", 100)]}
    nodes = [
        Node("1", "Relu", ("a",), ("b",)),
        Node("2", "Relu", ("b",), ("c",)),
        Node("3", "Add", ("a", "c"), ("d",)),  # a stays live until here
    ]
    g = Graph(nodes, t, ["a"], ["d"])
    assert activation_peak_bytes(g) == 4 * (100 + 10 + 100)


def test_constants_are_weights_not_activations():
    t = {"x": Tensor("x", (1, 8)), "w": Tensor("w", (8, 4), constant=True), "y": Tensor("y", (1, 4))}
    g = Graph([Node("mm", "MatMul", ("x", "w"), ("y",))], t, ["x"], ["y"])
    a = analyze_graph(g)
    assert a.activation_peak_bytes == 4 * (8 + 4)
    assert a.weight_bytes == 4 * 32
    assert a.params == 32 and a.macs == 32


def test_shared_weights_are_counted_once():
    t = {"x": Tensor("x", (1, 8)), "w": Tensor("w", (8, 8), constant=True), "y": Tensor("y", (1, 8)), "z": Tensor("z", (1, 8))}
    nodes = [Node("a", "MatMul", ("x", "w"), ("y",)), Node("b", "MatMul", ("y", "w"), ("z",))]
    a = analyze_graph(Graph(nodes, t, ["x"], ["z"]))
    assert a.params == 64
    assert a.macs == 128
    assert a.by_op_type["MatMul"].count == 2
