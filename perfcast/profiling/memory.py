"""Peak memory of a model: what a fresh process that loads it and runs it needs beyond
the same process with a trivial model.

A memory process imports the runtime, reads its resident set size ``VmRSS``, loads
the model, runs it ``runs`` times (default 3) and reads its peak resident set size
``VmHWM`` (both from ``/proc/self/status``); its *growth* is ``VmHWM - VmRSS``. Then

    peak_memory_bytes = median growth of the model's processes
                        - median growth of the baseline processes

where the baseline processes are identical except that they load the trivial network
of :mod:`perfcast.profiling.reference` (a session of its own, runtime buffers and input
arrays included). The baseline is measured once per profiling run and kept;
``processes`` (default 3) fresh processes are used for each. Taking the growth after
the runtime import, rather than the two processes' VmHWM, removes the spread of the
import phase (about 0.2 MB). Negative differences are reported as 0.

onnxruntime runs with its CPU memory arena off here, so the figure is the memory the
model's weights, pre-packed weights and planned activation buffers take, rather
than the arena's power-of-two growth; graph optimisation and memory-pattern
planning stay as in the timing runs. The processes run with glibc's mmap threshold
fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``): large buffers are mapped and unmapped
as they are allocated and freed, so VmHWM follows the live memory instead of the
heap's fragmentation (with glibc's dynamic threshold, repeated inferences can
raise VmHWM by whole activation sizes).

Repeatability: with address-space randomisation on, the same network's growth
varied by up to 0.65 MB (2.5 %) from process to process (allocation order and
fragmentation follow the addresses). The memory processes therefore run with
randomisation off (``personality(ADDR_NO_RANDOMIZE)``, Linux) and
``PYTHONHASHSEED=0``; then repeated processes agree within about 64 KiB. Where the
personality call is refused (some container sandboxes), the median over processes
is what remains.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from perfcast.profiling.process import run_job

MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONHASHSEED": "0"}


def _status_kib(key: str, status: str) -> int:
    for line in Path(status).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} line in {status}")


def vm_hwm_bytes(status: str = "/proc/self/status") -> int:
    """Peak resident set size (VmHWM) of this process, in bytes."""
    return _status_kib("VmHWM", status)


def vm_rss_bytes(status: str = "/proc/self/status") -> int:
    """Current resident set size (VmRSS) of this process, in bytes."""
    return _status_kib("VmRSS", status)


def memory_job(runtime: str, threads: int, index: int, path: str, runs: int) -> dict:
    return {"mode": "memory", "runtime": runtime, "threads": threads, "index": index, "model": path, "runs": runs}


class MemoryProbe:
    """Measures peak memory of models for one runtime; the baseline is measured on first use."""

    def __init__(self, runtime: str, threads: int, trivial_model: Path, timeout_s: float,
                 runs: int = 3, processes: int = 3) -> None:
        self.runtime = runtime
        self.threads = threads
        self.trivial_model = trivial_model
        self.timeout_s = timeout_s
        self.runs = runs
        self.processes = processes
        self._baseline: int | None = None

    def readings(self, index: int, path: str) -> tuple[list[dict], str | None]:
        """The ``memory`` events of ``processes`` fresh processes (``vm_rss_before_bytes``, the
        ``vm_hwm_loaded_bytes`` reached by loading, ``vm_hwm_bytes`` after the runs), or
        ``([], "kind: message")`` when one failed."""
        job = memory_job(self.runtime, self.threads, index, str(path), self.runs)
        events = []
        for _ in range(self.processes):
            event = run_job(job, "memory", self.timeout_s, self.threads, MEMORY_ENV, fixed_layout=True)
            if event["ev"] != "memory":
                return [], f"{event['kind']}: {event['message']}"
            events.append(event)
        return events, None

    def growth(self, index: int, path: str) -> tuple[int | None, str | None]:
        """Median ``VmHWM - VmRSS`` of ``processes`` fresh processes, or ``(None, "kind: message")``."""
        events, error = self.readings(index, path)
        if error:
            return None, error
        return int(statistics.median(e["vm_hwm_bytes"] - e["vm_rss_before_bytes"] for e in events)), None

    @property
    def baseline_bytes(self) -> int:
        if self._baseline is None:
            growth, error = self.growth(-1, str(self.trivial_model))
            if growth is None:
                raise RuntimeError(f"memory baseline process failed: {error}")
            self._baseline = growth
        return self._baseline

    def peak_memory(self, index: int, path: str) -> tuple[int | None, str | None]:
        """``(bytes, None)``, or ``(None, "kind: message")`` when a process failed."""
        growth, error = self.growth(index, path)
        if growth is None:
            return None, error
        return max(0, growth - self.baseline_bytes), None
