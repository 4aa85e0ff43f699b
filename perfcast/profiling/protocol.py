"""The measuring protocol: latency, peak memory, energy and kernel profiles of model files.

Made for a noisy shared machine, where latency drifts 15-30 % over tens of seconds
and one process's median moves 5 % between runs (see DESIGN.md).

Timing
    Each model is measured in ``workers`` (default 3) fresh worker processes,
    started one after another: never two measuring processes at once. Every worker
    gets the whole batch, in an order rotated by ``worker * n_models / workers``. A
    worker takes the models in groups (at most ``group_size`` = 8 models and 256 MB
    of files), loads each with ``warmup_runs`` (3) and at least ``warmup_s`` (0.2 s)
    of warm-up inferences, then runs ``rounds`` (3) round-robin rounds over the
    group. In a round every model gets one *block*: one discarded re-warming
    inference, then timed inferences until ``time_budget_s / rounds`` seconds have
    passed, with at least ``ceil(min_runs / rounds)`` and at most
    ``max_runs // rounds`` of them (about 10..1000 per model per worker). Before the
    first block and after every block the two built-in reference networks
    (:mod:`perfcast.profiling.reference`: one bound by compute, one by memory) are
    timed, each in a block of a quarter of that length (5..200 inferences). Every
    inference is timed on its own; raw samples are kept.

Clock
    With one thread on a CPU runtime an inference runs entirely on the calling
    thread, and the timing clock is that thread's CPU time
    (``time.thread_time_ns``): on a shared machine the wall-clock time of an
    inference longer than a scheduler time slice includes the time other processes
    held the core (with about two runnable processes per core, wall-clock medians of
    5 ms networks doubled from one worker to the next while the reference's median,
    whose 0.15 ms inferences fit in a slice, did not move), and the CPU time does not.
    On an otherwise idle core the two agree. With several threads, and on GPUs, the
    timing clock is the wall clock (``perf_counter_ns``). ``latency_clock`` says which;
    ``latency_ms_wall_median`` is the wall-clock median in every case.

Drift correction
    A model block's *adjacent reference medians* ``a_b`` (compute reference) and
    ``m_b`` (memory reference) are the medians of each reference's blocks just before
    and just after it, pooled. The *baselines* ``A`` and ``M`` are the medians of all
    samples of each reference in the run (every worker), or ``reference_baseline_ms``
    and ``memory_reference_baseline_ms`` when the caller fixes them (to compare runs
    made at different times). A network that streams large weights slows with the
    memory reference when other tenants contend for the shared cache, one that fits
    in the core's cache with the compute reference, most networks partly with each:
    the block's adjacent reference is ``r_b = A * (a_b / A)**w * (m_b / M)**(1 - w)``,
    with the compute weight ``w`` (0..1, ``reference_weight``) estimated per model from its
    blocks (:func:`perfcast.profiling.stats.reference_weight`; the setting
    ``reference_weight`` fixes it, 1.0 is the compute reference alone). Each sample
    ``s`` becomes ``s * A / r_b``; ``latency_ms`` holds median, mean, min, p10 and p90
    of these corrected samples, so that the corrected median is
    ``reference_ratio * A`` with ``reference_ratio`` the median of ``s / r_b``.
    ``latency_ms_raw_median`` is the median of the raw (uncorrected) samples on the
    same clock; ``block_references_ms`` lists every block's worker, number of samples,
    ``a_b`` and ``m_b`` in the order of ``raw_samples_ms``, so the correction can be
    recomputed. The references and the models are timed on the same clock.

Spread and re-measurement
    ``repeat_cv`` is the coefficient of variation (sample standard deviation over
    mean) of the per-worker medians of the corrected samples. A model is measured
    again by one more worker at a time, up to ``max_extra_workers`` (5) more, while
    the standard error of its label, ``repeat_cv / sqrt(n)`` with ``n`` workers so
    far, exceeds ``cv_threshold / sqrt(workers)`` (``cv_threshold`` 3 %: the error of
    a model whose workers spread by 3 %); every worker's samples are kept in the
    statistics. A network whose time differs from one process to the next (cache
    placement on a shared host moves small networks by 10 % and more) thus gets
    more processes, and a steady one no more than ``workers``.

Failures
    A model's time in a worker (load, warm-up, its blocks) is limited to
    ``timeout_s``. A model the runtime cannot load fails with error_kind ``load``;
    one whose inference raises fails with ``run``; one that outlives its time limit
    (the worker is killed) fails with ``timeout``; one during which the worker dies
    (segfault, out-of-memory kill) fails with ``crash``. A replacement worker
    carries on with the rest of the batch, and failed models are not tried again.

Memory, energy, kernels
    Peak memory: :mod:`perfcast.profiling.memory` (the median over
    ``memory_processes`` (3) fresh processes of VmHWM - VmRSS around loading and
    running the model, minus the same for a trivial model). Energy: counters read around every timed block
    (:mod:`perfcast.profiling.energy`); ``energy_mj`` per inference is the blocks'
    energy over their inferences, None without a counter. Kernel profiles:
    :mod:`perfcast.profiling.kernels` (onnxruntime runtimes only). Each runs after
    the timing, in its own fresh process, one at a time.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from perfcast.errors import UsageError
from perfcast.profiling import stats
from perfcast.profiling.energy import energy_source
from perfcast.profiling.memory import MemoryProbe
from perfcast.profiling.process import TIMEOUT, WorkerProcess, run_job
from perfcast.profiling.reference import write_memory_reference, write_reference, write_trivial
from perfcast.profiling.runners import Runner, make_runner

Progress = Callable[[int, int, str], None]
MAX_UNATTRIBUTED_RESTARTS = 2


@dataclass(frozen=True)
class Settings:
    """Knobs of the protocol (see the module docstring)."""

    workers: int = 3
    time_budget_s: float = 0.6
    rounds: int = 3
    warmup_runs: int = 3
    warmup_s: float = 0.2
    min_runs: int = 10
    max_runs: int = 1000
    timeout_s: float = 60.0
    cv_threshold: float = 0.03
    max_extra_workers: int = 5
    group_size: int = 8
    group_bytes: int = 256 * 2**20
    memory_runs: int = 3
    memory_processes: int = 3
    kernel_runs: int = 10
    reference_weight: float | None = None

    def check(self) -> None:
        positive = {"workers": self.workers, "time_budget_s": self.time_budget_s, "rounds": self.rounds,
                    "min_runs": self.min_runs, "max_runs": self.max_runs, "timeout_s": self.timeout_s,
                    "group_size": self.group_size, "memory_runs": self.memory_runs,
                    "memory_processes": self.memory_processes, "kernel_runs": self.kernel_runs}
        for name, value in positive.items():
            if not value > 0:
                raise UsageError(f"--{name.replace('_', '-')}", f"must be positive, not {value!r}")
        for name, value in {"max_extra_workers": self.max_extra_workers, "warmup_runs": self.warmup_runs,
                            "warmup_s": self.warmup_s, "cv_threshold": self.cv_threshold}.items():
            if value < 0:
                raise UsageError(f"--{name.replace('_', '-')}", f"must not be negative, not {value!r}")
        if self.reference_weight is not None and not 0.0 <= self.reference_weight <= 1.0:
            raise UsageError("--reference-weight", f"must be between 0 and 1, not {self.reference_weight!r}")
        if self.max_runs < self.min_runs:
            raise UsageError("--max-runs", f"must be at least --min-runs ({self.min_runs}), not {self.max_runs}")


@dataclass
class Measurement:
    """What profiling one model gave. Latencies in ms per batch, memory in bytes,
    energy in mJ per batch; ``status`` is ``ok`` or ``failed`` (then ``error_kind`` is
    ``load``, ``run``, ``timeout`` or ``crash``)."""

    model: str
    runtime: str
    device: str
    threads: int
    status: str = "ok"
    error_kind: str | None = None
    error_message: str | None = None
    latency_clock: str = "wall"
    latency_ms: dict[str, float] | None = None
    latency_ms_raw_median: float | None = None
    latency_ms_wall_median: float | None = None
    repeat_cv: float | None = None
    workers: int = 0
    worker_medians_ms: list[float] = field(default_factory=list)
    raw_samples_ms: list[float] = field(default_factory=list)
    reference_ratio: float | None = None
    reference_baseline_ms: float | None = None
    memory_reference_baseline_ms: float | None = None
    reference_weight: float | None = None
    block_references_ms: list[list[float]] = field(default_factory=list)
    peak_memory_bytes: int | None = None
    energy_mj: float | None = None
    kernel_profile: list[dict] | None = None
    notes: list[str] = field(default_factory=list)
    environment: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Model:
    index: int
    path: str
    blocks: list[stats.Block] = field(default_factory=list)
    failure: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


class _Counter:
    """Progress steps; the total grows when re-measurement adds workers."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.done, self.total, self.callback = 0, total, callback

    def step(self, note: str) -> None:
        self.done += 1
        if self.callback:
            self.callback(self.done, self.total, note)


class _Timing:
    """Runs the timing workers of one profiling run and keeps their blocks."""

    def __init__(self, models: list[_Model], runner: Runner, references: tuple[Path, Path], settings: Settings,
                 energy: str | None, counter: _Counter) -> None:
        self.models = models
        self.runner = runner
        self.reference, self.memory_reference = (str(r) for r in references)
        self.settings = settings
        self.energy = energy
        self.counter = counter
        self.reference_samples: list[float] = []
        self.memory_reference_samples: list[float] = []
        self.passes = 0

    def baselines(self, compute_ms: float | None = None, memory_ms: float | None = None) -> tuple[float, float]:
        """``(A, M)``: the given baselines, else the medians of the references' samples so far."""
        return (compute_ms or statistics.median(self.reference_samples),
                memory_ms or statistics.median(self.memory_reference_samples))

    def job(self, indices: list[int]) -> dict:
        s = self.settings
        return {
            "mode": "time", "runtime": self.runner.name, "threads": self.runner.threads,
            "models": [[i, self.models[i].path] for i in indices], "reference": self.reference,
            "memory_reference": self.memory_reference,
            "budget_s": s.time_budget_s, "rounds": s.rounds, "warmup_runs": s.warmup_runs, "warmup_s": s.warmup_s,
            "min_runs": s.min_runs, "max_runs": s.max_runs, "group_size": s.group_size,
            "group_bytes": s.group_bytes, "energy": self.energy,
        }

    def fail(self, index: int, kind: str, message: str) -> None:
        model = self.models[index]
        if model.ok:
            model.failure = (kind, message)
            model.blocks = []
            self.counter.total -= max(0, self.settings.workers - self.passes)
            self.counter.step(f"failed {Path(model.path).name}")

    def run_pass(self, indices: list[int]) -> None:
        """One worker over ``indices`` (in that order), restarted after a crash or timeout."""
        worker = self.passes
        self.passes += 1
        remaining = list(indices)
        unattributed = 0
        while remaining:
            outcome = self._run_process(worker, remaining)
            if outcome is not None:
                unattributed += 1
                if unattributed > MAX_UNATTRIBUTED_RESTARTS:
                    raise RuntimeError(f"profiling worker failed {unattributed} times outside any model: {outcome}")

    def _run_process(self, worker: int, remaining: list[int]) -> str | None:
        """Run one process over ``remaining`` (updated in place). Returns a description of
        a failure no model can be blamed for, else None."""
        with WorkerProcess(self.job(remaining), self.runner.threads) as proc:
            return self._follow(proc, worker, remaining)

    def _follow(self, proc: WorkerProcess, worker: int, remaining: list[int]) -> str | None:
        timeout = self.settings.timeout_s
        pending: dict[int, list[dict]] = {}
        refs: dict[int, tuple[list[float], list[float]]] = {}
        used: dict[int, float] = {}
        current: tuple[int, float] | None = None
        deadline = time.monotonic() + timeout
        while True:
            event = proc.next_event(deadline)
            now = time.monotonic()
            if event is TIMEOUT:
                if current is None:
                    return f"no progress within {timeout:g} s"
                self.fail(current[0], "timeout", f"no result within the time limit of {timeout:g} s "
                                                  "(load, warm-up and timed runs together)")
                remaining.remove(current[0])
                return None
            if event["ev"] == "exit":
                message = proc.exit_message(event["code"])
                if current is None:
                    return message
                self.fail(current[0], "crash", message)
                remaining.remove(current[0])
                return None
            if current is not None:
                used[current[0]] = used.get(current[0], 0.0) + now - current[1]
                current = None
            kind = event["ev"]
            if kind == "begin":
                current = (event["model"], now)
                deadline = now + max(0.0, timeout - used.get(event["model"], 0.0))
                continue
            deadline = now + timeout
            if kind == "failed":
                self.fail(event["model"], event["kind"], event["message"])
                remaining.remove(event["model"])
            elif kind == "ref":
                refs[event["id"]] = (event["samples_ms"], event["memory_samples_ms"])
                self.reference_samples.extend(event["samples_ms"])
                self.memory_reference_samples.extend(event["memory_samples_ms"])
            elif kind == "block":
                pending.setdefault(event["model"], []).append(event)
            elif kind == "done":
                self._commit(event["model"], worker, pending.pop(event["model"], []), refs)
                remaining.remove(event["model"])
            elif kind == "finished":
                return None

    def _commit(self, index: int, worker: int, events: list[dict],
                refs: dict[int, tuple[list[float], list[float]]]) -> None:
        model = self.models[index]
        for e in events:
            (compute, memory), (compute_after, memory_after) = refs[e["ref_before"]], refs[e["ref_before"] + 1]
            model.blocks.append(stats.Block(tuple(e["samples_ms"]), statistics.median(compute + compute_after), worker,
                                            e["energy_uj"], tuple(e["wall_ms"]),
                                            statistics.median(memory + memory_after)))
        self.counter.step(Path(model.path).name)


def _rotated(indices: list[int], worker: int, workers: int) -> list[int]:
    if not indices:
        return []
    k = (worker * len(indices)) // max(workers, 1) % len(indices)
    return indices[k:] + indices[:k]


def _environment(runner: Runner, settings: Settings) -> dict:
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "device": runner.device_info(),
        "protocol": asdict(settings),
        "load_average_before": list(os.getloadavg()),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def check_baselines(compute_ms: float | None, memory_ms: float | None) -> None:
    """Fixed drift baselines must be positive milliseconds (None: not fixed)."""
    for name, value in (("reference-baseline-ms", compute_ms), ("memory-reference-baseline-ms", memory_ms)):
        if value is not None and not value > 0:
            raise UsageError(f"--{name}", f"must be positive, not {value!r}")


def profile(models: list[str | os.PathLike], runtime: str = "ort-cpu", threads: int = 1, workers: int = 3,
            time_budget_s: float = 0.6, memory: bool = True, kernels: bool = False, timeout_s: float = 60.0,
            progress: Progress | None = None, *, reference_baseline_ms: float | None = None,
            memory_reference_baseline_ms: float | None = None, single_model_errors: bool = True,
            **protocol) -> list[Measurement]:
    """Measure model files (ONNX for ``ort-*``, TFLite for ``litert``) on this machine.

    ``time_budget_s`` is the timed time per model per worker; ``timeout_s`` the time
    limit of one model in one process; ``reference_baseline_ms`` and
    ``memory_reference_baseline_ms`` fix the drift baselines (those of an earlier run).
    Other keywords set fields of :class:`Settings` (``rounds``, ``cv_threshold``,
    ``max_extra_workers``, ``min_runs``, ``reference_weight``...).
    ``progress(done, total, note)`` is called after every model step. Returns one
    :class:`Measurement` per model, in order. A single model the runtime cannot load
    raises :class:`UsageError` (unless ``single_model_errors`` is false); in a batch it is
    a failed measurement.
    """
    from perfcast.frontends.common import check_file

    unknown = sorted(set(protocol) - set(Settings.__dataclass_fields__))
    if unknown:
        raise TypeError(f"profile() got unknown protocol settings: {', '.join(unknown)}")
    settings = Settings(workers=workers, time_budget_s=time_budget_s, timeout_s=timeout_s, **protocol)
    settings.check()
    runner = make_runner(runtime, threads)
    if kernels and not runner.supports_kernel_profiles:
        raise UsageError("--kernels", f"kernel profiles need an onnxruntime runtime (ort-cpu, ort-cuda), not {runtime}")
    check_baselines(reference_baseline_ms, memory_reference_baseline_ms)
    paths = [str(check_file(m)) for m in models]
    if not paths:
        return []
    environment = _environment(runner, settings)
    state = [_Model(i, p) for i, p in enumerate(paths)]
    counter = _Counter(len(paths) * (settings.workers + memory + kernels), progress)
    with tempfile.TemporaryDirectory(prefix="perfcast-profile-") as tmp:
        timing = _Timing(state, runner, (write_reference(Path(tmp)), write_memory_reference(Path(tmp))), settings,
                         energy_source(runner.gpu), counter)
        _measure_latency(timing, settings, counter)
        if not timing.reference_samples:
            raise RuntimeError("no reference samples were measured")
        baselines = timing.baselines(reference_baseline_ms, memory_reference_baseline_ms)
        environment["load_average_after"] = list(os.getloadavg())
        environment["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        environment["reference_baseline_ms"], environment["memory_reference_baseline_ms"] = baselines
        results = [_measurement(m, models[m.index], runner, baselines, settings, environment) for m in state]
        if memory:
            probe = MemoryProbe(runner.name, runner.threads, write_trivial(Path(tmp), runner.model_suffix),
                                settings.timeout_s, settings.memory_runs, settings.memory_processes)
            _measure_memory(state, results, probe, counter)
        if kernels:
            _profile_kernels(state, results, runner, settings, counter)
    if single_model_errors and len(results) == 1 and results[0].error_kind == "load":
        raise UsageError(results[0].model, results[0].error_message)
    return results


def _measure_latency(timing: _Timing, settings: Settings, counter: _Counter) -> None:
    everyone = [m.index for m in timing.models]
    for w in range(settings.workers):
        timing.run_pass(_rotated([i for i in everyone if timing.models[i].ok], w, settings.workers))
    limit = settings.cv_threshold / math.sqrt(settings.workers)
    for extra in range(settings.max_extra_workers):
        baselines = timing.baselines()
        spread = [m.index for m in timing.models
                  if m.ok and stats.standard_error(_combined(m.blocks, baselines, settings)[1]) > limit]
        if not spread:
            break
        counter.total += len(spread)
        timing.run_pass(_rotated(spread, settings.workers + extra, settings.workers))


def _combined(blocks: list[stats.Block], baselines: tuple[float, float],
              settings: Settings) -> tuple[float, list[stats.Block]]:
    """A model's compute weight and its blocks with the combined adjacent reference."""
    weight = settings.reference_weight
    if weight is None:
        weight = stats.reference_weight(blocks, *baselines)
    return weight, stats.combine_references(blocks, *baselines, weight)


def _measurement(model: _Model, ref, runner: Runner, baselines: tuple[float, float], settings: Settings,
                 environment: dict) -> Measurement:
    baseline = baselines[0]
    m = Measurement(model=os.fspath(ref), runtime=runner.name, device=runner.device_name(), threads=runner.threads,
                    latency_clock=runner.timing_clock, environment=dict(environment), reference_baseline_ms=baseline,
                    memory_reference_baseline_ms=baselines[1])
    if not model.ok:
        m.status, (m.error_kind, m.error_message) = "failed", model.failure
        return m
    m.reference_weight, blocks = _combined(model.blocks, baselines, settings)
    m.block_references_ms = [[b.worker, len(b.samples_ms), b.ref_median_ms, b.memory_ref_median_ms]
                             for b in model.blocks]
    s = stats.latency_stats(blocks, baseline)
    m.latency_ms = s.latency_ms
    m.latency_ms_raw_median = s.raw_median_ms
    m.latency_ms_wall_median = s.wall_median_ms
    m.repeat_cv = s.repeat_cv
    m.workers = len(s.worker_medians_ms)
    m.worker_medians_ms = s.worker_medians_ms
    m.raw_samples_ms = s.raw_samples_ms
    m.reference_ratio = s.reference_ratio
    m.energy_mj = stats.energy_per_run_mj(model.blocks)
    return m


def _measure_memory(state: list[_Model], results: list[Measurement], probe: MemoryProbe, counter: _Counter) -> None:
    for model, result in zip(state, results):
        if result.ok:
            result.peak_memory_bytes, error = probe.peak_memory(model.index, model.path)
            if error:
                result.notes.append(f"peak memory not measured: {error}")
        counter.step(f"memory {Path(model.path).name}")


def _profile_kernels(state: list[_Model], results: list[Measurement], runner: Runner, settings: Settings,
                     counter: _Counter) -> None:
    for model, result in zip(state, results):
        if result.ok:
            job = {"mode": "kernels", "runtime": runner.name, "threads": runner.threads, "index": model.index,
                   "model": model.path, "runs": settings.kernel_runs, "warmup_runs": settings.warmup_runs}
            event = run_job(job, "kernels", settings.timeout_s, runner.threads)
            if event["ev"] == "kernels":
                result.kernel_profile = event["rows"]
            else:
                result.notes.append(f"kernel profile not measured: {event['kind']}: {event['message']}")
        counter.step(f"kernels {Path(model.path).name}")

