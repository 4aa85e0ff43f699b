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
