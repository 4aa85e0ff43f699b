"""Kernel profiles as training data: fusion rules learned from them, the grouping of a graph's
nodes into runtime kernels by those rules, and the local dataset's loader.

A kernel profile (one per measured graph) is a list of rows in the store's shape
(:func:`perfcast.profiling.session.kernel_row`): ``kernel_name``, ``op_type``, ``provider``,
``node_names`` (the nodes of the ORIGINAL graph whose work the kernel does), ``duration_us`` and
``sample_count``. Rows named ``<folded>`` and ``<eliminated>`` list nodes that ran in no kernel
(constant subgraphs evaluated ahead of time, no-ops removed); ``<untimed>`` rows list nodes of
kernels without a time.

Fusion rules (:class:`FusionRules`) are learned, not listed: for every dataflow edge
``producer -> consumer`` of a profiled graph whose producer has that one consumer and whose two
nodes both ran in kernels, the pair of op types counts as seen, and as fused when both nodes are in
the same kernel. A pair is a rule when it was seen at least ``min_support`` times and fused in more
than ``min_share`` of them. Likewise every node's fate is counted per op type (with ``@const`` for a
node fed by constants only): an op type vanishes (costs nothing) when, seen ``min_support`` times or
more, it ran in no kernel more than ``min_share`` of the time.

:func:`group_kernels` applies the rules to a graph: nodes that vanish are dropped; in topological
order, a node joins the kernel of the latest of its producers that has it as single consumer and
whose op-type pair is a rule, else it opens a kernel. A kernel's type is the ``+``-joined kinds of
its members (op types, ``Conv:dw`` for depthwise), e.g. ``Conv+BatchNormalization+Relu``.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from perfcast.errors import UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.features import NODE_COLUMNS, NodeTable

VANISHED = ("<folded>", "<eliminated>")
UNTIMED = "<untimed>"
RULES_FORMAT = "perfcast-fusion-rules"
_N = {c: i for i, c in enumerate(NODE_COLUMNS)}


# --- the rules ---------------------------------------------------------------------------------------
def fate_key(table: NodeTable, i: int) -> str:
    """The op type a node's fate is counted under: ``Gather`` or ``Gather@const``."""
    return table.op_types[i] + ("@const" if table.column("const_fed")[i] else "")


@dataclass(frozen=True)
class FusionRules:
    """Counts learned from kernel profiles and the thresholds that turn them into rules.

    ``pairs[(producer op, consumer op)] = (fused, seen)``; ``fates[op key] = (vanished, seen)``.
    """

    pairs: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    fates: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    min_support: int = 5
    min_share: float = 0.5

    def _holds(self, counts: tuple[int, int] | None) -> bool:
        return counts is not None and counts[1] >= self.min_support and counts[0] > self.min_share * counts[1]

    def fuses(self, producer: str, consumer: str) -> bool:
        return self._holds(self.pairs.get((producer, consumer)))

    def vanishes(self, key: str) -> bool:
        return self._holds(self.fates.get(key))

    def rules(self) -> list[tuple[str, str]]:
        """The fused op-type pairs, sorted."""
        return sorted(p for p, c in self.pairs.items() if self._holds(c))

    def vanishing(self) -> list[str]:
        return sorted(k for k, c in self.fates.items() if self._holds(c))

    def to_text(self) -> str:
        return json.dumps({
            "format": RULES_FORMAT, "min_support": self.min_support, "min_share": self.min_share,
            "rules": [list(p) for p in self.rules()], "vanishing": self.vanishing(),
            "pairs": [[p, c, *n] for (p, c), n in sorted(self.pairs.items())],
            "fates": [[k, *n] for k, n in sorted(self.fates.items())],
        }, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str, source: str = "fusion rules") -> "FusionRules":
        try:
            d = json.loads(text)
            if d.get("format") != RULES_FORMAT:
                raise ValueError("not perfcast fusion rules")
            return cls({(p, c): (int(f), int(n)) for p, c, f, n in d["pairs"]},
                       {k: (int(v), int(n)) for k, v, n in d["fates"]}, int(d["min_support"]), float(d["min_share"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UsageError(source, f"not fusion rules written by FusionRules.to_text ({exc})") from None


class ProfiledKernel(NamedTuple):
    members: tuple[int, ...]  # node indices, ascending
    duration_ms: float


@dataclass(frozen=True)
class MappedProfile:
    """A profile mapped onto a graph's node indices."""

    kernels: tuple[ProfiledKernel, ...]  # timed kernels that did original nodes' work
    unattributed_ms: float  # time of kernels that did no original node's work (layout reorders)
    vanished: frozenset[int]


def map_profile(table: NodeTable, rows: Sequence[Mapping]) -> MappedProfile | None:
    """The kernels of ``rows`` as node indices of ``table``; None when no node name matches (a
    profile of another graph)."""
    index = {name: i for i, name in enumerate(table.names)}
    kernels, vanished, extra, matched = [], set(), 0.0, 0
    for row in rows:
        members = tuple(sorted(index[n] for n in row["node_names"] if n in index))
        matched += len(members)
        name = row.get("kernel_name") or ""
        if name in VANISHED:
            vanished.update(members)
        elif name == UNTIMED:
            continue
        elif members:
            kernels.append(ProfiledKernel(members, float(row["duration_us"]) / 1000.0))
        else:
            extra += float(row["duration_us"]) / 1000.0
    if not matched:
        return None
    return MappedProfile(tuple(kernels), extra, frozenset(vanished))


def learn_rules(tables: Sequence[NodeTable], profiles: Sequence[Sequence[Mapping] | None],
                min_support: int = 5, min_share: float = 0.5) -> FusionRules:
    """Count op-type pairs and node fates over the profiled graphs (see the module docstring)."""
    pairs: dict[tuple[str, str], list[int]] = {}
    fates: dict[str, list[int]] = {}
    for table, rows in zip(tables, profiles):
        mapped = map_profile(table, rows) if rows else None
        if mapped is None:
            continue
        kernel_of = {i: k for k, kern in enumerate(mapped.kernels) for i in kern.members}
        for i in range(len(table)):
            if i in mapped.vanished or i in kernel_of:
                slot = fates.setdefault(fate_key(table, i), [0, 0])
                slot[0] += i in mapped.vanished
                slot[1] += 1
            if len(table.consumers[i]) != 1 or i not in kernel_of:
                continue
            c = table.consumers[i][0]
            if c in kernel_of:
                slot = pairs.setdefault((table.op_types[i], table.op_types[c]), [0, 0])
                slot[0] += kernel_of[i] == kernel_of[c]
                slot[1] += 1
    return FusionRules({k: tuple(v) for k, v in pairs.items()}, {k: tuple(v) for k, v in fates.items()},
                       min_support, min_share)


# --- grouping --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kernels:
    """A graph's nodes grouped into kernels; ``vanished`` nodes run in none."""

    groups: tuple[tuple[int, ...], ...]
    types: tuple[str, ...]
    vanished: frozenset[int]


def kernel_type(table: NodeTable, members: Sequence[int]) -> str:
    return "+".join(table.kinds[i] for i in members)


def group_kernels(table: NodeTable, rules: FusionRules) -> Kernels:
    """Group the nodes of ``table`` into kernels with ``rules`` (see the module docstring)."""
    vanished = frozenset(i for i in range(len(table)) if rules.vanishes(fate_key(table, i)))
    group_of: dict[int, int] = {}
    groups: list[list[int]] = []
    for i in range(len(table)):
        if i in vanished:
            continue
        host = next((p for p in reversed(table.producers[i])
                     if p in group_of and len(table.consumers[p]) == 1
                     and rules.fuses(table.op_types[p], table.op_types[i])), None)
        if host is None:
            group_of[i] = len(groups)
            groups.append([i])
        else:
            group_of[i] = group_of[host]
            groups[group_of[host]].append(i)
    members = tuple(tuple(g) for g in groups)
    return Kernels(members, tuple(kernel_type(table, g) for g in members), vanished)


# --- kernel features -------------------------------------------------------------------------------
KERNEL_FEATURES = ("macs", "flops", "bytes", "in_elems", "out_elems", "weight_elems", "kernel", "in_channels",
                   "out_channels", "stride", "group", "inner_dim", "members")


def kernel_features(table: NodeTable, members: Sequence[int]) -> np.ndarray:
    """:data:`KERNEL_FEATURES` of one kernel. Traffic and elements are external: what members
    produce for other members (an edge fused away) is neither written nor read back. Shape
    attributes are those of the member with the most MACs (the first on ties), ``inner_dim`` that
    of the last member."""
    m = list(members)
    inside = set(m)
    v = table.values[m]
    internal = v[[len(table.consumers[i]) == 1 and table.consumers[i][0] in inside for i in m]].sum(axis=0)
    total = v.sum(axis=0)
    head = v[int(np.argmax(v[:, _N["macs"]]))]
    # external traffic is never negative: a member may count less of an internal tensor than its
    # producer wrote (an input computed from constants only, which is not counted as read)
    return np.array([
        total[_N["macs"]], total[_N["flops"]],
        max(total[_N["bytes_read"]] + total[_N["bytes_written"]] - 2.0 * internal[_N["bytes_written"]], 0.0),
        max(total[_N["in_elems"]] - internal[_N["out_elems"]], 0.0),
        max(total[_N["out_elems"]] - internal[_N["out_elems"]], 0.0),
        total[_N["weight_elems"]], head[_N["kernel"]], head[_N["in_channels"]], head[_N["out_channels"]],
        head[_N["stride"]], head[_N["group"]], v[-1, _N["inner_dim"]], float(len(m)),
    ])


# --- the local dataset ---------------------------------------------------------------------------------
class LocalDataset(NamedTuple):
    graphs: list[Graph]
    targets: dict[str, np.ndarray]
    kernel_profiles: list[list[dict] | None]
    models: list[str]  # spec strings
    skipped: int  # measurements whose spec no longer builds the measured network


def space_of(spec: str) -> str:
    return spec.split(":", 1)[0]


KERNEL_FILE = "kernels.csv.gz"


def read_kernels(path: Path) -> dict[str, list[dict]]:
    """Kernel rows per measurement id of a dataset's ``kernels.csv.gz`` (empty when absent)."""
    out: dict[str, list[dict]] = {}
    if not path.is_file():
        return out
    with gzip.open(path, "rt", newline="") as f:
        for k in csv.DictReader(f):
            out.setdefault(k["measurement"], []).append({
                "kernel_name": k["kernel_name"], "op_type": k["op_type"], "provider": k["provider"] or None,
                "node_names": json.loads(k["node_names"]), "duration_us": float(k["duration_us"]),
                "sample_count": int(k["sample_count"]),
            })
    return out


def _label(value: str) -> float:
    return float(value) if value not in ("", None) else float("nan")


def load_local_dataset(folder: str | Path, spaces: Sequence[str] | None = None, per_space: int | None = None,
                       profiled_only: bool = False) -> LocalDataset:
    """Graphs, labels and kernel profiles of a dataset folder written by ``perfcast dataset export``
    (``measurements.csv.gz`` + ``kernels.csv.gz``): successful measurements, in file order, of the
    ``spaces`` given (spec prefixes such as ``ofa`` or ``zoo``; all by default), at most
    ``per_space`` of each, only those with a profile if ``profiled_only``. Targets are
    ``latency_ms`` (the drift-corrected median), ``memory_bytes`` (peak) and ``energy_mj`` where
    measured. A measurement whose spec now builds a network with another content hash (a space
    changed since) is skipped and counted in ``skipped``."""
    from perfcast.api import load

    src = Path(folder)
    if not (src / "measurements.csv.gz").is_file():
        raise UsageError(str(folder), "not a dataset folder (no measurements.csv.gz)")
    kernels = read_kernels(src / KERNEL_FILE)
    with gzip.open(src / "measurements.csv.gz", "rt", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    taken: dict[str, int] = {}
    graphs, profiles, models, labels, skipped = [], [], [], [], 0
    for r in rows:
        space = space_of(r["model"])
        if (spaces is not None and space not in spaces) or (profiled_only and r["measurement"] not in kernels):
            continue
        if per_space is not None and taken.get(space, 0) >= per_space:
            continue
        graph = load(r["model"], batch_size=int(r["batch_size"] or 1))
        if graph.content_hash != r["content_hash"]:
            skipped += 1
            continue
        taken[space] = taken.get(space, 0) + 1
        graphs.append(graph)
        profiles.append(kernels.get(r["measurement"]))
        models.append(r["model"])
        labels.append((_label(r["latency_ms_median"]), _label(r["peak_memory_bytes"]), _label(r["energy_mj"])))
    y = np.array(labels, float).reshape(-1, 3)
    targets = {name: y[:, j] for j, name in enumerate(("latency_ms", "memory_bytes", "energy_mj"))
               if (~np.isnan(y[:, j])).any()}
    return LocalDataset(graphs, targets, profiles, models, skipped)
