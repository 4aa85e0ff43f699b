"""The one Python face of perfcast; the command line and the service call only this."""

from __future__ import annotations

import os
from typing import Any

from perfcast.analysis import Analysis, analyze_graph
from perfcast.errors import ModelLoadError, UsageError
from perfcast.ir.graph import Graph, fewer_collections

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

    with fewer_collections():
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


def load_in_folder(ref: str, folder, *, batch_size: int | None = None) -> Graph:
    """A model reference read from a file in ``folder`` (a CSV's folder): a path relative to
    ``folder`` (or absolute), else a spec string."""
    from perfcast import spaces

    ref = ref.strip()
    path = os.path.join(os.fspath(folder), ref)
    if os.path.exists(path):
        return load(path, batch_size=batch_size)
    if spaces.is_spec(ref):
        return spaces.build_spec(ref, batch_size or 1)
    if os.path.exists(ref):
        return load(ref, batch_size=batch_size)
    raise ModelLoadError(ref, f"neither a file (looked in {os.fspath(folder) or '.'}) nor a spec string of a known space")


def _prediction_rows(device, predictor, graphs: list[Graph], labels: list[str], alpha: float) -> list[dict]:
    points, intervals, inside = predictor.predict_full(graphs, alpha)
    rows = []
    for i, label in enumerate(labels):
        row: dict[str, Any] = {"model": label, "device": device.name, "predictor": predictor.name}
        for target in ("latency_ms", "memory_bytes", "energy_mj"):
            if target not in points:
                row[target] = None
                row[f"{target}_interval"] = None
                continue
            lo, hi = intervals[target]
            if target == "memory_bytes":
                row[target] = int(round(float(points[target][i])))
                row[f"{target}_interval"] = [int(round(float(lo[i]))), int(round(float(hi[i])))]
            else:
                row[target] = float(points[target][i])
                row[f"{target}_interval"] = [float(lo[i]), float(hi[i])]
        row["in_domain"] = bool(inside[i])
        rows.append(row)
    return rows


def predict(models: list, *, device=None, predictor: str | None = None, batch_size: int | None = None,
            input_shapes: dict[str, tuple[int, ...]] | None = None, alpha: float = 0.1) -> list[dict]:
    """Predicted latency (ms per batch), peak memory (bytes) and energy (mJ per batch) of each model
    on ``device`` (a shipped device's name or a device file; default the local CPU device), with
    conformal intervals at coverage ``1 - alpha`` and the domain check (keys of ``perfcast predict
    --json``; a target the device does not model is None)."""
    from perfcast.devices import resolve_device

    dev = resolve_device(device)
    pred = dev.predictor(predictor)
    graphs = [load(m, batch_size=batch_size, input_shapes=input_shapes) for m in models]
    labels = [os.fspath(m) if isinstance(m, (str, os.PathLike)) else (g.name or type(m).__name__)
              for m, g in zip(models, graphs)]
    return _prediction_rows(dev, pred, graphs, labels, alpha)


def predict_many(refs, *, device=None, predictor: str | None = None, batch_size: int | None = None,
                 folder=None, chunk: int = 128, alpha: float = 0.1, where=None, workers: int = 1):
    """:func:`predict` over an iterable of model references, ``chunk`` graphs at a time (only one
    chunk of graphs per worker is alive at once); yields one result dict per reference, in order.
    References are resolved by :func:`load_in_folder` when ``folder`` is given. A reference that
    cannot be loaded raises its error with the subject ``where(k, ref)`` (default ``item k (ref)``,
    k from 1). ``workers`` > 1 spreads the chunks over that many processes (the device is then
    named by a shipped name or a file path)."""
    import itertools

    from perfcast.devices import resolve_device

    if not isinstance(chunk, int) or chunk < 1:
        raise UsageError("chunk", f"must be a positive integer, not {chunk!r}")
    if not isinstance(workers, int) or workers < 1:
        raise UsageError("workers", f"must be a positive integer, not {workers!r}")
    dev = resolve_device(device)
    pred = dev.predictor(predictor)
    context = (device, predictor, folder, batch_size, alpha)
    it = iter(refs)
    chunks = ((start, list(part)) for start, part in (
        (k * chunk + 1, itertools.islice(it, chunk)) for k in itertools.count()))
    chunks = itertools.takewhile(lambda c: c[1], chunks)
    if workers == 1 or not (device is None or isinstance(device, (str, os.PathLike))):
        results = (_predict_chunk(c, (dev, pred) + context[2:]) for c in chunks)
        yield from _rows_or_raise(results, where)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers, _init_predict_worker, (context,)) as pool:
        yield from _rows_or_raise(pool.imap(_predict_worker_chunk, chunks), where)


_WORKER_CONTEXT: tuple = ()


def _init_predict_worker(context: tuple) -> None:
    from perfcast.devices import resolve_device

    global _WORKER_CONTEXT
    device, predictor, *rest = context
    dev = resolve_device(device)
    _WORKER_CONTEXT = (dev, dev.predictor(predictor), *rest)


def _predict_worker_chunk(part: tuple[int, list[str]]):
    return _predict_chunk(part, _WORKER_CONTEXT)


def _predict_chunk(part: tuple[int, list[str]], context: tuple):
    """``("ok", rows)`` for a chunk of references, or ``("error", k, ref, error class name, problem)``
    for the first that cannot be loaded (errors travel between processes as plain values)."""
    from perfcast.errors import PerfcastError

    dev, pred, folder, batch_size, alpha = context
    start, refs = part
    graphs = []
    for k, ref in enumerate(refs, start=start):
        try:
            graphs.append(load_in_folder(ref, folder, batch_size=batch_size) if folder is not None
                          else load(ref, batch_size=batch_size))
        except PerfcastError as exc:
            return ("error", k, ref, type(exc).__name__, exc.problem)
    return ("ok", _prediction_rows(dev, pred, graphs, refs, alpha))


def _rows_or_raise(results, where):
    from perfcast import errors

    for result in results:
        if result[0] == "error":
            _, k, ref, kind, problem = result
            cls = getattr(errors, kind, errors.PerfcastError)
            subject = where(k, ref) if where is not None else f"item {k} ({ref})"
            raise cls(subject, f"model {ref!r}: {problem}" if where is not None else problem)
        yield from result[1]


def adapt(samples, out, *, bases: list[str] | None = None, name: str | None = None,
          batch_size: int | None = None) -> dict:
    """A new device file ``out`` from the measurements of the CSV ``samples`` (columns model,
    latency_ms, optional energy_mj and memory_bytes), transferring from the shipped devices (or
    the devices named in ``bases``); returns a summary. Nothing is written on an error."""
    from pathlib import Path

    from perfcast.adapt import labelled_rows, read_samples
    from perfcast.devices import save_device

    samples_path = Path(samples)
    data = read_samples(samples_path, batch_size=batch_size)
    device = adapted_device(data.graphs, data.targets, bases, name=name or Path(out).stem,
                            description=f"adapted from {labelled_rows(data.targets)} measurements in "
                                        f"{samples_path.name}",
                            made={"samples": samples_path.name})
    path = save_device(device, out)
    return {"device": device.name, "out": str(path), "targets": device.targets, **device.made}


def adapted_device(graphs: list[Graph], targets: dict, bases: list[str] | None = None, *, name: str,
                   description: str, made: dict | None = None):
    """A :class:`perfcast.devices.Device` named ``name`` whose predictor is fitted by
    :func:`perfcast.adapt.adapt` on ``graphs`` with ``targets`` (``{target: array}``, NaN where
    missing), transferring from the shipped devices (or the devices named in ``bases``). Its
    ``made`` records the method, the number of rows, the chosen bases and the entries of ``made``."""
    from perfcast.adapt import adapt as _adapt
    from perfcast.adapt import labelled_rows
    from perfcast.devices import Device, resolve_device, shipped_devices

    base_devices = [resolve_device(b) for b in (bases or [d.name for d in shipped_devices()])]
    predictor = _adapt(graphs, targets, [d.predictor() for d in base_devices])
    record: dict[str, Any] = {"method": predictor.name, "rows": labelled_rows(targets), **(made or {})}
    if hasattr(predictor, "chosen"):
        readings = predictor.chosen_readings()
        record["bases"] = {t: [{"device": base_devices[i].name if i >= 0 else f"{method} on these measurements",
                                "target": bt, "graphs": r} for (i, method, bt), r in zip(triples, readings[t])]
                           for t, triples in predictor.chosen().items()}
    return Device(name=name, predictors={predictor.name: predictor}, default_predictor=predictor.name,
                  description=description, made=record)


def calibrate(out, *, runtime: str = "ort-cpu", threads: int = 1, count: int | None = None, db: str | None = None,
              budget_minutes: float | None = None, bases: list[str] | None = None, name: str | None = None,
              progress: bool | None = None, **settings) -> dict:
    """This machine as a new device: profile the built-in calibration set
    (:mod:`perfcast.calibration`, its first ``count`` networks) on ``runtime``, adapt the shipped
    predictors to the measurements and write the device file ``out``; returns a summary."""
    from perfcast.calibration import DEFAULT_COUNT
    from perfcast.calibration import calibrate as _calibrate

    return _calibrate(out, runtime=runtime, threads=threads, count=DEFAULT_COUNT if count is None else count, db=db,
                      budget_minutes=budget_minutes, bases=bases, name=name, progress=progress, **settings)
