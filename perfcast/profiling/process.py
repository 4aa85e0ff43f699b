"""Parent side of a measuring process: start ``perfcast.profiling.worker``, send the job,
read its events with deadlines, kill it, and describe how it ended."""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TIMEOUT = {"ev": "timeout"}
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
WORKER = [sys.executable, "-m", "perfcast.profiling.worker"]
# Starts the worker with address-space randomisation off (Linux personality flag
# ADDR_NO_RANDOMIZE, kept across exec); where the call is refused the worker starts anyway.
_NO_ASLR_LAUNCHER = [
    sys.executable, "-c",
    "import ctypes, os, sys\n"
    "try:\n"
    "    libc = ctypes.CDLL(None, use_errno=True)\n"
    "    libc.personality(libc.personality(0xffffffff) | 0x0040000)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'perfcast.profiling.worker'])\n",
]


def worker_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = str(threads)
    env.update(extra or {})
    return env


class WorkerProcess:
    """One fresh worker process running one job; ``fixed_layout`` starts it with
    address-space randomisation off, so that identical jobs allocate identically."""

    def __init__(self, job: dict, threads: int = 1, env: dict[str, str] | None = None,
                 fixed_layout: bool = False) -> None:
        self.proc = subprocess.Popen(
            _NO_ASLR_LAUNCHER if fixed_layout else WORKER,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=worker_env(threads, env),
        )
        self._events: queue.Queue = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()
        try:
            self.proc.stdin.write(json.dumps(job))
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def _read_events(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                try:
                    self._events.put(json.loads(line))
                except json.JSONDecodeError:
                    self.stderr_tail.append(line)
        self._events.put(None)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            if line.strip():
                self.stderr_tail.append(line.rstrip())

    def next_event(self, deadline: float) -> dict:
        """The next event; ``TIMEOUT`` when ``deadline`` (time.monotonic) passes first;
        ``{"ev": "exit", "code": rc}`` when the process has ended."""
        try:
            event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return TIMEOUT
        if event is None:
            return {"ev": "exit", "code": self.proc.wait()}
        return event

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.close()

    def close(self) -> None:
        self.proc.wait()
        for t in self._readers:
            t.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()

    def exit_message(self, code: int) -> str:
        """Why the process ended, in one line."""
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            note = " (the kernel's out-of-memory killer sends SIGKILL)" if -code == signal.SIGKILL else ""
            return f"worker process killed by {name}{note}"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        return f"worker process exited with status {code}" + (f": {last.strip()}" if last else "")


def run_job(job: dict, result_event: str, timeout_s: float, threads: int = 1, env: dict[str, str] | None = None,
            fixed_layout: bool = False) -> dict:
    """Run a single-model job in a fresh process: its ``result_event`` event, or a
    ``failed`` event with kind ``load``/``run`` (reported by the worker), ``timeout``
    (no result within ``timeout_s``; the process is killed) or ``crash``."""
    deadline = time.monotonic() + timeout_s
    with WorkerProcess(job, threads, env, fixed_layout) as proc:
        while True:
            event = proc.next_event(deadline)
            if event is TIMEOUT:
                return {"ev": "failed", "kind": "timeout", "message": f"no result within the time limit of {timeout_s:g} s"}
            if event["ev"] in (result_event, "failed"):
                return event
            if event["ev"] == "exit":
                return {"ev": "failed", "kind": "crash", "message": proc.exit_message(event["code"])}
