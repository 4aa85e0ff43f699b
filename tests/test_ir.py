"""The graph IR: topological order, validation, content hash, JSON round trip."""

import gc
import json

import pytest

from perfcast.errors import GraphError, ModelLoadError
from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph, Node, Tensor, fewer_collections, float32
from perfcast.ir.serialize import SCHEMA_VERSION, dumps, graph_to_dict, loads


def small_net(width=8, name="net") -> Graph:
    b = GraphBuilder(name)
    x = b.input((1, 3, 16, 16))
    y = b.act(b.bn(b.conv(x, width, 3)), "relu")
    z = b.conv(y, width, 3, groups=width)
    y = b.add(y, z)
    y = b.flatten(b.global_avgpool(y))
    b.output(b.linear(y, 10))
    return b.build()


def test_nodes_are_sorted_topologically_whatever_the_input_order():
    t = {n: Tensor(n, (1, 4)) for n in "abcd"}
    nodes = [Node("n3", "Add", ("b", "c"), ("d",)), Node("n1", "Relu", ("a",), ("b",)), Node("n2", "Neg", ("b",), ("c",))]
    g = Graph(nodes, t, ["a"], ["d"])
    assert [n.name for n in g.nodes] == ["n1", "n2", "n3"]


def test_cycle_and_dangling_input_are_errors():
    t = {n: Tensor(n, (1, 4)) for n in "abc"}
    with pytest.raises(GraphError, match="cycle"):
        Graph([Node("p", "Relu", ("c",), ("b",)), Node("q", "Relu", ("b",), ("c",))], t, ["a"], ["c"])
    with pytest.raises(GraphError, match="'zz'"):
        Graph([Node("p", "Relu", ("zz",), ("b",))], t, ["a"], ["b"])
    with pytest.raises(GraphError, match="two nodes"):
        Graph([Node("p", "Relu", ("a",), ("b",)), Node("q", "Neg", ("a",), ("b",))], t, ["a"], ["b"])


def test_hash_ignores_names_and_weights_but_not_architecture():
    g1, g2 = small_net(name="one"), small_net(name="two")
    assert g1.content_hash == g2.content_hash
    # renaming every tensor and node keeps the hash
    rename = {name: f"renamed_{i}" for i, name in enumerate(g1.tensors)}
    nodes = [Node("x" + n.name, n.op_type, tuple(rename.get(i, i) for i in n.inputs),
                  tuple(rename[o] for o in n.outputs), n.attrs) for n in g1.nodes]
    tensors = {rename[k]: Tensor(rename[k], t.shape, t.dtype, t.constant, t.value) for k, t in g1.tensors.items()}
    g3 = Graph(nodes, tensors, [rename[i] for i in g1.inputs], [rename[o] for o in g1.outputs])
    assert g3.content_hash == g1.content_hash
    assert small_net(width=16).content_hash != g1.content_hash


def test_hash_is_the_same_after_onnx_round_trip_with_random_weights():
    from perfcast.frontends.onnx import model_to_graph
    from perfcast.frontends.onnx_writer import to_onnx

    g = small_net()
    assert model_to_graph(to_onnx(g, seed=1)).content_hash == g.content_hash
    assert model_to_graph(to_onnx(g, seed=2)).content_hash == g.content_hash


def test_json_round_trip_keeps_everything():
    g = small_net()
    text = dumps(g)
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION
    g2 = loads(text)
    assert graph_to_dict(g2) == graph_to_dict(g)
    assert g2.content_hash == g.content_hash
    assert g2.nodes[0].attrs == g.nodes[0].attrs


def test_json_errors_name_the_problem():
    with pytest.raises(ModelLoadError, match="schema version"):
        loads('{"schema_version": 99}')
    with pytest.raises(ModelLoadError, match="not JSON"):
        loads("{nope")
    with pytest.raises(ModelLoadError, match="malformed"):
        loads(json.dumps({"schema_version": SCHEMA_VERSION, "nodes": []}))


def test_tensor_bytes_and_unknown_shapes():
    assert Tensor("a", (2, 3), "float16").nbytes == 12
    assert Tensor("a", (2, 3), "int8").nbytes == 6
    assert not Tensor("a", (2, -1)).known
    with pytest.raises(ValueError):
        Tensor("a", None).numel


def test_tensor_sizes_are_computed_once_and_kept():
    t = Tensor.make("a", (4, 5), "float16")
    assert "nbytes" not in vars(t)
    assert (t.known, t.numel, t.nbytes) == (True, 20, 40)
    assert vars(t)["nbytes"] == 40 and vars(t)["numel"] == 20
    assert Tensor("b", (3, -1)).known is False


def test_fewer_collections_raises_the_threshold_only_inside_the_block():
    before = gc.get_threshold()
    with fewer_collections(50_000):
        assert gc.get_threshold() == (max(50_000, before[0]), *before[1:])
        with fewer_collections(20_000):  # nested: never lowers what the outer block set
            assert gc.get_threshold()[0] == max(50_000, before[0])
        assert gc.get_threshold()[0] == max(50_000, before[0])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError):
        with fewer_collections():
            raise RuntimeError("boom")
    assert gc.get_threshold() == before


def test_literal_scalars_keep_their_values_through_onnx():
    """Clip bounds and scales are part of the architecture: written as given, read back equal."""
    import numpy as np
    import onnxruntime as ort

    from perfcast.frontends.onnx import model_to_graph
    from perfcast.frontends.onnx_writer import to_onnx

    b = GraphBuilder("relu6")
    x = b.input((1, 4, 8, 8))
    y = b.mul(b.act(x, "relu6"), b.scalar("scale", 0.1))
    b.output(y)
    g = b.build()
    model = to_onnx(g)
    back = model_to_graph(model)
    assert back.content_hash == g.content_hash
    assert sorted(t.value for t in back.tensors.values() if t.constant) == [(0.0,), (float32(0.1),), (6.0,)]
    out = ort.InferenceSession(model.SerializeToString()).run(None, {"input": np.full((1, 4, 8, 8), 100, np.float32)})[0]
    assert np.allclose(out, 0.6)
    other = GraphBuilder("relu6")
    x = other.input((1, 4, 8, 8))
    other.output(other.mul(other.act(x, "relu6"), other.scalar("scale", 0.2)))
    assert other.build().content_hash != g.content_hash
