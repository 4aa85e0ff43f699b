"""Exact costs of single ONNX operators, on tiny graphs made with onnx.helper."""

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perfcast.analysis import analyze_graph
from perfcast.frontends.onnx import model_to_graph

F = TensorProto.FLOAT


def one_op(op, inputs, output_shape=None, inits=(), attrs=None, n_out=1, opset=20, out_type=F):
    """A model with one node. ``inputs``: list of (name, shape) graph inputs; ``inits``:
    list of (name, array) initializers."""
    node = helper.make_node(op, [n for n, _ in inputs] + [n for n, _ in inits][: 99], [f"y{i}" for i in range(n_out)], **(attrs or {}))
    # keep the node's input order: graph inputs first, then initializers, unless names say otherwise
    g = helper.make_graph(
        [node], "t",
        [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
        [helper.make_tensor_value_info(f"y{i}", out_type, None) for i in range(n_out)],
        initializer=[numpy_helper.from_array(np.asarray(a, dtype=np.float32 if np.asarray(a).dtype.kind == "f" else np.asarray(a).dtype), n) for n, a in inits],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return analyze_graph(model_to_graph(model))


def node_model(nodes, inputs, inits, outputs, opset=20):
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in inits],
    )
    return analyze_graph(model_to_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])))


def w(*shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def test_conv_macs_params_bytes():
    a = one_op("Conv", [("x", [1, 3, 32, 32])], inits=[("w", w(16, 3, 3, 3)), ("b", w(16))],
               attrs={"pads": [1, 1, 1, 1], "strides": [2, 2]})
    out = 1 * 16 * 16 * 16
    assert a.macs == out * 3 * 3 * 3
    assert a.flops == 2 * out * 27 + out
    assert a.params == 16 * 27 + 16
    cost = a.node_costs[0]
    assert cost.bytes_read == 4 * (3 * 32 * 32 + 16 * 27 + 16)
    assert cost.bytes_written == 4 * out


def test_grouped_and_depthwise_conv():
    a = one_op("Conv", [("x", [2, 32, 14, 14])], inits=[("w", w(32, 1, 5, 5))],
               attrs={"pads": [2, 2, 2, 2], "group": 32})
    assert a.macs == 2 * 32 * 14 * 14 * 25
    assert a.params == 32 * 25
    a = one_op("Conv", [("x", [1, 8, 10, 10])], inits=[("w", w(16, 4, 1, 1))], attrs={"group": 2})
    assert a.macs == 16 * 100 * 4


def test_conv1d_and_conv3d():
    a = one_op("Conv", [("x", [1, 4, 100])], inits=[("w", w(8, 4, 3))])
    assert a.macs == 8 * 98 * 4 * 3
    a = one_op("Conv", [("x", [1, 2, 8, 8, 8])], inits=[("w", w(4, 2, 3, 3, 3))])
    assert a.macs == 4 * 6 * 6 * 6 * 2 * 27


def test_conv_transpose():
    a = one_op("ConvTranspose", [("x", [1, 8, 10, 10])], inits=[("w", w(8, 4, 2, 2)), ("b", w(4))],
               attrs={"strides": [2, 2]})
    # every input element is multiplied into a 2x2 patch of each of 4 output channels
    assert a.macs == 8 * 100 * 4 * 4
    assert a.params == 8 * 4 * 4 + 4


def test_gemm_and_transposes():
    a = one_op("Gemm", [("a", [4, 64])], inits=[("b", w(10, 64)), ("c", w(10))], attrs={"transB": 1})
    assert a.macs == 4 * 10 * 64
    assert a.flops == 2 * 4 * 10 * 64 + 40
    assert a.params == 650
    a = one_op("Gemm", [("a", [64, 4])], inits=[("b", w(64, 10))], attrs={"transA": 1})
    assert a.macs == 4 * 10 * 64
    assert a.params == 640


def test_matmul_batched_broadcast_and_vector():
    a = node_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", [2, 3, 5, 7]), ("b", [7, 11])], [], ["y"])
    assert a.macs == 2 * 3 * 5 * 11 * 7
    assert a.params == 0  # both operands are activations... b is an input here
    a = node_model([helper.make_node("MatMul", ["a", "w"], ["y"])], [("a", [5, 7])], [("w", w(7, 11))], ["y"])
    assert a.params == 77
    a = node_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", [7]), ("b", [7, 3])], [], ["y"])
    assert a.macs == 21


def test_einsum():
    a = node_model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")],
                   [("a", [2, 3, 4]), ("b", [2, 4, 5])], [], ["y"])
    assert a.macs == 2 * 3 * 4 * 5
    a = node_model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="...ij,...jk->...ik")],
                   [("a", [6, 3, 4]), ("b", [6, 4, 5])], [], ["y"])
    assert a.macs == 6 * 3 * 4 * 5


def test_attention_chain_matmul_softmax():
    b, h, s, d = 1, 4, 16, 8
    nodes = [
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    a = node_model(nodes, [("q", [b, h, s, d]), ("kt", [b, h, d, s]), ("v", [b, h, s, d])], [], ["y"])
    assert a.macs == 2 * b * h * s * s * d
    assert a.by_op_type["Softmax"].flops == 3 * b * h * s * s


def test_attention_op_opset23():
    a = node_model([helper.make_node("Attention", ["q", "k", "v"], ["y"])],
                   [("q", [1, 2, 10, 8]), ("k", [1, 2, 12, 8]), ("v", [1, 2, 12, 8])], [], ["y"], opset=23)
    assert a.macs == 1 * 2 * 10 * 12 * (8 + 8)


def test_batchnorm_params_exclude_running_stats():
    a = one_op("BatchNormalization", [("x", [1, 16, 8, 8])],
               inits=[("s", w(16)), ("b", w(16)), ("m", w(16)), ("v", w(16))])
    assert a.params == 32
    assert a.macs == 0
    assert a.flops == 2 * 16 * 64
    assert a.weight_bytes == 4 * 64


@pytest.mark.parametrize("op,inits,attrs", [
    ("LayerNormalization", [("s", w(32)), ("b", w(32))], {"axis": -1}),
    ("GroupNormalization", [("s", w(16)), ("b", w(16))], {"num_groups": 4}),
    ("InstanceNormalization", [("s", w(16)), ("b", w(16))], {}),
])
def test_normalisations(op, inits, attrs):
    shape = [2, 16, 32] if op != "LayerNormalization" else [2, 16, 32]
    a = one_op(op, [("x", shape)], inits=inits, attrs=attrs, opset=21)
    assert a.params == sum(v.size for _, v in inits)
    assert a.flops == 5 * math.prod(shape)
    assert not a.unsupported_ops and not a.uncosted_nodes


def test_pooling():
    a = one_op("MaxPool", [("x", [1, 8, 32, 32])], attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    assert a.flops == 8 * 16 * 16 * 9 and a.macs == 0
    a = one_op("AveragePool", [("x", [1, 8, 32, 32])], attrs={"kernel_shape": [2, 2], "strides": [2, 2]})
    assert a.flops == 8 * 16 * 16 * 4
    a = one_op("GlobalAveragePool", [("x", [1, 8, 7, 7])])
    assert a.flops == 8 * 49
    a = one_op("GlobalMaxPool", [("x", [1, 8, 7, 7])])
    assert a.flops == 8 * 49


def test_resize_modes():
    scales = ("sc", np.array([1, 1, 2, 2], np.float32))
    a = one_op("Resize", [("x", [1, 4, 8, 8])], inits=[("roi", np.zeros(0, np.float32)), scales], attrs={"mode": "nearest"})
    assert a.flops == 0 and a.params == 0
    a = one_op("Resize", [("x", [1, 4, 8, 8])], inits=[("roi", np.zeros(0, np.float32)), scales], attrs={"mode": "linear"})
    assert a.flops == 2 * 4 * 4 * 16 * 16  # 4 taps per output in 2-D, 2 flops each
    assert a.params == 0  # scales are not parameters


def test_lstm_gru():
    seq, batch, inp, hid = 10, 2, 16, 32
    a = one_op("LSTM", [("x", [seq, batch, inp])],
               inits=[("W", w(1, 4 * hid, inp)), ("R", w(1, 4 * hid, hid)), ("B", w(1, 8 * hid))],
               attrs={"hidden_size": hid}, n_out=1)
    assert a.macs == seq * batch * 4 * hid * (inp + hid)
    # torch.nn.LSTM(16, 32) has 4*32*(16+32) + 8*32 parameters
    assert a.params == 4 * 32 * (16 + 32) + 8 * 32
    a = one_op("GRU", [("x", [seq, batch, inp])],
               inits=[("W", w(2, 3 * hid, inp)), ("R", w(2, 3 * hid, hid)), ("B", w(2, 6 * hid))],
               attrs={"hidden_size": hid, "direction": "bidirectional"})
    assert a.macs == 2 * seq * batch * 3 * hid * (inp + hid)


@pytest.mark.parametrize("op,gates,seq", [("LSTM", 4, 10), ("GRU", 3, 7), ("RNN", 1, 1)])
def test_recurrent_weights_are_read_once_per_step(op, gates, seq):
    # x, W and B are read once; R (both directions) once per step: each step multiplies R by
    # the previous step's hidden state
    batch, inp, hid = 2, 16, 32
    a = one_op(op, [("x", [seq, batch, inp])],
               inits=[("W", w(2, gates * hid, inp)), ("R", w(2, gates * hid, hid)), ("B", w(2, 2 * gates * hid))],
               attrs={"hidden_size": hid, "direction": "bidirectional"})
    once = 4 * (seq * batch * inp + 2 * gates * hid * inp + 2 * gates * hid * hid + 2 * 2 * gates * hid)
    assert a.bytes_read == once + (seq - 1) * 4 * 2 * gates * hid * hid


@pytest.mark.parametrize("op,per", [
    ("Relu", 1), ("Sigmoid", 1), ("Tanh", 1), ("Erf", 1), ("Sqrt", 1), ("HardSwish", 4), ("HardSigmoid", 3),
    ("Softmax", 3), ("Gelu", 4), ("Neg", 1), ("Exp", 1),
])
def test_unary_elementwise(op, per):
    a = one_op(op, [("x", [2, 3, 4, 5])], opset=20)
    assert a.flops == per * 120 and a.macs == 0 and a.params == 0


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div", "Pow"])
def test_binary_broadcast_and_learned_constants(op):
    a = node_model([helper.make_node(op, ["x", "c"], ["y"])], [("x", [1, 8, 4, 4])], [("c", w(8, 1, 1))], ["y"])
    assert a.flops == 128
    assert a.params == 8  # a learned per-channel tensor (layer scale, position embedding) is a parameter
    a = node_model([helper.make_node(op, ["x", "c"], ["y"])], [("x", [1, 8, 4, 4])], [("c", np.float32(2.0))], ["y"])
    assert a.params == 0  # a scalar literal is not


def test_clip_and_where_and_variadic():
    a = node_model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("x", [4, 4])],
                   [("lo", np.float32(0)), ("hi", np.float32(6))], ["y"])
    assert a.flops == 16 and a.params == 0
    a = node_model([helper.make_node("Sum", ["a", "b", "c"], ["y"])], [("a", [10]), ("b", [10]), ("c", [10])], [], ["y"])
    assert a.flops == 20


def test_reductions():
    a = node_model([helper.make_node("ReduceMean", ["x", "ax"], ["y"], keepdims=1)], [("x", [2, 8, 4, 4])],
                   [("ax", np.array([2, 3], np.int64))], ["y"])
    assert a.flops == 256
    a = node_model([helper.make_node("ReduceSumSquare", ["x", "ax"], ["y"])], [("x", [2, 8])],
                   [("ax", np.array([1], np.int64))], ["y"])
    assert a.flops == 32


def test_data_movement_has_bytes_but_no_arithmetic():
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["r"]),
        helper.make_node("Concat", ["r", "r"], ["c"], axis=1),
        helper.make_node("Slice", ["c", "st", "en", "ax"], ["s"]),
        helper.make_node("Flatten", ["s"], ["y"], axis=1),
    ]
    a = node_model(nodes, [("x", [1, 4, 8, 8])], [
        ("shape", np.array([1, -1], np.int64)), ("st", np.array([0], np.int64)),
        ("en", np.array([100], np.int64)), ("ax", np.array([1], np.int64))], ["y"])
    assert a.macs == 0 and a.flops == 0 and a.params == 0
    assert not a.unsupported_ops and not a.uncosted_nodes
    transpose = a.node_costs[0]
    assert transpose.bytes_read == transpose.bytes_written == 4 * 256
    concat = a.node_costs[2]
    assert concat.bytes_written == 4 * 512


def test_gather_embedding_is_a_parameter():
    g = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)], "t",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16])],
        [helper.make_tensor_value_info("y", F, None)],
        initializer=[numpy_helper.from_array(w(1000, 64), "table")],
    )
    a = analyze_graph(model_to_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])))
    assert a.params == 64000
    assert a.graph.tensors["y"].shape == (1, 16, 64)


def test_unknown_op_is_reported_never_zero_in_silence():
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("FancyOp", ["r"], ["y"], domain="custom.ops")],
        "t", [helper.make_tensor_value_info("x", F, [1, 4])], [helper.make_tensor_value_info("y", F, None)],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("custom.ops", 1)])
    a = analyze_graph(model_to_graph(m))
    assert a.unsupported_ops == ["FancyOp"]
    assert a.node_costs[1] is None


def test_every_registered_rule_tolerates_its_op_family():
    from perfcast.ops import supported_op_types

    ops = set(supported_op_types())
    for required in ["Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "BatchNormalization",
                     "LayerNormalization", "GroupNormalization", "InstanceNormalization", "MaxPool",
                     "AveragePool", "GlobalAveragePool", "Resize", "Upsample", "LSTM", "GRU", "Relu", "Clip",
                     "Sigmoid", "HardSwish", "HardSigmoid", "Gelu", "Erf", "Tanh", "Softmax", "Add", "Mul",
                     "Div", "Sub", "Pow", "Sqrt", "ReduceMean", "ReduceSum", "Reshape", "Transpose", "Concat",
                     "Split", "Slice", "Gather", "Pad", "Expand", "Squeeze", "Unsqueeze", "Flatten", "Cast",
                     "Shape", "Constant", "QuantizeLinear", "DequantizeLinear"]:
        assert required in ops, required
