"""PyTorch front end: a module and example inputs -> ONNX (dynamo export) -> IR.

The export keeps BatchNormalization as its own operator (no folding into the
convolution), so that parameter counts match the module's.
"""

from __future__ import annotations

import contextlib
import io
import warnings

from perfcast.errors import ModelLoadError
from perfcast.ir.graph import Graph


def export_module(module, example_inputs) -> "onnx.ModelProto":  # noqa: F821
    import onnx_ir
    import onnxscript.optimizer
    import torch

    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    was_training = module.training
    module.eval()
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, tuple(example_inputs), dynamo=True, external_data=False, optimize=False, verbose=False
            )
            model = program.model
            # constant folding and inlining only: the default optimiser would fold BatchNorm into Conv
            onnxscript.optimizer.fold_constants(model)
            onnxscript.optimizer.remove_unused_nodes(model)
            proto = onnx_ir.to_proto(model)
        _drop_synthetic_zero_bias(proto, {n for n, _ in module.named_parameters()} | {n for n, _ in module.named_buffers()})
    except Exception as exc:  # torch raises many exception types from export
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(type(module).__name__, f"torch.onnx.export failed: {first}") from None
    finally:
        module.train(was_training)
    return proto


def from_module(module, example_inputs, name: str | None = None) -> Graph:
    from perfcast.frontends.onnx import model_to_graph

    proto = export_module(module, example_inputs)
    graph = model_to_graph(proto, source=name or type(module).__name__, name=name or type(module).__name__)
    return Graph(graph.nodes, graph.tensors, graph.inputs, graph.outputs, graph.name, "pytorch")


def _drop_synthetic_zero_bias(proto, module_tensors: set[str]) -> None:
    """The exporter gives a bias-free convolution an all-zero bias constant; drop it, so
    that it is neither a parameter nor work. A bias that is a module tensor stays."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    used_elsewhere: dict[str, int] = {}
    for node in proto.graph.node:
        for name in node.input:
            used_elsewhere[name] = used_elsewhere.get(name, 0) + 1
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 3:
            continue
        bias = node.input[2]
        init = inits.get(bias)
        if init is None or bias in module_tensors or not np.all(numpy_helper.to_array(init) == 0):
            continue
        del node.input[2]
        used_elsewhere[bias] -= 1
        if used_elsewhere[bias] == 0:
            proto.graph.initializer.remove(init)
            del inits[bias]
