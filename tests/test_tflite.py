"""TFLite: the writer's files run in LiteRT and compute what the ONNX graph computes;
the front end reads them back with the source graph's MACs and parameters; per-op
cost rules on hand-computed shapes; int8 files; bad files give one-line errors."""

import math
import time

import numpy as np
import onnxruntime as ort
import pytest
import tflite
from onnx import numpy_helper

from perfcast import api
from perfcast.analysis import analyze_graph
from perfcast.errors import ModelLoadError
from perfcast.frontends.onnx_writer import to_onnx
from perfcast.frontends.tflite import graph_from_bytes, load_tflite
from perfcast.frontends.tflite_writer import TOp, TSubgraph, TTensor, serialize, to_tflite
from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph, Node, Tensor
from perfcast.ops import node_cost

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter


# --- networks -------------------------------------------------------------------------------
def mobile_net(batch: int = 2) -> Graph:
    """conv-bn-relu6, depthwise-bn-relu, max pool, pointwise-bn, global pool, linear."""
    b = GraphBuilder("mobile")
    x = b.input((batch, 3, 32, 32))
    x = b.act(b.bn(b.conv(x, 16, 3, stride=2)), "relu6")
    x = b.act(b.bn(b.conv(x, 16, 3, groups=16)), "relu")
    x = b.maxpool(x, 3, 2, 1)
    x = b.bn(b.conv(x, 24, 1))
    b.output(b.linear(b.flatten(b.global_avgpool(x)), 10))
    return b.build()


def residual_net(batch: int = 2) -> Graph:
    """A basic residual block with a projection shortcut, then a concat of two branches."""
    b = GraphBuilder("residual")
    x = b.input((batch, 8, 16, 16))
    x = b.act(b.bn(b.conv(x, 16, 3)), "relu")
    y = b.act(b.bn(b.conv(x, 32, 3, stride=2)), "relu")
    y = b.bn(b.conv(y, 32, 3))
    shortcut = b.bn(b.conv(x, 32, 1, stride=2))
    y = b.act(b.add(y, shortcut), "relu")
    z = b.act(b.bn(b.conv(y, 16, 1)), "relu6")
    y = b.concat([y, z], axis=1)
    b.output(b.linear(b.flatten(b.global_avgpool(b.conv(y, 24, 1, bias=True))), 7))
    return b.build()


def resnet18(batch: int = 1, res: int = 224) -> Graph:
    """torchvision's resnet18 layer by layer (11,689,512 parameters, 1.814 GMACs at 224)."""
    b = GraphBuilder("resnet18")
    x = b.input((batch, 3, res, res))
    x = b.maxpool(b.act(b.bn(b.conv(x, 64, 7, stride=2, pad=3)), "relu"), 3, 2, 1)
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = b.act(b.bn(b.conv(x, cout, 3, stride=stride)), "relu")
            y = b.bn(b.conv(y, cout, 3))
            shortcut = b.bn(b.conv(x, cout, 1, stride=stride)) if stride != 1 or cin != cout else x
            x = b.act(b.add(y, shortcut), "relu")
            cin = cout
    b.output(b.linear(b.flatten(b.global_avgpool(x)), 1000))
    return b.build()


def tiny_transformer(batch: int = 2) -> Graph:
    """Token embedding (Gather), class token (Expand + Concat), position embedding, pre-norm
    attention with a masked (Where) softmax, a GELU MLP, a strided Slice, a Gather of the
    class token and a linear head."""
    b = GraphBuilder("transformer")
    seq, dim = 12, 16
    ids = b.input((batch, seq), "int64", name="ids")
    x = b.op("Gather", [b.const((50, dim), stem="embedding"), ids], {"axis": 0}, [(batch, seq, dim)])
    cls = b.op("Expand", [b.const((1, 1, dim), stem="class_token"), b.ints((batch, 1, dim))], {}, [(batch, 1, dim)])
    x = b.add(b.concat([cls, x], axis=1), b.const((1, seq + 1, dim), stem="position"))
    h = b.layernorm(x)
    q, k, v = (b.linear(h, dim) for _ in range(3))
    scores = b.matmul(q, b.transpose(k, [0, 2, 1]))
    mask = b.const((1, seq + 1, seq + 1), "bool", stem="mask")
    scores = b.op("Where", [mask, b.scalar("fill", -1e9), scores], {})
    x = b.add(x, b.linear(b.matmul(b.softmax(scores), v), dim))
    x = b.add(x, b.linear(b.act(b.linear(b.layernorm(x), 2 * dim), "gelu"), dim))
    x = b.op("Slice", [x, b.ints([0]), b.ints([seq + 1]), b.ints([1]), b.ints([2])], {}, [(batch, 7, dim)])
    first = b.op("Gather", [x, b.const((), "int64", [0], stem="index")], {"axis": 1}, [(batch, dim)])
    b.output(b.linear(b.layernorm(first), 10))
    return b.build()


NETS = {"mobile": mobile_net, "residual": residual_net, "transformer": tiny_transformer}


# --- helpers ---------------------------------------------------------------------------------
def run_litert(data: bytes, x: np.ndarray) -> np.ndarray:
    """Run a written file on ``x`` (NCHW images are fed as NHWC)."""
    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    it.set_tensor(inp["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x))
    it.invoke()
    return it.get_tensor(out["index"])


def example_input(g: Graph, seed: int = 0) -> np.ndarray:
    t = g.tensors[g.inputs[0]]
    rng = np.random.default_rng(seed)
    if t.dtype == "int64":
        return rng.integers(0, 50, t.shape).astype(np.int64)
    return rng.standard_normal(t.shape).astype(np.float32)


def tflite_constants(data: bytes) -> dict[str, np.ndarray]:
    """Float constants of subgraph 0 by tensor name, read with the tflite package."""
    model = tflite.Model.GetRootAsModel(data, 0)
    sg = model.Subgraphs(0)
    out = {}
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        if t.Type() == tflite.TensorType.FLOAT32 and isinstance(raw, np.ndarray) and raw.size:
            out[t.Name().decode()] = np.frombuffer(raw.tobytes(), "<f4").reshape(t.ShapeAsNumpy())
    return out


def onnx_with_weights_of(graph: Graph, data: bytes):
    """The ONNX model of ``graph`` carrying the TFLite file's weights, back in NCHW."""
    consts = tflite_constants(data)
    values: dict[str, np.ndarray] = {}
    for name, t in graph.tensors.items():
        if t.constant and t.dtype == "bool":
            values[name] = np.zeros(t.shape, bool)  # the writer's masks are all false
        elif name in consts and consts[name].shape == t.shape:
            values[name] = consts[name]
    for node in graph.nodes:
        ins = node.inputs
        if node.op_type == "MatMul" and graph.tensors[ins[1]].constant:
            values[ins[1]] = consts[ins[1]].T  # (in, out) written as FULLY_CONNECTED (out, in)
        elif node.op_type == "Conv":
            w = consts[ins[1]]
            depthwise = node.attrs["group"] > 1
            values[ins[1]] = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)
            if len(ins) > 2:
                values[ins[2]] = consts[ins[2]]
        elif node.op_type == "BatchNormalization":
            eps = node.attrs["epsilon"]
            values[ins[1]], values[ins[2]] = consts[f"{ins[1]}/folded"], consts[f"{ins[2]}/folded"]
            values[ins[3]] = np.zeros_like(values[ins[1]])
            values[ins[4]] = np.full_like(values[ins[1]], 1 - eps)
        elif node.op_type == "Gemm":
            values[ins[1]], values[ins[2]] = consts[ins[1]], consts[ins[2]]
        elif node.op_type == "Clip":
            values[ins[1]], values[ins[2]] = np.float32(0), np.float32(6)
    model = to_onnx(graph)
    for init in model.graph.initializer:
        if init.name in values:
            value = values[init.name]
            value = value if value.dtype == bool else np.asarray(value, np.float32)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    return model


def single_cost(graph: Graph, op_type: str):
    (node,) = [n for n in graph.nodes if n.op_type == op_type]
    return node, node_cost(node, graph)


# --- (a) the files are real: LiteRT runs them and agrees with onnxruntime ----------------------
@pytest.mark.parametrize("name", sorted(NETS))
def test_written_file_runs_in_litert_like_onnxruntime(name):
    g = NETS[name]()
    data = to_tflite(g, with_weights=True, seed=3)
    x = example_input(g)
    y = run_litert(data, x)
    assert y.shape == g.tensors[g.outputs[0]].shape
    model = onnx_with_weights_of(g, data).SerializeToString()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    expected = session.run(None, {g.inputs[0]: x})[0]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 0.1  # the comparison is not between two zero tensors


# --- (b) reading the files back: the source graph's MACs and parameters --------------------------
@pytest.mark.parametrize("with_weights", [True, False])
@pytest.mark.parametrize("name", sorted(NETS))
def test_round_trip_keeps_macs_and_params(name, with_weights, tmp_path):
    g = NETS[name]()
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(to_tflite(g, with_weights=with_weights))
    tg = load_tflite(path)
    want, got = analyze_graph(g), analyze_graph(tg)
    assert tg.source_format == "tflite"
    assert (got.macs, got.params) == (want.macs, want.params)
    assert got.unsupported_ops == [] and got.uncosted_nodes == []
    shape = g.tensors[g.inputs[0]].shape
    assert tg.tensors[tg.inputs[0]].shape == ((shape[0], *shape[2:], shape[1]) if len(shape) == 4 else shape)
    assert api.analyze(str(path))["format"] == "tflite"


def test_mobile_net_reads_back_as_tflite_ops_with_options(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(to_tflite(mobile_net(), with_weights=False))
    tg = load_tflite(path)
    assert analyze_graph(tg).op_counts == {
        "ADD": 3, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "MAX_POOL_2D": 1, "MEAN": 1,
        "MUL": 3, "PAD": 1, "PADV2": 1, "RESHAPE": 1,
    }
    conv = next(n for n in tg.nodes if n.op_type == "CONV_2D")
    assert (conv.attrs["stride_h"], conv.attrs["stride_w"], conv.attrs["padding"]) == (2, 2, "VALID")
    assert conv.inputs[2] == ""  # the all-zero bias LiteRT needs is no bias
    dw = next(n for n in tg.nodes if n.op_type == "DEPTHWISE_CONV_2D")
    assert (dw.attrs["padding"], dw.attrs["depth_multiplier"], dw.attrs["dilation_h_factor"]) == ("SAME", 1, 1)
    pool = next(n for n in tg.nodes if n.op_type == "MAX_POOL_2D")
    assert (pool.attrs["filter_height"], pool.attrs["filter_width"], pool.attrs["stride_h"]) == (3, 3, 2)
    assert [n.attrs["fused_activation_function"] for n in tg.nodes if n.op_type == "ADD"] == ["RELU6", "RELU", "NONE"]
    mean = next(n for n in tg.nodes if n.op_type == "MEAN")
    assert mean.attrs["keep_dims"] == 1 and tg.tensors[mean.inputs[1]].value == (1, 2)
    # without weight bytes the filters are still constants
    assert tg.tensors[conv.inputs[1]].constant and tg.tensors[conv.inputs[1]].shape == (16, 3, 3, 3)


def test_batch_size_replaces_the_batch_dimension(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(to_tflite(mobile_net(batch=1), with_weights=False))
    one, four = load_tflite(path), load_tflite(path, batch_size=4)
    assert four.tensors[four.inputs[0]].shape == (4, 32, 32, 3)
    assert four.tensors[four.outputs[0]].shape == (4, 10)
    assert analyze_graph(four).macs == 4 * analyze_graph(one).macs
    assert analyze_graph(four).params == analyze_graph(one).params


def test_resnet18_round_trip_is_fast_and_exact():
    g = resnet18()
    want = analyze_graph(g)
    assert (want.params, want.macs) == (11_689_512, 1_814_073_344)
    start = time.perf_counter()
    tg = graph_from_bytes(to_tflite(g, with_weights=False))
    elapsed = time.perf_counter() - start
    got = analyze_graph(tg)
    assert (got.params, got.macs) == (want.params, want.macs)
    assert elapsed < 1.0
    # the 7x7/2 stem, the 3x3/2 max pool and the 3x3/2 convolutions need explicit pads
    assert got.op_counts["PAD"] == 4 and got.op_counts["PADV2"] == 1 and got.op_counts["CONV_2D"] == 20


# --- (c) per-op MACs on hand-computed shapes ----------------------------------------------------
def test_conv_depthwise_and_fully_connected_macs_by_hand():
    b = GraphBuilder("ops")
    x = b.input((1, 3, 32, 32))
    x = b.conv(x, 16, 3, stride=2)  # -> 16x16x16
    x = b.conv(x, 32, 3, groups=8)  # grouped: 2 input channels per output -> 16x16x32
    x = b.conv(x, 64, 5, groups=32, stride=2)  # depthwise, multiplier 2 -> 8x8x64
    b.output(b.linear(b.flatten(b.global_avgpool(x)), 10))
    g = b.build()
    data = to_tflite(g, with_weights=True)
    assert run_litert(data, np.ones((1, 3, 32, 32), np.float32)).shape == (1, 10)
    tg = graph_from_bytes(data)
    convs = [(n, node_cost(n, tg)) for n in tg.nodes if n.op_type == "CONV_2D"]
    assert [tg.tensors[n.inputs[1]].shape for n, _ in convs] == [(16, 3, 3, 3), (32, 3, 3, 2)]
    assert [c.macs for _, c in convs] == [16 * 16 * 16 * 3 * 3 * 3, 16 * 16 * 32 * 3 * 3 * 2] == [110_592, 147_456]
    assert [c.params for _, c in convs] == [16 * 27, 32 * 18]
    dw, cost = single_cost(tg, "DEPTHWISE_CONV_2D")
    assert tg.tensors[dw.inputs[1]].shape == (1, 5, 5, 64) and dw.attrs["depth_multiplier"] == 2
    assert (cost.macs, cost.params, cost.flops) == (8 * 8 * 64 * 25, 1600, 2 * 102_400)
    _, fc = single_cost(tg, "FULLY_CONNECTED")
    assert (fc.macs, fc.params, fc.flops) == (640, 650, 2 * 640 + 10)
    assert analyze_graph(tg).macs == analyze_graph(g).macs == 110_592 + 147_456 + 102_400 + 640


def tflite_graph(nodes, tensors, inputs, outputs) -> Graph:
    return Graph(nodes, tensors, inputs, outputs, source_format="tflite")


def test_fused_activation_adds_one_flop_per_output():
    t = [Tensor("x", (1, 8, 8, 4)), Tensor("w", (6, 3, 3, 4), constant=True), Tensor("b", (6,), constant=True),
         Tensor("y", (1, 8, 8, 6))]
    plain = Node("c", "CONV_2D", ("x", "w", "b"), ("y",), {"fused_activation_function": "NONE"})
    fused = Node("c", "CONV_2D", ("x", "w", "b"), ("y",), {"fused_activation_function": "RELU6"})
    macs = 8 * 8 * 6 * 9 * 4
    assert node_cost(plain, tflite_graph([plain], t, ["x"], ["y"])).flops == 2 * macs + 384
    assert node_cost(fused, tflite_graph([fused], t, ["x"], ["y"])).flops == 2 * macs + 2 * 384
    assert node_cost(fused, tflite_graph([fused], t, ["x"], ["y"])).params == 6 * 36 + 6


def test_transpose_conv_and_batch_matmul_macs():
    t = [Tensor("shape", (4,), "int32", True, (1, 16, 16, 8)), Tensor("w", (8, 2, 2, 4), constant=True),
         Tensor("x", (1, 8, 8, 4)), Tensor("y", (1, 16, 16, 8))]
    node = Node("t", "TRANSPOSE_CONV", ("shape", "w", "x"), ("y",), {})
    cost = node_cost(node, tflite_graph([node], t, ["x"], ["y"]))
    assert (cost.macs, cost.params) == (8 * 8 * 4 * 2 * 2 * 8, 128)
    t = [Tensor("a", (2, 5, 7)), Tensor("b", (2, 7, 3)), Tensor("c", (2, 5, 3))]
    node = Node("m", "BATCH_MATMUL", ("a", "b"), ("c",), {"adj_x": 0, "adj_y": 0})
    assert node_cost(node, tflite_graph([node], t, ["a", "b"], ["c"])).macs == 2 * 5 * 3 * 7


def lstm_graph(op_type: str) -> Graph:
    """A TFLite LSTM over 5 steps of batch 2: 8 inputs, 16 cells, no peepholes or projection."""
    x_shape = (2, 5, 8) if op_type.startswith("UNIDIRECTIONAL") else (2, 8)
    tensors = [Tensor("x", x_shape)]
    ins = ["x"]
    for k in range(4):
        tensors.append(Tensor(f"wi{k}", (16, 8), constant=True))
    for k in range(4):
        tensors.append(Tensor(f"wr{k}", (16, 16), constant=True))
    ins += [f"wi{k}" for k in range(4)] + [f"wr{k}" for k in range(4)] + ["", "", ""]
    for k in range(4):
        tensors.append(Tensor(f"b{k}", (16,), constant=True))
    ins += [f"b{k}" for k in range(4)] + ["", "", "h", "c"]
    tensors += [Tensor("h", (2, 16), constant=True), Tensor("c", (2, 16), constant=True),
                Tensor("y", (*x_shape[:-1], 16))]
    return tflite_graph([Node("lstm", op_type, tuple(ins), ("y",), {})], tensors, ["x"], ["y"])


def test_lstm_macs_params_and_state_is_not_a_parameter():
    g = lstm_graph("UNIDIRECTIONAL_SEQUENCE_LSTM")
    cost = node_cost(g.nodes[0], g)
    assert cost.macs == 2 * 5 * (4 * 16 * 8 + 4 * 16 * 16)
    assert cost.params == 4 * 128 + 4 * 256 + 4 * 16
    assert "h" not in cost.param_tensors and "c" not in cost.param_tensors
    # the 8 weight matrices are read at each of the 5 steps, everything else once
    once = 4 * (2 * 5 * 8 + 4 * 128 + 4 * 256 + 4 * 16 + 2 * 2 * 16)
    assert cost.bytes_read == once + 4 * 4 * (4 * 128 + 4 * 256)


def test_tflite_lstm_uses_the_tflite_rule_not_the_onnx_one():
    g = lstm_graph("LSTM")  # TFLite's one-step LSTM shares its name with ONNX's LSTM
    cost = node_cost(g.nodes[0], g)
    assert (cost.macs, cost.params) == (2 * (4 * 16 * 8 + 4 * 16 * 16), 1600)
    assert cost.bytes_read == 4 * (2 * 8 + 1600 + 2 * 2 * 16)  # one step: every input read once


def test_pool_mean_quantize_and_elementwise_rules():
    t = [Tensor("x", (1, 8, 8, 4)), Tensor("y", (1, 4, 4, 4)), Tensor("s", (4,), constant=True),
         Tensor("one", (), constant=True), Tensor("z", (1, 8, 8, 4)), Tensor("q", (1, 8, 8, 4), "int8"),
         Tensor("axes", (2,), "int32", True, (1, 2)), Tensor("m", (1, 1, 1, 4))]
    nodes = [
        Node("p", "AVERAGE_POOL_2D", ("x",), ("y",), {"filter_height": 3, "filter_width": 2}),
        Node("mul", "MUL", ("x", "s"), ("z",), {"fused_activation_function": "NONE"}),
        Node("hs", "HARD_SWISH", ("z",), ("hz",)),
        Node("q", "QUANTIZE", ("hz",), ("q",)),
        Node("mean", "MEAN", ("hz", "axes"), ("m",), {"keep_dims": 1}),
        Node("add", "ADD", ("m", "one"), ("o",), {"fused_activation_function": "RELU"}),
    ]
    t += [Tensor("hz", (1, 8, 8, 4)), Tensor("o", (1, 1, 1, 4))]
    g = tflite_graph(nodes, t, ["x"], ["y", "q", "o"])
    costs = {n.name: node_cost(n, g) for n in g.nodes}
    assert costs["p"].flops == 64 * 6
    assert (costs["mul"].flops, costs["mul"].params) == (256, 4)
    assert costs["hs"].flops == 4 * 256
    assert costs["q"].flops == 2 * 256
    assert costs["mean"].flops == 256
    assert (costs["add"].flops, costs["add"].params) == (8, 0)  # a scalar is a literal, not a parameter


# --- hand-made flatbuffers: control flow, custom ops, fp16 weights, dynamic batch ------------------
def control_flow_model() -> bytes:
    """Subgraph 0: a float16 filter dequantized for a convolution whose input has a dynamic
    batch, a WHILE whose cond and body are subgraphs 1 and 2, and a custom op."""
    filt = np.ones((4, 3, 3, 2), np.float16)
    buffers = [b"", filt.tobytes()]
    main = TSubgraph("main", [
        TTensor("x", (1, 8, 8, 2), "float32", signature=(-1, 8, 8, 2)),
        TTensor("w16", (4, 3, 3, 2), "float16", buffer=1),
        TTensor("w", (4, 3, 3, 2), "float32"),
        TTensor("", (4,), "float32"),  # an unnamed bias without bytes
        TTensor("c", (1, 8, 8, 4), "float32", signature=(-1, 8, 8, 4)),
        TTensor("loop", (1, 8, 8, 4), "float32"),
        TTensor("y", (1, 8, 8, 4), "float32"),
    ], [
        TOp("DEQUANTIZE", (1,), (2,)),
        TOp("CONV_2D", (0, 2, 3), (4,), "Conv2DOptions", {"Padding": tflite.Padding.SAME, "StrideW": 1, "StrideH": 1}),
        TOp("WHILE", (4,), (5,), "WhileOptions", {"CondSubgraphIndex": 1, "BodySubgraphIndex": 2}),
        TOp("CUSTOM", (5,), (6,), custom_code="MyPostProcess"),
    ], [0], [6])
    cond = TSubgraph("cond", [TTensor("a", (1, 8, 8, 4), "float32"), TTensor("b", (), "bool")],
                     [TOp("CUSTOM", (0,), (1,), custom_code="Done")], [0], [1])
    body = TSubgraph("body", [TTensor("a", (1, 8, 8, 4), "float32"), TTensor("b", (1, 8, 8, 4), "float32")],
                     [TOp("RELU", (0,), (1,))], [0], [1])
    return serialize([main, cond, body], buffers)


def test_control_flow_custom_ops_and_fp16_weights(tmp_path):
    path = tmp_path / "cf.tflite"
    path.write_bytes(control_flow_model())
    g = load_tflite(path, batch_size=3)
    assert [n.op_type for n in g.nodes] == ["DEQUANTIZE", "CONV_2D", "WHILE", "MyPostProcess"]
    assert g.nodes[3].domain == "custom"
    assert (g.nodes[2].attrs["cond_subgraph_index"], g.nodes[2].attrs["body_subgraph_index"]) == (1, 2)
    a = analyze_graph(g)
    assert a.unsupported_ops == ["MyPostProcess", "WHILE"]  # the loop body (RELU) is not in the graph
    conv = g.nodes[1]
    assert g.tensors["c"].shape == (3, 8, 8, 4) and g.tensors["x"].shape == (3, 8, 8, 2)
    # the dequantized filter and the bias without bytes are weights; the fp16 copy is no parameter
    assert g.tensors["w"].constant and g.tensors[conv.inputs[2]].constant and conv.inputs[2] == "tensor_3"
    assert a.macs == 3 * 8 * 8 * 4 * 9 * 2
    assert a.params == 72 + 4
    assert g.tensors["w16"].dtype == "float16" and a.weight_bytes == 72 * 2 + 72 * 4 + 16


# --- (d) int8 files ----------------------------------------------------------------------------
def test_int8_file_loads_with_int8_tensors_and_quarter_weight_bytes(tmp_path):
    g = mobile_net()
    fp32, int8 = to_tflite(g, seed=1), to_tflite(g, seed=1, dtype="int8")
    path = tmp_path / "q.tflite"
    path.write_bytes(int8)
    qg, fg = load_tflite(path), graph_from_bytes(fp32)
    assert qg.tensors[qg.inputs[0]].dtype == "float32" and qg.tensors[qg.outputs[0]].dtype == "float32"
    counts = analyze_graph(qg).op_counts
    assert counts["QUANTIZE"] == 1 and counts["DEQUANTIZE"] == 1
    conv = next(n for n in qg.nodes if n.op_type == "CONV_2D")
    assert {qg.tensors[name].dtype for name in (conv.inputs[0], conv.inputs[1], conv.outputs[0])} == {"int8"}

    def const_bytes(graph, dtype):
        return sum(t.nbytes for t in graph.tensors.values() if t.constant and t.dtype == dtype)

    # weights take a quarter of their fp32 bytes; biases (3 convolutions, the linear layer) become int32
    assert const_bytes(qg, "float32") == 0
    int32_biases = const_bytes(qg, "int32") - const_bytes(fg, "int32")
    assert int32_biases == 4 * (16 + 16 + 24 + 10)
    assert const_bytes(fg, "float32") == 4 * const_bytes(qg, "int8") + int32_biases
    assert const_bytes(qg, "int8") > 16 * 27 + 16 * 9 + 24 * 16 + 240


@pytest.mark.parametrize("name", sorted(NETS))
def test_int8_files_run_in_litert_close_to_fp32(name):
    g = NETS[name]()
    fp32, int8 = to_tflite(g, seed=1), to_tflite(g, seed=1, dtype="int8")
    want, got = analyze_graph(g), analyze_graph(graph_from_bytes(int8))
    assert (got.macs, got.params) == (want.macs, want.params)
    x = example_input(g)
    yq, yf = run_litert(int8, x), run_litert(fp32, x)
    assert yq.shape == yf.shape == g.tensors[g.outputs[0]].shape
    assert np.corrcoef(yq.ravel(), yf.ravel())[0, 1] > 0.95  # the same network, quantised


# --- writer limits -------------------------------------------------------------------------------
def test_writer_names_the_op_it_cannot_write():
    b = GraphBuilder("gn")
    b.output(b.groupnorm(b.input((1, 4, 8, 8)), 2))
    with pytest.raises(ValueError, match="GroupNormalization"):
        to_tflite(b.build())
    with pytest.raises(ValueError, match="dtype"):
        to_tflite(mobile_net(), dtype="int4")


# --- (e) bad input ------------------------------------------------------------------------------
def bad_files(tmp_path) -> dict[str, bytes]:
    good = to_tflite(mobile_net(), with_weights=True)
    rng = np.random.default_rng(7)
    garbage = bytearray(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    garbage[4:8] = b"TFL3"
    return {
        "random.tflite": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty.tflite": b"",
        "truncated.tflite": good[: len(good) // 2],
        "header_only.tflite": good[:16],
        "garbage_with_identifier.tflite": bytes(garbage),
    }


def test_bad_files_raise_model_load_error(tmp_path):
    for name, data in bad_files(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ModelLoadError) as info:
            load_tflite(path)
        assert info.value.subject == str(path)
        assert "\n" not in str(info.value)
    with pytest.raises(ModelLoadError, match="no such file"):
        load_tflite(tmp_path / "missing.tflite")


def test_every_truncation_of_a_small_file_is_a_clean_error():
    good = to_tflite(mobile_net(), with_weights=False)
    ends = set(range(0, len(good), max(len(good) // 97, 1))) | set(range(len(good) - 16, len(good)))
    for end in sorted(ends):
        with pytest.raises(ModelLoadError, match="not a TFLite flatbuffer"):
            graph_from_bytes(good[:end])


def test_cli_reports_bad_tflite_in_one_line(tmp_path, run_cli):
    for name, data in bad_files(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(data)
        code, out, err = run_cli("analyze", str(path))
        assert code == 2, (name, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert str(path) in err


def test_cli_analyzes_a_written_file(tmp_path, run_cli):
    import json

    path = tmp_path / "mobile.tflite"
    path.write_bytes(to_tflite(mobile_net(batch=1), with_weights=False))
    code, out, err = run_cli("analyze", str(path), "--json", "--batch-size", "3")
    assert code == 0, err
    report = json.loads(out)
    want = analyze_graph(mobile_net(batch=3))
    assert (report["format"], report["macs"], report["params"]) == ("tflite", want.macs, want.params)
    assert math.isclose(report["macs"], 3 * analyze_graph(mobile_net(batch=1)).macs)
