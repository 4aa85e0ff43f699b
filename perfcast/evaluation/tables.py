"""Label tables for evaluation, read straight from dataset files (no store).

A :class:`LabelTable` is one device setting (a device at one batch size) of one source: the spec
strings of its networks and, per target, one label per spec (NaN where a cell is empty; a row
whose latency cell is empty is not in the table). Two sources are read:

- the shared public data (:mod:`perfcast.datasets.shared`): one table per device column of each
  CSV; HW-NAS-Bench's ``<device>_latency`` and ``<device>_energy`` are the two targets
  ``latency_ms`` and ``energy_mj`` of one table; HELP's ``<device>_<batch>`` columns are tables of
  that device at that batch size. A table's ``kind`` is ``estimated`` for simulator and lookup-table
  devices (``kind: estimated`` in :data:`perfcast.datasets.shared.DEVICES`), else ``measured``.
- a local dataset folder (``measurements.csv.gz`` of :mod:`perfcast.datasets.local`): one table per
  device, rows of status ``ok``, targets ``latency_ms`` (the median) and ``memory_bytes`` (the peak
  memory); the spec is the ``model`` column.

Every row carries two keys (see :func:`network_keys`): ``split`` names the architecture (train and
test sets are cut by it, so one architecture never lands on both sides) and ``rank`` names the
network (rank metrics collapse rows with one rank key into one label). For NAS-Bench-201 both use
:func:`perfcast.spaces.nb201.distinct_key` (15,625 strings are 6,466 networks); the rank key adds the
dataset, since one cell on CIFAR-10 and on ImageNet16-120 is two networks. Other networks are named
by the content hash of their batch-1 graph.

Graphs come from :class:`GraphCache`, which builds each (spec, batch size) once through
:func:`perfcast.api.load` and can be emptied between sources to bound memory.
"""

from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from perfcast.datasets import shared
from perfcast.errors import UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.profiles import KERNEL_FILE, read_kernels
from perfcast.spaces import nb201

LOCAL_FILE = "measurements.csv.gz"
LOCAL_TARGETS = {"latency_ms": "latency_ms_median", "memory_bytes": "peak_memory_bytes"}


@dataclass(frozen=True)
class LabelTable:
    """The labelled networks of one device setting of one source."""

    source: str
    device: str
    batch_size: int
    kind: str  # "measured" or "estimated"
    specs: tuple[str, ...]
    targets: dict[str, np.ndarray]  # target -> labels aligned with specs (NaN = no label)
    profiles: tuple[list[dict] | None, ...] | None = None  # kernel rows per spec (None: not profiled)

    @property
    def name(self) -> str:
        """The device setting: the device, with ``/b<N>`` when the batch size is not 1."""
        return self.device if self.batch_size == 1 else f"{self.device}/b{self.batch_size}"

    def __len__(self) -> int:
        return len(self.specs)

    def subset(self, index: Sequence[int]) -> "LabelTable":
        idx = np.asarray(index, dtype=int)
        return LabelTable(self.source, self.device, self.batch_size, self.kind,
                          tuple(self.specs[i] for i in idx), {t: y[idx] for t, y in self.targets.items()},
                          None if (kept := self.profiles_of(idx)) is None else tuple(kept))

    def profiles_of(self, index: Sequence[int]) -> list[list[dict] | None] | None:
        """The kernel profiles of the rows ``index``; None when none of them has one."""
        if self.profiles is None:
            return None
        out = [self.profiles[int(i)] for i in index]
        return out if any(p is not None for p in out) else None


class GraphCache:
    """Graphs of (spec, batch size) pairs, each built once by :func:`perfcast.api.load`."""

    def __init__(self) -> None:
        self._graphs: dict[tuple[str, int], Graph] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self.built = 0

    def graph(self, spec: str, batch_size: int = 1) -> Graph:
        key = (spec, batch_size)
        g = self._graphs.get(key)
        if g is None:
            from perfcast import api

            g = self._graphs[key] = api.load(spec, batch_size=batch_size)
            self.built += 1
        return g

    def graphs(self, table: LabelTable) -> list[Graph]:
        return [self.graph(s, table.batch_size) for s in table.specs]

    def keys(self, spec: str) -> tuple[str, str]:
        """(split key, rank key) of a spec (kept after :meth:`clear`)."""
        k = self._keys.get(spec)
        if k is None:
            k = self._keys[spec] = network_keys(spec, None if spec.startswith("nb201:") else self.graph(spec, 1))
        return k

    def split_keys(self, table: LabelTable) -> list[str]:
        return [self.keys(s)[0] for s in table.specs]

    def rank_keys(self, table: LabelTable) -> list[str]:
        return [self.keys(s)[1] for s in table.specs]

    def clear(self) -> None:
        """Drop every graph (keys stay)."""
        self._graphs.clear()


def network_keys(spec: str, graph_batch1: Graph | None) -> tuple[str, str]:
    """(split key, rank key) of a network: NAS-Bench-201's distinct cell (rank key: plus the
    dataset option), else the content hash of the batch-1 graph for both."""
    if spec.startswith("nb201:"):
        body, _, options = spec[len("nb201:"):].partition("?")
        split = "nb201:" + nb201.distinct_key(body)
        return split, split + ("?" + options if options else "")
    if graph_batch1 is None:
        raise ValueError(f"{spec}: a batch-1 graph is needed for its network key")
    return graph_batch1.content_hash, graph_batch1.content_hash


def space_of(spec: str) -> str:
    """The space (spec prefix) a network comes from: ``nb201``, ``fbnet``, ``zoo``..."""
    return spec.partition(":")[0]


# --- shared data --------------------------------------------------------------------------------
def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with gzip.open(path, "rt", newline="") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    except (OSError, EOFError, csv.Error) as exc:
        raise UsageError(str(path), f"cannot read ({type(exc).__name__}: {exc})") from None


def _cell(path: Path, row: dict[str, str], column: str | None) -> float:
    cell = row.get(column, "") if column else ""
    if cell in ("", None):
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise UsageError(str(path), f"arch_id {row.get('arch_id')}: {column}={cell!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(str(path), f"arch_id {row.get('arch_id')}: {column}={cell!r} is not a label")
    return value


def sample_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Indices of ``max_rows`` of ``n`` rows drawn without replacement (all rows, in order, when
    ``max_rows`` is None or not below ``n``), sorted."""
    if max_rows is None or max_rows >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def source_tables(folder: Path, source: shared.Source, max_rows: int | None = None, seed: int = 0,
                  devices: Iterable[str] | None = None, where: dict[str, str] | None = None) -> list[LabelTable]:
    """The tables of one shared-data file: one per device column (HW-NAS-Bench: per device),
    of ``max_rows`` CSV rows drawn with ``seed`` (the same rows for every table) among the rows
    whose columns have the values of ``where`` (a file without such a column has no rows)."""
    path = Path(folder) / source.file
    if not path.is_file():
        raise UsageError(str(folder), f"no {source.file} in the shared data folder")
    columns, rows = _read_csv(path)
    if where:
        rows = [r for r in rows if all(r.get(c) == v for c, v in where.items())]
    rows = [rows[i] for i in sample_rows(len(rows), max_rows, seed)]
    specs = [source.space.spec_for_row(source.file, row) for row in rows]
    wanted = None if devices is None else set(devices)
    tables = []
    for t in shared.targets(source, columns):
        if wanted is not None and t.device not in wanted:
            continue
        latency = np.array([_cell(path, row, t.latency) for row in rows])
        keep = np.flatnonzero(~np.isnan(latency))
        labels = {"latency_ms": latency[keep]}
        if t.energy:
            labels["energy_mj"] = np.array([_cell(path, rows[i], t.energy) for i in keep])
        kind = shared.DEVICES[t.device].get("kind", "measured")
        tables.append(LabelTable(source.name, t.device, t.batch_size, kind, tuple(specs[i] for i in keep), labels))
    return tables


def shared_tables(folder: str | Path | None = None, sources: Iterable[str] | None = None,
                  devices: Iterable[str] | None = None, max_rows: int | None = None,
                  seed: int = 0, where: dict[str, str] | None = None) -> list[LabelTable]:
    """Tables of the shared data folder (default: :func:`perfcast.datasets.shared.shared_folder`),
    of the named sources (default all) and devices (default all)."""
    path = shared.shared_folder(folder)
    chosen = [s for name in sources for s in shared.choose_sources(name)] if sources else shared.choose_sources()
    devices = list(devices) if devices is not None else None
    if devices is not None:
        unknown = [d for d in devices if d not in shared.DEVICES]
        if unknown:
            raise UsageError(unknown[0], f"unknown device (known: {', '.join(shared.DEVICES)})")
    return [t for s in chosen for t in source_tables(path, s, max_rows, seed, devices, where) if len(t)]


# --- local dataset ------------------------------------------------------------------------------
def local_tables(folder: str | Path, max_rows: int | None = None, seed: int = 0,
                 devices: Iterable[str] | None = None) -> list[LabelTable]:
    """One table per device of a local dataset folder (rows with status ``ok``), with the kernel
    profiles of ``kernels.csv.gz`` where a measurement has one."""
    path = Path(folder) / LOCAL_FILE
    if not path.is_file():
        raise UsageError(str(folder), f"not a dataset folder (no {LOCAL_FILE})")
    _, rows = _read_csv(path)
    rows = [r for r in rows if r.get("status") == "ok" and r.get(LOCAL_TARGETS["latency_ms"])]
    rows = [rows[i] for i in sample_rows(len(rows), max_rows, seed)]
    kernels = read_kernels(Path(folder) / KERNEL_FILE)
    wanted = None if devices is None else set(devices)
    tables = []
    for device in sorted({r["device"] for r in rows}):
        if wanted is not None and device not in wanted:
            continue
        mine = [r for r in rows if r["device"] == device]
        for batch in sorted({int(r.get("batch_size") or 1) for r in mine}):
            sel = [r for r in mine if int(r.get("batch_size") or 1) == batch]
            labels = {t: np.array([_cell(path, r, col) for r in sel]) for t, col in LOCAL_TARGETS.items()}
            tables.append(LabelTable(Path(folder).name, device, batch, "measured", tuple(r["model"] for r in sel),
                                     labels, tuple(kernels.get(r["measurement"]) for r in sel)))
    if wanted is not None and not tables:
        raise UsageError(",".join(sorted(wanted)), f"no such device in {path}")
    return tables


def is_local_folder(folder: str | Path) -> bool:
    return (Path(folder) / LOCAL_FILE).is_file()
