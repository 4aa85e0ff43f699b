"""Profile model references into the store: resolve them to files, skip what is already
measured well, measure in chunks (each chunk committed as soon as it is done), and
report a summary. The command line and the service call this through the API."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from perfcast.errors import UsageError
from perfcast.ir.graph import Graph
from perfcast.profiling.protocol import Measurement, check_baselines, profile
from perfcast.profiling.runners import make_runner
from perfcast.progress import Progress


@dataclass
class Job:
    ref: str  # what the user named: a path or a spec string
    graph: Graph
    file: str | None = None  # a model file the runtime can read


@dataclass
class Summary:
    measured: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [m for m in self.measured if m["status"] != "ok"]


def jobs_from_manifest(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(model ref, file path) pairs of a ``perfcast generate`` manifest."""
    from perfcast.spaces.generate import read_manifest

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--from {path}", "no such manifest file")
    rows = read_manifest(p, required=("model", "path"))
    if not rows:
        raise UsageError(f"--from {path}", "the manifest lists no models")
    return [(r["model"], str(p.parent / r["path"])) for r in rows]


def _resolve(refs: list[str], manifest: list[tuple[str, str]], batch_size: int | None) -> list[Job]:
    from perfcast import api

    jobs = [Job(ref, api.load(ref, batch_size=batch_size)) for ref in refs]
    for ref, path in manifest:
        jobs.append(Job(ref, api.load(path, batch_size=batch_size), file=path))
    for job in jobs:
        if job.file is None and os.path.isfile(job.ref):
            job.file = job.ref
    return jobs


def write_model(job: Job, runner, folder: str) -> str:
    """A file the runtime can run: the user's own file, else one written from the IR."""
    if job.file and job.file.endswith(runner.model_suffix):
        return job.file
    target = os.path.join(folder, f"{job.graph.content_hash}{runner.model_suffix}")
    if not os.path.exists(target):
        if runner.model_suffix == ".tflite":
            from perfcast.frontends.tflite_writer import to_tflite

            data = to_tflite(job.graph)
        else:
            from perfcast.frontends.onnx_writer import to_onnx

            data = to_onnx(job.graph).SerializeToString()
        Path(target).write_bytes(data)
    return target


def _remove_written(files: list[str], folder: str) -> None:
    """Delete the model files this run wrote into ``folder`` (never the user's own files), so
    that a long run holds one chunk of models on disk at a time."""
    for path in set(files):
        if os.path.dirname(path) == folder:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


def measurement_record(m: Measurement, ref: str, batch_size: int) -> dict:
    """The JSON shape of one measurement (keys of ``perfcast profile --json``)."""
    return {
        "model": ref, "runtime": m.runtime, "device": m.device, "threads": m.threads, "batch_size": batch_size,
        "latency_ms": m.latency_ms, "latency_clock": m.latency_clock, "repeat_cv": m.repeat_cv,
        "peak_memory_bytes": m.peak_memory_bytes, "energy_mj": m.energy_mj, "status": m.status,
        "error": None if m.ok else f"{m.error_kind}: {m.error_message}",
    }


def profile_into_store(
    refs: list[str], *, runtime: str = "ort-cpu", threads: int = 1, db: str | None = None,
    manifest: str | None = None, batch_size: int | None = None, force: bool = False, max_cv: float = 0.05,
    chunk: int = 16, kernels: bool = False, memory: bool = True, progress: bool | None = None, **settings,
) -> Summary:
    from perfcast.store import open_store

    runner = make_runner(runtime, threads)
    runner.check_available()
    pairs = jobs_from_manifest(manifest) if manifest else []
    if not refs and not pairs:
        raise UsageError("perfcast profile", "no models given (MODEL... or --from manifest.csv)")
    if chunk < 1:
        raise UsageError("--chunk", f"must be at least 1, not {chunk}")
    check_baselines(settings.get("reference_baseline_ms"), settings.get("memory_reference_baseline_ms"))
    jobs = _resolve(refs, pairs, batch_size)
    store = open_store(db)
    summary = Summary()
    try:
        info = runner.device_info()
        versions = ", ".join(f"{k} {v}" for k, v in info.get("runtime_versions", {}).items())
        device_id = store.upsert_device(
            info["device"], runtime=runner.name, runtime_version=versions,
            hardware=info.get("gpu") or info.get("cpu_model"), threads=threads, extra=info,
        )
        todo: list[tuple[Job, int, int]] = []
        batch = batch_size or 1  # the batch the graphs were built with (files: as given)
        for job in jobs:
            network_id = store.add_network(job.graph, job.ref)
            if not force and store.has_good_measurement(network_id, device_id, batch, max_cv):
                summary.skipped.append(job.ref)
            else:
                todo.append((job, network_id, batch))
        baselines = _baselines(store, device_id, settings)
        steps = max(1, len(todo))
        bar = Progress(steps, f"profile {runtime}", enabled=progress)
        with tempfile.TemporaryDirectory(prefix="perfcast-profile-") as folder:
            for start in range(0, len(todo), chunk):
                part = todo[start: start + chunk]
                files = [write_model(job, runner, folder) for job, _, _ in part]
                try:
                    results = profile(files, runtime=runtime, threads=threads, kernels=kernels, memory=memory,
                                      single_model_errors=False, reference_baseline_ms=baselines[0],
                                      memory_reference_baseline_ms=baselines[1], **settings)
                finally:
                    _remove_written(files, folder)
                baselines = carried_baselines(baselines, results)
                for (job, network_id, batch), m in zip(part, results):
                    store_measurement(store, m, network_id, device_id, batch)
                    summary.measured.append(measurement_record(m, job.ref, batch))
                    bar.update(1, job.ref)
        bar.close()
    finally:
        store.close()
    only = summary.measured[0] if len(jobs) == 1 and summary.measured else None
    if only is not None and only["status"] != "ok" and only["error"].startswith("load"):
        # one model that the runtime refuses is bad input (it is stored as failed all the same)
        raise UsageError(only["model"], f"{runtime} cannot load it: {only['error'].splitlines()[0][:300]}")
    return summary


def _baselines(store, device_id: int, settings: dict) -> tuple[float | None, float | None]:
    """The drift baselines every chunk of this run divides by: the caller's, else those the device's
    stored measurements were corrected to, else (None) the first chunk's own.

    A chunk's own baseline is the median of its reference samples; taken per chunk, it would carry
    the host's speed at that moment into every label of the chunk. On the local dataset the
    baselines of 12-network chunks spread over 0.121-0.154 ms, and networks measured twice in
    different chunks differed by a mean of 9.7 %, 6.1 % once both used one baseline."""
    given = (settings.pop("reference_baseline_ms", None), settings.pop("memory_reference_baseline_ms", None))
    return given if any(v is not None for v in given) else store.reference_baselines(device_id)


def carried_baselines(baselines: tuple[float | None, float | None],
                      results: list[Measurement]) -> tuple[float | None, float | None]:
    """``baselines`` once fixed, else those the first profiling run (``results``) was corrected to."""
    if baselines[0] is not None or not results:
        return baselines
    return results[0].reference_baseline_ms, results[0].memory_reference_baseline_ms


def store_measurement(store, m: Measurement, network_id: int, device_id: int, batch: int) -> None:
    status = m.status if m.status in ("ok", "failed", "timeout") else "failed"
    if m.error_kind == "timeout":
        status = "timeout"
    environment = dict(m.environment)
    environment.update(latency_clock=m.latency_clock, latency_ms_raw_median=m.latency_ms_raw_median,
                       latency_ms_wall_median=m.latency_ms_wall_median, workers=m.workers,
                       worker_medians_ms=m.worker_medians_ms, reference_baseline_ms=m.reference_baseline_ms,
                       memory_reference_baseline_ms=m.memory_reference_baseline_ms,
                       reference_weight=m.reference_weight, block_references_ms=m.block_references_ms, notes=m.notes)
    mid = store.add_measurement(
        network_id, device_id, batch_size=batch, status=status, latency_ms=m.latency_ms if m.ok else None,
        repeat_cv=m.repeat_cv, raw_samples_ms=m.raw_samples_ms or None, reference_ratio=m.reference_ratio,
        peak_memory_bytes=m.peak_memory_bytes, energy_mj=m.energy_mj, error_kind=m.error_kind,
        error_message=m.error_message, environment=environment,
    )
    if m.kernel_profile:
        store.add_kernel_profiles(mid, [kernel_row(r) for r in m.kernel_profile])


def kernel_row(row: dict) -> dict:
    """A profiler kernel row in the store's shape; nodes that ran in no kernel of their own
    (folded into constants, eliminated) are kept as ``<folded>`` / ``<eliminated>`` rows."""
    return {
        "kernel_name": row["kernel"] or f"<{row['fate']}>",
        "op_type": row["op_type"] or "",
        "provider": row["provider"],
        "node_names": list(row["nodes"]),
        "duration_us": float(row["duration_us"]),
        "sample_count": int(row["count"]),
    }
