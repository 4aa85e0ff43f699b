"""Built-in networks of the profiling protocol.

- The drift *references*, timed next to every model block to measure how fast the
  machine is at that moment, one for each of the two resources a network waits on:
  - the *compute* reference: a small fixed CNN (CIFAR-sized input 1x3x32x32; conv 3x3
    32 -> conv 3x3 stride 2 64 -> conv 3x3 64, ReLU after each, global average pool,
    linear 10), weights from seed 0: 15 M multiply-accumulates on 0.2 MB of weights,
    about 0.15 ms on one core of an AVX-512 server; its data stays in the core's cache;
  - the *memory* reference: four matrix-vector products in a chain (1x1024 input,
    1024x1024 float32 weights each, 16 MB in all): 4 M multiply-accumulates, each weight
    read once per inference, about 0.2 ms. It waits on the shared cache and memory
    bandwidth, which other tenants of a host contend for: on a shared machine networks
    with large weights or activations slowed by 40 % and more within a minute while the
    compute reference did not move, and this one followed them.
- The *trivial* network of the memory baseline: one ReLU on a 1x1 tensor (ONNX), or
  one ADD on a 1x1 tensor (TFLite, for LiteRT).
"""

from __future__ import annotations

from pathlib import Path


def reference_graph():
    from perfcast.ir.builder import GraphBuilder

    b = GraphBuilder("perfcast_reference")
    x = b.input((1, 3, 32, 32))
    x = b.act(b.conv(x, 32, 3, bias=True), "relu")
    x = b.act(b.conv(x, 64, 3, stride=2, bias=True), "relu")
    x = b.act(b.conv(x, 64, 3, bias=True), "relu")
    b.output(b.linear(b.flatten(b.global_avgpool(x)), 10))
    return b.build()


def memory_reference_graph():
    from perfcast.ir.builder import GraphBuilder

    b = GraphBuilder("perfcast_memory_reference")
    x = b.input((1, 1024))
    for _ in range(4):
        x = b.linear(x, 1024)
    b.output(x)
    return b.build()


def trivial_graph():
    from perfcast.ir.builder import GraphBuilder

    b = GraphBuilder("perfcast_trivial")
    b.output(b.act(b.input((1, 1)), "relu"))
    return b.build()


def write_onnx(graph, path: Path) -> Path:
    from perfcast.frontends.onnx_writer import to_onnx

    path.write_bytes(to_onnx(graph, seed=0).SerializeToString())
    return path


def write_reference(directory: Path) -> Path:
    return write_onnx(reference_graph(), Path(directory) / "perfcast_reference.onnx")


def write_memory_reference(directory: Path) -> Path:
    return write_onnx(memory_reference_graph(), Path(directory) / "perfcast_memory_reference.onnx")


def write_trivial(directory: Path, suffix: str = ".onnx") -> Path:
    """The memory-baseline network in the format a runtime reads (``.onnx`` or ``.tflite``)."""
    path = Path(directory) / f"perfcast_trivial{suffix}"
    if suffix == ".tflite":
        path.write_bytes(add_chain_tflite((1, 1), 1))
        return path
    return write_onnx(trivial_graph(), path)


def add_chain_tflite(shape: tuple[int, ...], n_ops: int) -> bytes:
    """A float32 TFLite model: ``n_ops`` ADD operators in a chain, ``t[k+1] = t[k] + t[k]``."""
    import importlib

    import flatbuffers
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.TensorType import TensorType

    # the generated builder functions live in the modules, which the package's classes shadow
    Buffer, Model, Operator, OperatorCode, SubGraph, Tensor = (
        importlib.import_module(f"tflite.{m}") for m in ("Buffer", "Model", "Operator", "OperatorCode", "SubGraph", "Tensor")
    )

    b = flatbuffers.Builder(1024)

    def int_vector(start, values):
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    tensors = []
    for k in range(n_ops + 1):
        name = b.CreateString(f"t{k}")
        shp = int_vector(Tensor.StartShapeVector, list(shape))
        Tensor.Start(b)
        Tensor.AddShape(b, shp)
        Tensor.AddType(b, TensorType.FLOAT32)
        Tensor.AddBuffer(b, 0)
        Tensor.AddName(b, name)
        tensors.append(Tensor.End(b))
    ops = []
    for k in range(n_ops):
        ins = int_vector(Operator.StartInputsVector, [k, k])
        outs = int_vector(Operator.StartOutputsVector, [k + 1])
        Operator.Start(b)
        Operator.AddOpcodeIndex(b, 0)
        Operator.AddInputs(b, ins)
        Operator.AddOutputs(b, outs)
        ops.append(Operator.End(b))

    def table_vector(start, items):
        start(b, len(items))
        for it in reversed(items):
            b.PrependUOffsetTRelative(it)
        return b.EndVector()

    tensor_vec = table_vector(SubGraph.StartTensorsVector, tensors)
    op_vec = table_vector(SubGraph.StartOperatorsVector, ops)
    sg_in = int_vector(SubGraph.StartInputsVector, [0])
    sg_out = int_vector(SubGraph.StartOutputsVector, [n_ops])
    SubGraph.Start(b)
    SubGraph.AddTensors(b, tensor_vec)
    SubGraph.AddInputs(b, sg_in)
    SubGraph.AddOutputs(b, sg_out)
    SubGraph.AddOperators(b, op_vec)
    subgraph = SubGraph.End(b)

    OperatorCode.Start(b)
    OperatorCode.AddDeprecatedBuiltinCode(b, BuiltinOperator.ADD)
    OperatorCode.AddBuiltinCode(b, BuiltinOperator.ADD)
    OperatorCode.AddVersion(b, 1)
    opcode = OperatorCode.End(b)
    Buffer.Start(b)
    empty = Buffer.End(b)
    description = b.CreateString("perfcast")
    codes = table_vector(Model.StartOperatorCodesVector, [opcode])
    subgraphs = table_vector(Model.StartSubgraphsVector, [subgraph])
    buffers = table_vector(Model.StartBuffersVector, [empty])
    Model.Start(b)
    Model.AddVersion(b, 3)
    Model.AddOperatorCodes(b, codes)
    Model.AddSubgraphs(b, subgraphs)
    Model.AddDescription(b, description)
    Model.AddBuffers(b, buffers)
    b.Finish(Model.End(b), file_identifier=b"TFL3")
    return bytes(b.Output())
