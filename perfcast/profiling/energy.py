"""Energy counters: RAPL on CPUs, NVML on NVIDIA GPUs; nothing is ever estimated.

- RAPL: the Linux powercap files ``/sys/class/powercap/intel-rapl:N/energy_uj`` of the
  package zones (``name`` starting with ``package``; AMD processors appear under the
  same ``intel-rapl`` names). Sub-zones (``intel-rapl:N:M``: core, uncore, dram) are
  parts of a package and are not added again. A counter wraps at
  ``max_energy_range_uj``; a reading smaller than the previous one means it wrapped.
  Package energy covers the whole socket, idle power and other processes included.
- NVML: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded)
  of GPU 0, through ``pynvml`` where it is installed.

Where neither counter is readable, :func:`open_meter` returns None and profiles
report ``energy_mj = None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

RAPL_ROOT = "/sys/class/powercap"


class Meter(Protocol):
    source: str

    def read(self) -> tuple[int, ...]:
        """Raw counter values, one per zone or device."""

    def delta_uj(self, before: tuple[int, ...], after: tuple[int, ...]) -> float:
        """Microjoules spent between two readings."""


@dataclass(frozen=True)
class RaplZone:
    name: str
    energy_file: Path
    max_range_uj: int


def wrapped_delta(before: int, after: int, max_range: int) -> int:
    """Counter increase from ``before`` to ``after`` for a counter that wraps to zero at ``max_range``."""
    return after - before if after >= before else after + max_range - before


class RaplMeter:
    source = "rapl"

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones

    def read(self) -> tuple[int, ...]:
        return tuple(int(z.energy_file.read_text().strip()) for z in self.zones)

    def delta_uj(self, before: tuple[int, ...], after: tuple[int, ...]) -> float:
        return float(sum(wrapped_delta(b, a, z.max_range_uj) for z, b, a in zip(self.zones, before, after)))


def rapl_zones(root: str | Path = RAPL_ROOT) -> list[RaplZone]:
    """The readable package zones under a powercap directory (empty where there are none)."""
    zones = []
    base = Path(root)
    if not base.is_dir():
        return zones
    for d in sorted(base.iterdir()):
        if not re.fullmatch(r"intel-rapl:\d+", d.name):
            continue
        try:
            name = (d / "name").read_text().strip()
            if not name.startswith("package"):
                continue
            int((d / "energy_uj").read_text().strip())
            max_range = int((d / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            continue
        zones.append(RaplZone(name, d / "energy_uj", max_range))
    return zones


class NvmlMeter:
    source = "nvml"

    def __init__(self, handle, nvml) -> None:
        self._handle = handle
        self._nvml = nvml

    def read(self) -> tuple[int, ...]:
        return (int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)),)

    def delta_uj(self, before: tuple[int, ...], after: tuple[int, ...]) -> float:
        return float(after[0] - before[0]) * 1000.0  # NVML counts millijoules


def nvml_meter(device_index: int = 0) -> NvmlMeter | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        meter = NvmlMeter(handle, pynvml)
        meter.read()
    except Exception:  # pynvml raises NVMLError subclasses: no driver, no GPU, counter not supported
        return None
    return meter


def open_meter(source: str | None, rapl_root: str | Path = RAPL_ROOT) -> Meter | None:
    """A meter for ``"rapl"`` or ``"nvml"``; None when that counter cannot be read here."""
    if source == "rapl":
        zones = rapl_zones(rapl_root)
        return RaplMeter(zones) if zones else None
    if source == "nvml":
        return nvml_meter()
    return None


def energy_source(gpu: bool, rapl_root: str | Path = RAPL_ROOT) -> str | None:
    """Which counter measures a runtime here: NVML for GPU runtimes, RAPL for CPU ones."""
    source = "nvml" if gpu else "rapl"
    return source if open_meter(source, rapl_root) is not None else None
