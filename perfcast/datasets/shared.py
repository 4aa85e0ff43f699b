"""Importers of the public measurements in the shared data folder into the store.

The folder (``../shared/data`` beside the repository, or ``$PERFCAST_SHARED_DATA``) holds
one gzip CSV per source, one row per architecture, one numeric column per device setting
(see its README). Each source becomes measurements with ``source = import:<name>``:

- ``hwnasbench_nb201`` (HW-NAS-Bench, NAS-Bench-201 on CIFAR-10/100 and ImageNet16-120,
  batch 1): columns ``<device>_latency`` (ms) and ``<device>_energy`` (mJ) of one device
  form ONE measurement (latency median and energy). ``eyeriss`` and ``fpga`` are simulator
  estimates and go to devices of kind ``estimated``. ``eyeriss_arithmetic_intensity`` is a
  property of the architecture on that simulator, not of the device, so it is kept in the
  ``environment`` of the eyeriss measurement (``arithmetic_intensity``).
- ``help_nasbench201``, ``help_fbnet``, ``help_ofa`` (HELP): latency columns
  ``<device>[_<batch>]`` in ms; no suffix means batch 1 (``essential_ph_1`` is a phone
  name, batch 1). The measurement links to the network built at that batch size.

Devices are named ``<source family>:<device>`` (``hwnasbench:edgegpu``, ``help:titanx``)
and described by :data:`DEVICES`. An empty cell adds no measurement. Values are stored as
published. Networks are the spaces' graphs of each row's spec string at the batch size,
one network per content hash with every spec string kept as a reference. They are stored
without IR (the spec string rebuilds it); each distinct graph is built and costed once,
and each distinct node costed once (:class:`CostCache`). Rows go in in chunks of
:data:`CHUNK_ROWS`, one transaction per chunk. Every measurement keeps its spec string and
``arch_id`` in its ``environment``; importing again adds only rows that are not in the
store yet.
"""

from __future__ import annotations

import csv
import gc
import gzip
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

from perfcast.errors import UsageError
from perfcast.ir.graph import Graph, Node
from perfcast.ops import UnknownShape, node_cost
from perfcast.spaces import fbnet, nb201, ofa
from perfcast.store import NetworkSummary

ENV_VAR = "PERFCAST_SHARED_DATA"
CHUNK_ROWS = 1000
_TFLITE = {"runtime": "tflite"}
_HELP = {"runtime": "unspecified"}
_SIMULATOR = {"runtime": "simulator", "kind": "estimated"}
_LOOKUP = {"runtime": "unspecified", "kind": "estimated",
           "extra": {"basis": "sum of per-layer latencies (presumed HW-NAS-Bench lookup tables), not a network run"}}

# Device name -> upsert_device arguments, as the data's README and the sources' papers describe them.
DEVICES: dict[str, dict[str, Any]] = {
    "hwnasbench:edgegpu": {"runtime": "tensorrt", "hardware": "NVIDIA Jetson TX2",
                           "extra": {"energy": "on-board power sensor"}},
    "hwnasbench:raspi4": {**_TFLITE, "hardware": "Raspberry Pi 4"},
    "hwnasbench:pixel3": {**_TFLITE, "hardware": "Google Pixel 3"},
    "hwnasbench:edgetpu": {**_TFLITE, "hardware": "Google Coral Edge TPU"},
    "hwnasbench:eyeriss": {**_SIMULATOR, "hardware": "Eyeriss ASIC (simulated)"},
    "hwnasbench:fpga": {**_SIMULATOR, "hardware": "FPGA accelerator (simulated)"},
    "help:1080ti": {**_HELP, "hardware": "NVIDIA GeForce GTX 1080 Ti"},
    "help:2080ti": {**_HELP, "hardware": "NVIDIA GeForce RTX 2080 Ti"},
    "help:titanx": {**_HELP, "hardware": "NVIDIA Titan X"},
    "help:titanxp": {**_HELP, "hardware": "NVIDIA Titan Xp"},
    "help:v100": {**_HELP, "hardware": "NVIDIA Tesla V100"},
    "help:silver_4114": {**_HELP, "hardware": "Intel Xeon Silver 4114"},
    "help:silver_4210r": {**_HELP, "hardware": "Intel Xeon Silver 4210R"},
    "help:gold_6240": {**_HELP, "hardware": "Intel Xeon Gold 6240"},
    "help:samsung_a50": {**_HELP, "hardware": "Samsung Galaxy A50", "extra": {"resolution_ms": 1}},
    "help:samsung_s7": {**_HELP, "hardware": "Samsung Galaxy S7", "extra": {"resolution_ms": 1}},
    "help:essential_ph_1": {**_HELP, "hardware": "Essential PH-1", "extra": {"resolution_ms": 1}},
    "help:pixel3": {**_LOOKUP, "hardware": "Google Pixel 3"},
    "help:raspi4": {**_LOOKUP, "hardware": "Raspberry Pi 4"},
    "help:eyeriss": {**_SIMULATOR, "hardware": "Eyeriss ASIC (simulated)"},
    "help:fpga": {**_SIMULATOR, "hardware": "FPGA accelerator (simulated)"},
}


@dataclass(frozen=True)
class Source:
    """One shared-data file: its import name, device family and architecture space."""

    name: str
    file: str
    family: str
    space: ModuleType


SOURCES = {s.name: s for s in (
    Source("hwnasbench_nb201", "hwnasbench_nb201.csv.gz", "hwnasbench", nb201),
    Source("help_nasbench201", "help_nasbench201_latency.csv.gz", "help", nb201),
    Source("help_fbnet", "help_fbnet_latency.csv.gz", "help", fbnet),
    Source("help_ofa", "help_ofa_latency.csv.gz", "help", ofa),
)}
ARCH_COLUMNS = {"arch_id", "arch_str", "dataset", "block_choices", "ofa_config"}


@dataclass(frozen=True)
class Target:
    """Where the cells of one measurement go: a device, a batch size and the columns
    holding its latency (ms), energy (mJ) and arithmetic intensity."""

    device: str
    batch_size: int
    latency: str
    energy: str | None = None
    intensity: str | None = None


def default_folder() -> Path:
    """``$PERFCAST_SHARED_DATA``, else ``shared/data`` beside the repository root."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def shared_folder(folder: str | Path | None = None) -> Path:
    """``folder`` (default :func:`default_folder`), checked to be a folder."""
    path = Path(folder) if folder is not None else default_folder()
    if not path.is_dir():
        raise UsageError(str(path), "shared data folder not found (give DIR or set PERFCAST_SHARED_DATA)")
    return path


def choose_sources(only: str | None = None) -> list[Source]:
    """Every source, or the one named ``only`` (by name or file name)."""
    if only is None:
        return list(SOURCES.values())
    chosen = [s for s in SOURCES.values() if only in (s.name, s.file)]
    if not chosen:
        raise UsageError(only, f"unknown shared data source (known: {', '.join(SOURCES)})")
    return chosen


def targets(source: Source, columns: Iterable[str]) -> list[Target]:
    """The measurements each row of ``source`` holds; an unknown column raises UsageError."""
    columns = [c for c in columns if c not in ARCH_COLUMNS]
    if source.family == "hwnasbench":
        return _hwnasbench_targets(source, columns)
    return [_help_target(source, c) for c in columns]


def _hwnasbench_targets(source: Source, columns: list[str]) -> list[Target]:
    metrics: dict[str, dict[str, str]] = {}
    for column in columns:
        device, _, metric = column.partition("_")
        if f"hwnasbench:{device}" not in DEVICES or metric not in ("latency", "energy", "arithmetic_intensity"):
            raise UsageError(source.file, f"unknown column {column!r}")
        metrics.setdefault(device, {})[metric] = column
    found = []
    for device, cols in metrics.items():
        if "latency" not in cols:
            raise UsageError(source.file, f"device {device} has {', '.join(cols.values())} but no latency column")
        found.append(Target(f"hwnasbench:{device}", 1, cols["latency"], cols.get("energy"),
                            cols.get("arithmetic_intensity")))
    return found


def _help_target(source: Source, column: str) -> Target:
    if f"help:{column}" in DEVICES:
        return Target(f"help:{column}", 1, column)
    device, _, batch = column.rpartition("_")
    if f"help:{device}" not in DEVICES or not batch.isdigit() or int(batch) < 1:
        raise UsageError(source.file, f"unknown column {column!r} (expected <device>[_<batch size>])")
    return Target(f"help:{device}", int(batch), column)


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _number(path: Path, row: dict[str, str], column: str | None) -> float | None:
    cell = row.get(column, "") if column else ""
    if cell == "":
        return None
    try:
        return float(cell)
    except ValueError:
        raise UsageError(str(path), f"arch_id {row.get('arch_id')}: {column}={cell!r} is not a number") from None


class CostCache:
    """The ``(macs, flops, params)`` totals of :func:`perfcast.analysis.analyze_graph`, with
    each distinct node costed once.

    A cost rule is a pure function of a node's op type, attributes and tensor shapes
    (:mod:`perfcast.ops.registry`), and the graphs of one space repeat a few hundred
    distinct nodes, so the cost of a node is kept under that signature (with the source
    format, and which inputs are the same tensor). Parameters are counted once per
    tensor name, as :func:`~perfcast.analysis.analyze_graph` counts them.
    """

    def __init__(self) -> None:
        self.costs: dict[tuple, tuple[int, int, tuple[tuple[int, int], ...]]] = {}

    def totals(self, graph: Graph) -> tuple[int, int, int]:
        macs = flops = params = 0
        counted: set[str] = set()
        for node in graph.nodes:
            macs_, flops_, param_inputs = self._node(graph, node)
            macs += macs_
            flops += flops_
            for position, numel in param_inputs:
                name = node.inputs[position]
                if name not in counted:
                    counted.add(name)
                    params += numel
        return macs, flops, params

    def _node(self, graph: Graph, node: Node) -> tuple[int, int, tuple[tuple[int, int], ...]]:
        """``(macs, flops, ((input position, numel) of each parameter input))`` of ``node``;
        zeros for a node without a rule or with an unknown shape (which the analysis skips)."""
        key = (graph.source_format, node.domain, node.op_type, tuple(node.attrs.items()),
               _signature(graph, node.inputs), _signature(graph, node.outputs),
               tuple(node.inputs.index(name) for name in node.inputs))
        cost = self.costs.get(key)
        if cost is None:
            try:
                found = node_cost(node, graph)
            except UnknownShape:
                found = None
            cost = self.costs[key] = (0, 0, ()) if found is None else (found.macs, found.flops, tuple(
                (node.inputs.index(name), graph.tensors[name].numel) for name in found.param_tensors))
        return cost


def _signature(graph: Graph, names: tuple[str, ...]) -> tuple:
    """What a cost rule may read of the tensors ``names``: shape, dtype, constancy, literal value."""
    found = []
    for name in names:
        t = graph.tensors.get(name) if name else None
        found.append(None if t is None else (t.shape, t.dtype, t.constant, t.value))
    return tuple(found)


class _Networks:
    """Network ids of ``(spec, batch size)`` pairs, building each distinct graph once.

    Networks are stored without IR (the spec rebuilds it, see
    :meth:`perfcast.store.Store.add_spec_networks`). NAS-Bench-201 strings that build one
    network on CIFAR-10 at batch 1 build one network on every dataset and batch size too
    (only shapes change), so such strings share the graph of the first string seen and
    only add their own reference.
    """

    def __init__(self, store, load: Callable[..., Any]) -> None:
        self.store = store
        self.load = load
        self.ids: dict[tuple[str, int], int] = {}  # (spec, batch size) -> network id
        self.key_ids: dict[tuple[str, int], int] = {}  # (canonical spec, batch size) -> network id
        self.nb201_first: dict[str, str] = {}  # CIFAR-10 batch-1 content hash -> first arch string
        self.nb201_alias: dict[str, str] = {}  # arch string -> first arch string with its network
        self.last: tuple[tuple[str, int] | None, Any] = (None, None)  # the graph built last
        self.costs = CostCache()

    def _graph(self, spec: str, batch: int):
        """The graph of ``spec`` at ``batch``; the one built last is kept, as the
        NAS-Bench-201 duplicate check builds the graph that is needed next."""
        if self.last[0] != (spec, batch):
            self.last = ((spec, batch), self.load(spec, batch_size=batch))
        return self.last[1]

    def _canonical(self, spec: str) -> str:
        """The spec whose graph stands for ``spec`` (itself unless a NAS-Bench-201 duplicate)."""
        if not spec.startswith("nb201:"):
            return spec
        body, sep, options = spec[len("nb201:"):].partition("?")
        if body not in self.nb201_alias:
            h = self._graph(nb201.spec_from_arch(body), 1).content_hash
            self.nb201_alias[body] = self.nb201_first.setdefault(h, body)
        return "nb201:" + self.nb201_alias[body] + sep + options

    def resolve(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Store the networks of ``pairs`` (and their references) in bulk."""
        todo = [p for p in dict.fromkeys(pairs) if p not in self.ids]
        keys: dict[tuple[str, int], tuple[str, int]] = {}
        summaries: dict[tuple[str, int], NetworkSummary] = {}
        for pair in todo:
            key = keys[pair] = (self._canonical(pair[0]), pair[1])
            if key not in self.key_ids and key not in summaries:
                graph = self._graph(*key)
                summaries[key] = NetworkSummary.of(graph, key[1], self.costs.totals(graph))
        self.last = (None, None)
        new = [pair for pair in todo if keys[pair] not in self.key_ids]
        ids = self.store.add_spec_networks([(summaries[keys[pair]], pair[0]) for pair in new])
        for pair, network_id in zip(new, ids):
            self.key_ids.setdefault(keys[pair], network_id)
        known = [pair for pair in todo if pair not in new]
        for pair in todo:
            self.ids[pair] = self.key_ids[keys[pair]]
        self.store.add_network_refs((self.ids[pair], pair[0]) for pair in known)


def _chunks(rows: list, size: int) -> Iterator[list]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def import_source(store, folder: str | Path, source: Source, networks: _Networks | None = None) -> dict[str, int]:
    """Import one shared-data file; return the number of measurements added per device."""
    from perfcast import api

    path = Path(folder) / source.file
    if not path.is_file():
        raise UsageError(str(folder), f"no {source.file} in the shared data folder")
    columns, rows = _read_rows(path)
    wanted = targets(source, columns)
    devices = {t.device: store.upsert_device(t.device, **DEVICES[t.device]) for t in wanted}
    label = f"import:{source.name}"
    done = store.measurement_keys(label, "spec")
    networks = networks or _Networks(store, api.load)
    added = {t.device: 0 for t in wanted}
    for chunk in _chunks(rows, CHUNK_ROWS):
        specs = [source.space.spec_for_row(source.file, row) for row in chunk]
        todo = [(row, spec, t) for row, spec in zip(chunk, specs) for t in wanted
                if row.get(t.latency, "") != "" and (t.device, t.batch_size, spec) not in done]
        networks.resolve((spec, t.batch_size) for _, spec, t in todo)
        measurements = [_measurement(path, row, spec, t, networks.ids[(spec, t.batch_size)], devices[t.device], label)
                        for row, spec, t in todo]
        store.add_measurements(measurements)
        for _, _, t in todo:
            added[t.device] += 1
    return added


def _measurement(path: Path, row: dict[str, str], spec: str, t: Target, network_id: int, device_id: int,
                 label: str) -> dict[str, Any]:
    environment: dict[str, Any] = {"spec": spec, "arch_id": int(row["arch_id"]), "column": t.latency}
    intensity = _number(path, row, t.intensity)
    if intensity is not None:
        environment["arithmetic_intensity"] = intensity
    return {
        "network_id": network_id, "device_id": device_id, "batch_size": t.batch_size,
        "latency_ms": {"median": _number(path, row, t.latency)},
        "energy_mj": _number(path, row, t.energy), "environment": environment, "source": label,
    }


def import_shared(store, folder: str | Path | None = None, only: str | None = None) -> dict[str, dict[str, int]]:
    """Import the shared data folder (or only the source ``only``, by name or file name);
    return the measurements added per source and device."""
    from perfcast import api

    folder = shared_folder(folder)
    chosen = choose_sources(only)
    networks = _Networks(store, api.load)
    with _rare_collections():
        return {s.name: import_source(store, folder, s, networks) for s in chosen}


@contextmanager
def _rare_collections(first_generation: int = 100_000) -> Iterator[None]:
    """Fewer cyclic garbage collections while many short-lived graphs are built (they form
    no reference cycles; collecting every 700 allocations costs a third of the time)."""
    before = gc.get_threshold()
    gc.set_threshold(first_generation, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
