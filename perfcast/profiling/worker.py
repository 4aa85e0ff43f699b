"""The measuring process: ``python -m perfcast.profiling.worker`` reads one JSON job on
stdin and writes JSON events, one per line, on stdout.

Modes (``job["mode"]``):

- ``time``: the timing protocol of :mod:`perfcast.profiling.protocol` for a list of
  models (load and warm up a group, then rounds of model blocks, each followed by a
  reference block: the compute reference, then the memory reference). Events: ``ready``;
  ``begin`` (model, what) before each step that belongs to a model; ``loaded``, ``failed``
  (model, kind, message), ``block`` (model, samples_ms, wall_ms, energy_uj, ref_before),
  ``ref`` (id, samples_ms, memory_samples_ms), ``done`` (model);
  ``finished`` at the end.
- ``memory``: import the runtime, read VmRSS, load one model, run it a few times, read
  VmHWM (both from ``/proc/self/status``).
- ``kernels``: per-kernel profile of one model (:mod:`perfcast.profiling.kernels`).

The parent watches the stream: a model step that outlives its time limit or a
process that dies is recorded against the model of the open ``begin``.

``PERFCAST_SIMULATE_FAULT=hang:<file name>`` or ``crash:<file name>`` makes this process
sleep forever or kill itself with SIGSEGV when it loads that file: a simulation of a
hanging or crashing runtime, for tests of the time limit and crash handling.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from perfcast.profiling.energy import open_meter
from perfcast.profiling.memory import vm_hwm_bytes, vm_rss_bytes
from perfcast.profiling.runners import ModelRejected, Runner, Session, make_runner

FAULT_ENV = "PERFCAST_SIMULATE_FAULT"
Emit = Callable[..., None]


def simulate_fault(path: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    kind, _, target = spec.partition(":")
    if not target or Path(path).name != target:
        return
    if kind == "hang":
        while True:
            time.sleep(3600)
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)


def load(runner: Runner, path: str, for_memory: bool = False) -> Session:
    simulate_fault(path)
    try:
        return runner.load(path, for_memory=for_memory)
    except MemoryError:
        raise ModelRejected("load", "out of memory while loading") from None


def run_once(session: Session) -> None:
    try:
        session.run()
    except MemoryError:
        raise ModelRejected("run", "out of memory during inference") from None


def warm_up(session: Session, runs: int, seconds: float) -> None:
    """At least ``runs`` inferences and at least ``seconds`` of them."""
    start = time.perf_counter()
    n = 0
    while n < runs or time.perf_counter() - start < seconds:
        run_once(session)
        n += 1


@dataclass
class Timed:
    """Samples of one block: ``samples_ms`` on the timing clock, ``wall_ms`` on the wall
    clock (the same list when the timing clock is the wall clock), energy in µJ."""

    samples_ms: list[float]
    wall_ms: list[float]
    energy_uj: float | None


def time_block(session: Session, seconds: float, min_runs: int, max_runs: int, clock: str = "wall",
               meter=None) -> Timed:
    """One re-warming inference (discarded), then timed inferences until ``seconds`` have
    passed and ``min_runs`` are done, or ``max_runs`` are done. With ``clock ==
    "thread_cpu"`` each inference is also timed on this thread's CPU clock."""
    run_once(session)
    wall: list[float] = []
    cpu: list[float] = []
    wall_ns, cpu_ns = time.perf_counter_ns, time.thread_time_ns
    on_cpu = clock == "thread_cpu"
    before = meter.read() if meter else None
    start = time.perf_counter()
    while len(wall) < max_runs and (len(wall) < min_runs or time.perf_counter() - start < seconds):
        w0 = wall_ns()
        c0 = cpu_ns() if on_cpu else 0
        run_once(session)
        if on_cpu:
            cpu.append((cpu_ns() - c0) / 1e6)
        wall.append((wall_ns() - w0) / 1e6)
    energy = meter.delta_uj(before, meter.read()) if meter else None
    return Timed(cpu if on_cpu else wall, wall, energy)


def groups(models: list[list], size: int, max_bytes: int) -> list[list[list]]:
    """Consecutive groups of at most ``size`` models and (past the first) ``max_bytes`` of files."""
    out: list[list[list]] = []
    current: list[list] = []
    total = 0
    for item in models:
        nbytes = Path(item[1]).stat().st_size if Path(item[1]).exists() else 0
        if current and (len(current) >= size or total + nbytes > max_bytes):
            out.append(current)
            current, total = [], 0
        current.append(item)
        total += nbytes
    if current:
        out.append(current)
    return out


def time_models(job: dict, emit: Emit) -> None:
    runner = make_runner(job["runtime"], job["threads"], check=False)
    references = [runner.reference_runner().load(job[key]) for key in ("reference", "memory_reference")]
    for reference in references:
        warm_up(reference, job["warmup_runs"], job["warmup_s"])
    meter = open_meter(job.get("energy"))
    clock = runner.timing_clock
    rounds = job["rounds"]
    block_s = job["budget_s"] / rounds
    block_min = math.ceil(job["min_runs"] / rounds)
    block_max = max(block_min, job["max_runs"] // rounds)
    ref_s = block_s / 4
    ref_id = 0

    def time_reference() -> int:
        nonlocal ref_id
        ref_id += 1
        compute, memory = (time_block(r, ref_s, 5, 200, clock).samples_ms for r in references)
        emit(ev="ref", id=ref_id, samples_ms=compute, memory_samples_ms=memory)
        return ref_id

    emit(ev="ready")
    for group in groups(job["models"], job["group_size"], job["group_bytes"]):
        live: list[tuple[int, Session]] = []
        for index, path in group:
            emit(ev="begin", model=index, what="load")
            try:
                session = load(runner, path)
                warm_up(session, job["warmup_runs"], job["warmup_s"])
            except ModelRejected as exc:
                emit(ev="failed", model=index, kind=exc.kind, message=exc.message)
                continue
            emit(ev="loaded", model=index)
            live.append((index, session))
        previous_ref = time_reference()
        for _ in range(rounds):
            for index, session in list(live):
                emit(ev="begin", model=index, what="block")
                try:
                    timed = time_block(session, block_s, block_min, block_max, clock, meter)
                except ModelRejected as exc:
                    emit(ev="failed", model=index, kind=exc.kind, message=exc.message)
                    live.remove((index, session))
                    continue
                emit(ev="block", model=index, samples_ms=timed.samples_ms, wall_ms=timed.wall_ms,
                     energy_uj=timed.energy_uj, ref_before=previous_ref)
                previous_ref = time_reference()
        for index, _ in live:
            emit(ev="done", model=index)
        del live
    emit(ev="finished")


def measure_memory(job: dict, emit: Emit) -> None:
    runner = make_runner(job["runtime"], job["threads"], check=True)  # imports the runtime
    emit(ev="begin", model=job["index"], what="memory")
    rss_before = vm_rss_bytes()
    try:
        session = load(runner, job["model"], for_memory=True)
        loaded_hwm = vm_hwm_bytes()
        for _ in range(job["runs"]):
            run_once(session)
    except ModelRejected as exc:
        emit(ev="failed", model=job["index"], kind=exc.kind, message=exc.message)
        return
    emit(ev="memory", model=job["index"], vm_hwm_bytes=vm_hwm_bytes(), vm_rss_before_bytes=rss_before,
         vm_hwm_loaded_bytes=loaded_hwm)


def profile_kernels(job: dict, emit: Emit) -> None:
    from perfcast.profiling.kernels import kernel_profile

    runner = make_runner(job["runtime"], job["threads"], check=False)
    emit(ev="begin", model=job["index"], what="kernels")
    simulate_fault(job["model"])
    try:
        rows = kernel_profile(runner, job["model"], runs=job["runs"], warmup_runs=job["warmup_runs"])
    except ModelRejected as exc:
        emit(ev="failed", model=job["index"], kind=exc.kind, message=exc.message)
        return
    emit(ev="kernels", model=job["index"], rows=rows)


MODES = {"time": time_models, "memory": measure_memory, "kernels": profile_kernels}


def main() -> None:
    job = json.loads(sys.stdin.read())
    # events get their own copy of stdout; anything a library prints goes to stderr
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def emit(**event) -> None:
        stream.write(json.dumps(event) + "\n")
        stream.flush()

    MODES[job["mode"]](job, emit)


if __name__ == "__main__":
    main()
