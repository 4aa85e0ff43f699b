"""Measuring models on real runtimes: latency (drift-corrected, several fresh worker
processes), peak memory, energy counters and per-kernel profiles.

``profile(paths, runtime="ort-cpu")`` is the entry point; the protocol is described in
:mod:`perfcast.profiling.protocol`.
"""

from perfcast.profiling.protocol import Measurement, Settings, profile
from perfcast.profiling.runners import RUNTIMES, make_runner

__all__ = ["Measurement", "RUNTIMES", "Settings", "make_runner", "profile"]
