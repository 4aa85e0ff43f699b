"""The one Python face of perfcast; the command line and the service call only this."""

from __future__ import annotations

import os
from typing import Any

from perfcast.analysis import Analysis, analyze_graph
from perfcast.errors import ModelLoadError, UsageError
from perfcast.ir.graph import Graph

def _is_torch_module(obj: Any) -> bool:
    """A torch.nn.Module, recognised without importing torch."""
    return any(c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module" for c in type(obj).__mro__)


def load(
    model,
    example_inputs=None,
    *,
    batch_size: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> Graph:
    """Turn a model reference into an IR graph.

    ``model`` is a path (.onnx, .tflite, .json IR), a spec string (``zoo:resnet50``,
    ``nb201:...``), a :class:`Graph`, or a ``torch.nn.Module`` with ``example_inputs``.
    """
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise UsageError("--batch-size", f"must be a positive integer, not {batch_size!r}")
    if isinstance(model, Graph):
        return model
    if _is_torch_module(model):
        if example_inputs is None:
            raise UsageError(type(model).__name__, "a PyTorch module needs example_inputs")
        from perfcast.frontends.torch import from_module

        return from_module(model, example_inputs)
    if not isinstance(model, (str, os.PathLike)):
        raise ModelLoadError(repr(model)[:60], "not a model reference (path, spec string, Graph or torch module)")
    ref = os.fspath(model)
    from perfcast import spaces

    if not os.path.exists(ref) and ":" in ref and not ref.startswith(("/", ".")):
        return spaces.build_spec(ref, batch_size or 1)
    return _load_file(ref, batch_size, input_shapes)


def _load_file(ref: str, batch_size, input_shapes) -> Graph:
    from perfcast.frontends.common import check_file

    path = check_file(ref)
    with open(path, "rb") as f:
        head = f.read(8)
    suffix = path.suffix.lower()
    if suffix == ".tflite" or head[4:8] == b"TFL3":
        from perfcast.frontends.tflite import load_tflite

        return load_tflite(path, batch_size=batch_size)
    if suffix == ".json":
        from perfcast.ir.serialize import loads

        return loads(path.read_text(encoding="utf-8", errors="replace"), source=ref)
    from perfcast.frontends.onnx import load_onnx

    return load_onnx(path, input_shapes=input_shapes, batch_size=batch_size)


def analysis(model, example_inputs=None, **kwargs) -> Analysis:
    """The full :class:`Analysis` (per-node costs included) of a model reference."""
    return analyze_graph(load(model, example_inputs, **kwargs))


def analysis_to_dict(a: Analysis, model_label: str) -> dict:
    return {
        "model": model_label,
        "format": a.graph.source_format,
        "content_hash": a.graph.content_hash,
        "nodes": len(a.graph.nodes),
        "op_counts": a.op_counts,
        "macs": a.macs,
        "flops": a.flops,
        "params": a.params,
        "weight_bytes": a.weight_bytes,
        "activation_peak_bytes": a.activation_peak_bytes,
        "bytes_read": a.bytes_read,
        "bytes_written": a.bytes_written,
        "unsupported_ops": a.unsupported_ops,
        "uncosted_nodes": a.uncosted_nodes,
        "by_op_type": [
            {"op_type": r.op_type, "count": r.count, "macs": r.macs, "flops": r.flops, "params": r.params,
             "bytes_read": r.bytes_read, "bytes_written": r.bytes_written}
            for r in sorted(a.by_op_type.values(), key=lambda r: (-r.macs, -r.flops, r.op_type))
        ],
    }


def analyze(model, example_inputs=None, **kwargs) -> dict:
    """Static analysis of a model as a JSON-ready dict (the keys of ``perfcast analyze --json``)."""
    a = analysis(model, example_inputs, **kwargs)
    label = os.fspath(model) if isinstance(model, (str, os.PathLike)) else (a.graph.name or type(model).__name__)
    return analysis_to_dict(a, label)


def generate(space: str, count: int, seed: int, out_dir, *, batch_size: int = 1, progress: bool | None = None) -> list[dict]:
    """Write ``count`` networks of a space as ONNX files with a manifest (resumable)."""
    from perfcast.spaces.generate import generate as _generate

    return _generate(space, count, seed, out_dir, progress=progress, batch_size=batch_size)


def profile(models: list, *, runtime: str = "ort-cpu", threads: int = 1, db: str | None = None,
            manifest: str | None = None, **kwargs):
    """Measure models on a runtime of this machine and add the measurements to the store;
    returns a summary (measured records, skipped refs)."""
    from perfcast.profiling.session import profile_into_store

    return profile_into_store([os.fspath(m) for m in models], runtime=runtime, threads=threads, db=db,
                              manifest=manifest, **kwargs)
