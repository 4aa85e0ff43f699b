"""Calibration: this machine as a new device, from a built-in set of networks measured here.

``perfcast calibrate --runtime ort-cpu --out DEV.json`` measures the first ``count`` networks of
:data:`CALIBRATION_SET` with the profiler (:func:`perfcast.profiling.protocol.profile`: drift-
corrected median latency and peak memory), stores the measurements (the store at ``--db``, else a
temporary SQLite store), maps the shipped CPU predictor onto them with :func:`perfcast.adapt.adapt`
(with at most 36 measurements that is the transfer method) and writes a device file that
``perfcast predict --device DEV.json`` reads.

The base
    By default (:data:`DEFAULT_BASES`) only the shipped device ``ort-cpu-1t@amd-epyc``, the one
    trained on every space of the local dataset: the devices of the public data know only
    NAS-Bench-201, FBNet and OFA networks, and a stack that holds them maps the calibration
    networks well while it carries their extrapolation onto the networks a user brings. On 26
    networks of families in no space (``benchmarks/calibrate_unseen.py``, one core, the same
    machine and day), calibrating with every shipped device stacked two public-data devices into
    the map and gave 23 % within +-10 % (MAPE 20.6 %) with 90 % intervals reaching down to zero;
    with the CPU device alone, 27 % (MAPE 20.2 %) and intervals of about +-55 % that held 92 % of
    the measurements. ``bases`` (``--base``) names others.

The calibration set
    36 spec strings, fixed (no randomness), taken from the networks of the local dataset
    (``data/local-ort-cpu``) so that the shipped CPU predictor knows them well and the transfer map
    learns the new machine, not the base's errors. They span every space and the zoo:

    ======== ======================================================================
    space    networks (MACs)
    ======== ======================================================================
    imgcls   ResNet-like 46 M and 1.04 G, MobileNetV3-like 234 M
    kws      DS-CNN on MFCC, 1.2 M and 30 M
    rnn      LSTM 15 M and 41 M, GRU 2.8 M and 330 M
    nb201    two cells (avg-pool, skip, 1x1/3x3 convs, a zeroed ``none`` edge), 43-83 M
    fbnet    two block strings (grouped and 5x5 depthwise blocks), 46-77 M
    ofa      two MobileNetV3 subnets, 220 M at 152 px and 400 M at 220 px
    vit      three ViT-like, 14 M to 680 M
    bert     three encoders, 32 M to 785 M
    gpt      two decoders, 176 M and 736 M
    seg      three (LR-ASPP / U-Net-like), 31 M to 527 M
    det      two SSDLite heads, 52 M and 730 M
    sr       ESPCN-like 239 M (tanh), EDSR-like 801 M
    zoo      mobilenet_v3_small, shufflenet_v2_x1_0, squeezenet1_1, mobilenet_v2,
             efficientnet_b0, efficientnet_b1 (57 M to 687 M)
    ======== ======================================================================

    MACs run from 1.2 M to 1.04 G; the op mix covers dense and depthwise/grouped convolutions,
    matmul-heavy transformers, recurrent cells, max/average/global pools, and elementwise-heavy
    graphs (NAS-Bench-201 sums, squeeze-excite and swish blocks, channel shuffles). On the
    development machine (AMD EPYC, onnxruntime 1.31, one thread) their latencies run from 0.023 ms
    to 11.7 ms, 144 ms in all. The order interleaves spaces and rises in size, so every prefix
    (``--count N``) spans small networks of many spaces first: the first four are a ResNet-like
    classifier, an LSTM, a BERT-like encoder and a keyword-spotting CNN.

Profiling time
    With the profiler's defaults (3 workers, 0.6 s timed per network per worker, peak memory in 3
    fresh processes) the 36 networks took 237 s of profiling (4 min 7 s for the whole command) on
    one core of the development machine while the other core ran a measuring job; all 36 were
    measured, and their latencies differed from the local dataset's by a median factor of 1.001
    (10th-90th percentile 0.95-1.07). Networks are measured in chunks of
    :data:`CHUNK` (one profiling run each; the drift references' levels of the first chunk are kept
    for the later ones); with ``budget_minutes`` no new chunk starts when the time spent so far
    plus the expected time of that chunk would exceed the budget (the first chunk always runs).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perfcast.devices import DEFAULT_DEVICE
from perfcast.errors import UsageError
from perfcast.ir.graph import Graph

CALIBRATION_SET: tuple[str, ...] = (
    # small networks of many spaces
    "imgcls:0",
    "rnn:10",
    "bert:20",
    "kws:35",
    "nb201:|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|none~2|",
    "vit:59",
    "fbnet:skip k3_e1_g2 k5_e3 skip k3_e1 k3_e6 k5_e1_g2 k3_e1 k5_e1 k5_e1_g2 k5_e3 skip k3_e6 k3_e6 k5_e1 "
    "skip k3_e1_g2 k5_e1 k3_e1 k3_e6 skip k5_e1_g2",
    "seg:31",
    "det:67",
    "sr:56",
    "gpt:80",
    "zoo:mobilenet_v3_small",
    # mid-sized
    'ofa:{"ks":[5,7,7,7,7,3,3,7,7,3,3,3,3,5,7,7,3,3,7,3],"e":[6,4,6,6,6,3,3,6,4,4,6,4,3,6,6,3,6,4,6,3],'
    '"d":[2,4,2,4,2],"r":152}',
    "imgcls:78",
    "kws:2",
    "rnn:58",
    "vit:43",
    "bert:48",
    "nb201:|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "fbnet:k3_e1 k5_e6 k5_e1_g2 k5_e1 k5_e6 k5_e6 k3_e6 k5_e1_g2 k5_e3 k5_e1_g2 k5_e1 skip k5_e6 k3_e1 k5_e1 "
    "k5_e6 k3_e1 k3_e6 k5_e1 k3_e3 k5_e3 skip",
    "seg:24",
    "zoo:shufflenet_v2_x1_0",
    "zoo:squeezenet1_1",
    # large, up to about 1 GMAC
    "imgcls:6",
    "sr:15",
    "gpt:22",
    "bert:67",
    "vit:2",
    "rnn:66",
    "det:22",
    "seg:47",
    'ofa:{"ks":[5,3,3,3,5,5,5,7,3,5,7,3,3,3,7,3,5,5,5,7],"e":[6,4,4,4,3,4,6,3,3,3,4,4,6,4,3,3,4,6,6,4],'
    '"d":[4,4,3,2,2],"r":220}',
    "zoo:efficientnet_b0",
    "zoo:mobilenet_v2",
    "zoo:efficientnet_b1",
    "rnn:64",
)
DEFAULT_COUNT = len(CALIBRATION_SET)
DEFAULT_BASES: tuple[str, ...] = (DEFAULT_DEVICE,)
MIN_COUNT = 3
CHUNK = 12
# runtimes that run the model files perfcast writes (torch-cuda has no ONNX -> PyTorch converter)
RUNTIMES = ("ort-cpu", "ort-cuda", "litert")


# --- checks made before anything is measured ------------------------------------------------------
def calibration_specs(count: int = DEFAULT_COUNT) -> list[str]:
    """The first ``count`` networks of the calibration set."""
    if isinstance(count, bool) or not isinstance(count, int) or not MIN_COUNT <= count <= len(CALIBRATION_SET):
        raise UsageError("--count", f"must be an integer from {MIN_COUNT} to {len(CALIBRATION_SET)}, not {count!r}")
    return list(CALIBRATION_SET[:count])


def check_writable(out: str | os.PathLike) -> Path:
    """``out`` as a path a device file can be written to (its folder exists or can be made and
    is writable; ``out`` itself is not a folder)."""
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"--out {out}", "is a folder, not a file name")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {out}", f"cannot be written: {existing} is not a folder")
    if existing == folder:
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".perfcast-", suffix=".tmp"):
                pass
        except OSError as exc:
            raise UsageError(f"--out {out}", f"cannot be written ({exc.strerror or exc})") from None
    elif not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}", f"cannot be written: no permission to create folders in {existing}")
    return path


def check_runtime(runtime: str, threads: int):
    """The runner of ``runtime``, checked to exist and to be available on this machine."""
    from perfcast.profiling.runners import make_runner

    runner = make_runner(runtime, threads, check=False)
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime {runtime}", f"cannot run calibration networks; use one of {', '.join(RUNTIMES)}")
    runner.check_available()
    return runner


# --- measuring -------------------------------------------------------------------------------------
@dataclass
class Measured:
    """The outcome of profiling the calibration networks."""

    specs: list[str]
    graphs: list[Graph]
    latency_ms: list[float]
    memory_bytes: list[float]
    failed: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    device: str = ""
    baselines: tuple[float | None, float | None] = (None, None)  # drift baselines (ms) every label is in

    def targets(self) -> dict[str, np.ndarray]:
        """``{target: array}`` of the measured networks; memory (NaN where it was not measured)
        only where at least :data:`MIN_COUNT` networks have it."""
        out = {"latency_ms": np.array(self.latency_ms, float)}
        memory = np.array(self.memory_bytes, float)
        if int((~np.isnan(memory)).sum()) >= MIN_COUNT:
            out["memory_bytes"] = memory
        return out


class _ChunkedBar:
    """One progress bar over several profiling runs whose step totals grow as they go."""

    def __init__(self, bar, steps_per_network: int, networks: int) -> None:
        self.bar = bar
        self.per = steps_per_network
        self.planned = networks * steps_per_network
        self.done_before = 0
        self.chunk_planned = 0
        self.chunk_done = 0

    def start(self, networks: int) -> None:
        self.chunk_planned = networks * self.per
        self.chunk_done = 0

    def step(self, done: int, total: int, note: str) -> None:
        """The progress callback of one profiling run (``done`` of ``total`` steps)."""
        self.chunk_done = done
        self.bar.total = self.planned - self.chunk_planned + total
        self.bar.done = self.done_before + done - 1
        self.bar.update(1, note)

    def finish(self) -> None:
        self.planned += self.chunk_done - self.chunk_planned
        self.done_before += self.chunk_done
        self.bar.done = self.done_before

    def skip(self, networks: int) -> None:
        self.planned -= networks * self.per
        self.bar.total = self.planned


def _store_device(store, runner) -> int:
    info = runner.device_info()
    versions = ", ".join(f"{k} {v}" for k, v in info.get("runtime_versions", {}).items())
    return store.upsert_device(info["device"], runtime=runner.name, runtime_version=versions,
                               hardware=info.get("gpu") or info.get("cpu_model"), threads=runner.threads, extra=info)


def over_budget(elapsed_s: float, done: int, next_chunk: int, budget_minutes: float | None) -> bool:
    """Whether a chunk of ``next_chunk`` networks, at the pace of the ``done`` networks measured
    in ``elapsed_s`` seconds, would end after ``budget_minutes`` (never before the first chunk)."""
    if budget_minutes is None or done == 0:
        return False
    return elapsed_s * (done + next_chunk) / done > 60.0 * budget_minutes


def measure(specs: list[str], runner, *, db: str | None = None, budget_minutes: float | None = None,
            progress: bool | None = None, **settings) -> Measured:
    """Profile the networks ``specs`` with ``runner`` (in chunks of :data:`CHUNK`) into the store
    at ``db`` (a temporary SQLite store when None). ``settings`` go to the profiler
    (``workers``, ``time_budget_s``...)."""
    from perfcast import api
    from perfcast.profiling.protocol import profile
    from perfcast.profiling.session import Job, carried_baselines, store_measurement, write_model
    from perfcast.progress import Progress
    from perfcast.store import open_store

    graphs = [api.load(spec) for spec in specs]
    workers = int(settings.get("workers", 3))
    with tempfile.TemporaryDirectory(prefix="perfcast-calibrate-") as folder:
        store = open_store(db or f"sqlite:///{os.path.join(folder, 'calibration.db')}")
        try:
            device_id = _store_device(store, runner)
            network_ids = store.add_networks(list(zip(graphs, specs)))
            files = [write_model(Job(spec, g), runner, folder) for spec, g in zip(specs, graphs)]
            bar = _ChunkedBar(Progress(len(specs) * (workers + 1), f"calibrate {runner.name}", enabled=progress),
                              workers + 1, len(specs))
            result = Measured([], [], [], [], device=runner.device_name())
            baselines = store.reference_baselines(device_id)
            start = time.monotonic()
            for first in range(0, len(specs), CHUNK):
                part = range(first, min(first + CHUNK, len(specs)))
                if over_budget(time.monotonic() - start, first, len(part), budget_minutes):
                    result.skipped = specs[first:]
                    bar.skip(len(result.skipped))
                    break
                bar.start(len(part))
                measurements = profile([files[i] for i in part], runtime=runner.name, threads=runner.threads,
                                       progress=bar.step, reference_baseline_ms=baselines[0],
                                       memory_reference_baseline_ms=baselines[1],
                                       single_model_errors=False, **settings)
                bar.finish()
                baselines = carried_baselines(baselines, measurements)
                for i, m in zip(part, measurements):
                    store_measurement(store, m, network_ids[i], device_id, 1)
                    _collect(result, specs[i], graphs[i], m)
            bar.bar.close()
            result.seconds = time.monotonic() - start
            result.baselines = baselines
        finally:
            store.close()
    return result


def _collect(result: Measured, spec: str, graph: Graph, m) -> None:
    if not m.ok:
        result.failed.append({"model": spec, "error": f"{m.error_kind}: {m.error_message}"})
        return
    result.specs.append(spec)
    result.graphs.append(graph)
    result.latency_ms.append(float(m.latency_ms["median"]))
    result.memory_bytes.append(float(m.peak_memory_bytes) if m.peak_memory_bytes else float("nan"))


# --- how well the adapted device fits ----------------------------------------------------------------
def fit_errors(predictor, graphs: list[Graph], targets: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per target: the in-sample error of ``predictor`` on the measured ``graphs`` (absolute
    error over the measured value: median and mean, in percent) and its conformal residuals
    (leave-one-out for the transfer method: median, 90th percentile and the half-width of the
    90 % interval, in percent of the prediction)."""
    from perfcast.predictors.base import conformal_quantile

    predicted = predictor.predict(graphs)
    out = {}
    for target in predictor.targets_:
        y = np.asarray(targets[target], float)
        keep = ~np.isnan(y)
        ape = np.abs(predicted[target][keep] - y[keep]) / y[keep]
        residuals = np.sort(np.asarray(predictor.residuals_[target], float))
        out[target] = {
            "rows": int(keep.sum()),
            "in_sample_median_pct": 100 * float(np.median(ape)),
            "in_sample_mape_pct": 100 * float(np.mean(ape)),
            "held_out_median_pct": 100 * float(np.median(residuals)),
            "held_out_p90_pct": 100 * float(np.percentile(residuals, 90)),
            "interval90_halfwidth_pct": 100 * conformal_quantile(residuals, 0.1),
        }
    return out


# --- the whole command -------------------------------------------------------------------------------
def calibrate(out: str | os.PathLike, *, runtime: str = "ort-cpu", threads: int = 1, count: int = DEFAULT_COUNT,
              db: str | None = None, budget_minutes: float | None = None, bases: list[str] | None = None,
              name: str | None = None, progress: bool | None = None, **settings) -> dict:
    """Measure the first ``count`` calibration networks here with ``runtime`` and write the adapted
    device to ``out``; returns a summary (device, out, targets, method, rows, bases, calibration,
    errors). Every argument is checked before anything is measured; nothing is written on an error.
    ``settings`` go to the profiler (``workers``, ``time_budget_s``, ``timeout_s``...)."""
    from perfcast.api import adapted_device
    from perfcast.devices import resolve_device, save_device
    from perfcast.profiling.protocol import Settings

    specs = calibration_specs(count)
    runner = check_runtime(runtime, threads)
    path = check_writable(out)
    if budget_minutes is not None and (isinstance(budget_minutes, bool) or not isinstance(budget_minutes, (int, float))
                                       or not budget_minutes > 0):
        raise UsageError("--budget-minutes", f"must be a positive number, not {budget_minutes!r}")
    Settings(**settings).check()
    bases = list(bases) if bases else list(DEFAULT_BASES)
    for base in bases:
        resolve_device(base)
    measured = measure(specs, runner, db=db, budget_minutes=budget_minutes, progress=progress, **settings)
    if len(measured.specs) < MIN_COUNT:
        reasons = "; ".join(f"{f['model']}: {f['error']}" for f in measured.failed[:2])
        raise UsageError(f"--runtime {runtime}", f"only {len(measured.specs)} of {len(specs)} calibration networks "
                                                 f"could be measured (at least {MIN_COUNT} needed): {reasons}")
    targets = measured.targets()
    calibration = {"runtime": runtime, "threads": threads, "measured_device": measured.device,
                   "networks": len(specs), "measured": len(measured.specs), "failed": measured.failed,
                   "skipped_by_budget": measured.skipped, "profiling_s": round(measured.seconds, 1),
                   "reference_baseline_ms": measured.baselines[0],
                   "memory_reference_baseline_ms": measured.baselines[1]}
    device = adapted_device(measured.graphs, targets, bases, name=name or path.stem,
                            description=f"{measured.device} calibrated on {len(measured.specs)} networks of "
                                        f"the built-in calibration set",
                            made={"calibration": calibration})
    device.made["errors"] = fit_errors(device.predictor(), measured.graphs, targets)
    written = save_device(device, path)
    return {"device": device.name, "out": str(written), "targets": device.targets, **device.made}
