"""Runtimes that execute a model file, behind one interface.

A :class:`Runner` knows how to load a model file into a :class:`Session` (one
inference per :meth:`Session.run`, on inputs made once from the model's input
shapes and dtypes) and how to describe the device it runs on.

Runtimes:

- ``ort-cpu``: onnxruntime, CPUExecutionProvider; ``intra_op_num_threads`` =
  threads, ``inter_op_num_threads`` = 1, sequential execution, all graph
  optimisations (``ORT_ENABLE_ALL``).
- ``ort-cuda``: onnxruntime, CUDAExecutionProvider (CPU provider as fallback for
  the ops CUDA lacks), same session options.
- ``litert``: ``ai_edge_litert.interpreter.Interpreter`` for ``.tflite`` files,
  ``num_threads`` = threads.
- ``torch-cuda``: checks for a CUDA device through PyTorch. perfcast has no
  ONNX -> PyTorch converter, so model files are rejected with a ``load`` failure
  that says to use ``ort-cuda``.

The GPU runtimes raise :class:`~perfcast.errors.UsageError` where no CUDA device
exists. Heavy imports (onnxruntime, LiteRT, torch) happen inside methods, so the
parent process of a profiling run never loads a runtime itself.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

from perfcast.errors import UsageError

# dtype strings as onnxruntime reports them (``tensor(float)``) and LiteRT (numpy dtypes) -> numpy names
_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(int32)": "int32", "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}
INPUT_SEED = 0


class ModelRejected(Exception):
    """The runtime refused a model: ``kind`` is ``"load"`` (the session or interpreter
    could not be created) or ``"run"`` (an inference failed)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = one_line(message)
        super().__init__(f"{kind}: {self.message}")


def one_line(message: str, limit: int = 400) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def input_shape(dims: Sequence[Any]) -> tuple[int, ...]:
    """A concrete shape: symbolic or unknown dimensions (strings, None, negatives) become 1."""
    return tuple(int(d) if not isinstance(d, (str, type(None))) and int(d) > 0 else 1 for d in dims)


def make_inputs(specs: Sequence[tuple[str, tuple[int, ...], str]], seed: int = INPUT_SEED) -> dict[str, Any]:
    """Input arrays for ``(name, shape, dtype)`` triples: floats from a standard normal
    generator seeded with ``seed``, integers in [0, 2) (valid token ids and indices),
    booleans False."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape, dtype in specs:
        kind = np.dtype(dtype).kind
        if kind == "f":
            arrays[name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        elif kind in "iu":
            arrays[name] = rng.integers(0, 2, size=shape, dtype=dtype)
        elif kind == "b":
            arrays[name] = np.zeros(shape, dtype=bool)
        else:
            raise ModelRejected("load", f"input {name!r} has dtype {dtype}, which perfcast cannot generate")
    return arrays


class Session(ABC):
    """A loaded model with its inputs ready."""

    @abstractmethod
    def run(self) -> None:
        """One inference; raises :class:`ModelRejected` (kind ``run``) when it fails."""


class Runner(ABC):
    """One runtime with its settings; ``load`` may only be called in a worker process."""

    name: str = ""
    gpu: bool = False
    model_suffix: str = ".onnx"
    supports_kernel_profiles: bool = False

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    @abstractmethod
    def check_available(self) -> None:
        """Raise :class:`UsageError` when this runtime cannot run here."""

    @abstractmethod
    def load(self, path: str, for_memory: bool = False) -> Session:
        """Load a model file; ``for_memory`` turns off allocator caches that hide what a
        model needs (onnxruntime's CPU arena). Raises :class:`ModelRejected`."""

    @abstractmethod
    def runtime_versions(self) -> dict[str, str]:
        ...

    def reference_runner(self) -> "Runner":
        """The runner that times the drift reference networks (ONNX files)."""
        return self

    @property
    def timing_clock(self) -> str:
        """``thread_cpu`` where one inference runs entirely on the calling thread (a CPU
        runtime with one thread): its CPU time is the latency without the time other
        processes held the core; ``wall`` otherwise."""
        return "wall" if self.gpu or self.threads > 1 else "thread_cpu"

    def device_info(self) -> dict:
        info = {
            "device": self.device_name(),
            "runtime": self.name,
            "runtime_versions": self.runtime_versions(),
            "threads": self.threads,
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        }
        if self.gpu:
            info["gpu"] = gpu_name()
        return info

    def device_name(self) -> str:
        """``ort-cpu-1t@amd-epyc`` for CPU runtimes, ``ort-cuda@nvidia-h100-80gb-hbm3`` for GPUs."""
        if self.gpu:
            return f"{self.name}@{slug(gpu_name() or 'unknown-gpu')}"
        return f"{self.name}-{self.threads}t@{slug(cpu_model())}"


# -- onnxruntime --------------------------------------------------------------------------------
class _OrtSession(Session):
    def __init__(self, session, inputs: dict) -> None:
        self._session = session
        self._inputs = inputs

    def run(self) -> None:
        try:
            self._session.run(None, self._inputs)
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidArgument...)
            raise ModelRejected("run", f"{type(exc).__name__}: {exc}") from None


class OrtRunner(Runner):
    name = "ort-cpu"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    supports_kernel_profiles = True

    def check_available(self) -> None:
        import onnxruntime as ort

        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise UsageError(f"--runtime {self.name}", f"onnxruntime {ort.__version__} here lacks {', '.join(missing)}")

    def session_options(self, for_memory: bool = False):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if for_memory:
            so.enable_cpu_mem_arena = False
        return so

    def create_session(self, path: str, options):
        import onnxruntime as ort

        try:
            return ort.InferenceSession(path, options, providers=list(self.providers))
        except Exception as exc:
            raise ModelRejected("load", f"{type(exc).__name__}: {exc}") from None

    def load(self, path: str, for_memory: bool = False) -> Session:
        session = self.create_session(path, self.session_options(for_memory))
        return _OrtSession(session, ort_inputs(session))

    def runtime_versions(self) -> dict[str, str]:
        return {"onnxruntime": _version("onnxruntime"), "numpy": _version("numpy")}


def ort_inputs(session) -> dict:
    specs = []
    for arg in session.get_inputs():
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise ModelRejected("load", f"input {arg.name!r} has type {arg.type}, which perfcast cannot generate")
        specs.append((arg.name, input_shape(arg.shape or ()), dtype))
    return make_inputs(specs)


class OrtCudaRunner(OrtRunner):
    name = "ort-cuda"
    gpu = True
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider")

    def check_available(self) -> None:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError(
                f"--runtime {self.name}",
                f"no CUDA device here (onnxruntime {ort.__version__} offers {', '.join(ort.get_available_providers())})",
            )
        if gpu_name() is None:
            raise UsageError(f"--runtime {self.name}", "no CUDA device here (no NVIDIA GPU found)")

    def runtime_versions(self) -> dict[str, str]:
        return {**super().runtime_versions(), "cuda_driver": nvidia_driver() or "unknown"}


# -- LiteRT -------------------------------------------------------------------------------------
class _LiteRtSession(Session):
    def __init__(self, interpreter) -> None:
        self._interpreter = interpreter

    def run(self) -> None:
        try:
            self._interpreter.invoke()
        except Exception as exc:
            raise ModelRejected("run", f"{type(exc).__name__}: {exc}") from None


class LiteRtRunner(Runner):
    name = "litert"
    model_suffix = ".tflite"

    def check_available(self) -> None:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError:
            raise UsageError(f"--runtime {self.name}", "ai-edge-litert is not installed (pip install ai-edge-litert)") from None

    def load(self, path: str, for_memory: bool = False) -> Session:
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=path, num_threads=self.threads)
            interpreter.allocate_tensors()
        except Exception as exc:
            raise ModelRejected("load", f"{type(exc).__name__}: {exc}") from None
        import numpy as np

        details = interpreter.get_input_details()
        specs = [(str(d["index"]), input_shape(d["shape"]), np.dtype(d["dtype"]).name) for d in details]
        for d, array in zip(details, make_inputs(specs).values()):
            interpreter.set_tensor(d["index"], array)
        return _LiteRtSession(interpreter)

    def reference_runner(self) -> Runner:
        return OrtRunner(self.threads)

    def runtime_versions(self) -> dict[str, str]:
        return {"ai-edge-litert": _version("ai-edge-litert"), "numpy": _version("numpy")}


# -- PyTorch on CUDA ----------------------------------------------------------------------------
class TorchCudaRunner(Runner):
    name = "torch-cuda"
    gpu = True

    def check_available(self) -> None:
        try:
            import torch
        except ImportError:
            raise UsageError(f"--runtime {self.name}", "no CUDA device here (PyTorch is not installed)") from None
        if not torch.cuda.is_available():
            raise UsageError(
                f"--runtime {self.name}",
                f"no CUDA device here (torch {torch.__version__} reports torch.cuda.is_available() == False)",
            )

    def load(self, path: str, for_memory: bool = False) -> Session:
        raise ModelRejected(
            "load", "torch-cuda cannot execute model files (perfcast has no ONNX -> PyTorch converter); "
            "use --runtime ort-cuda")

    def reference_runner(self) -> Runner:
        return OrtCudaRunner(self.threads)

    def runtime_versions(self) -> dict[str, str]:
        return {"torch": _version("torch"), "cuda_driver": nvidia_driver() or "unknown"}


RUNTIMES: dict[str, type[Runner]] = {
    r.name: r for r in (OrtRunner, OrtCudaRunner, LiteRtRunner, TorchCudaRunner)
}


def make_runner(runtime: str, threads: int = 1, check: bool = True) -> Runner:
    """The runner for a runtime name; :class:`UsageError` for an unknown name, a bad
    thread count or (with ``check``) a runtime that cannot run here."""
    cls = RUNTIMES.get(runtime)
    if cls is None:
        raise UsageError(f"--runtime {runtime}", f"unknown runtime (known: {', '.join(sorted(RUNTIMES))})")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise UsageError("--threads", f"must be a positive integer, not {threads!r}")
    runner = cls(threads)
    if check:
        runner.check_available()
    return runner


# -- device description -------------------------------------------------------------------------
def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU model from /proc/cpuinfo (x86 ``model name``; ARM ``Model``/``Hardware``),
    else what :mod:`platform` says."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m and m.group(1).strip():
            return m.group(1).strip()
    return platform.processor() or platform.machine() or "unknown-cpu"


def slug(text: str) -> str:
    """``Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz`` -> ``intel-xeon-platinum-8375c``."""
    text = re.sub(r"\((r|tm|c)\)", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"@.*$", " ", text)
    text = re.sub(r"\b(cpu|processor)\b", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


@functools.lru_cache(maxsize=None)
def _nvidia_smi(query: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""
    return line or None


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name (nvidia-smi), or None where there is none."""
    return _nvidia_smi("name")


def nvidia_driver() -> str | None:
    return _nvidia_smi("driver_version")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
