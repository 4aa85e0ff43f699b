"""The typed API over the store: add devices, networks, measurements and kernel
profiles, and read them back as plain dicts.

Every ``add_*``/``upsert_*`` call commits its own transaction before it returns,
so a process killed at any point loses nothing that a call already returned.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence, TypedDict, TypeVar

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from perfcast.analysis import analyze_graph
from perfcast.errors import ModelLoadError
from perfcast.ir.graph import Graph
from perfcast.ir.serialize import dumps, loads
from perfcast.store import queries
from perfcast.store.db import open_engine, write_transaction
from perfcast.store.models import (
    DEVICE_KINDS,
    REF_MAX_CHARS,
    STATUSES,
    Device,
    KernelProfile,
    Measurement,
    Network,
    NetworkRef,
)

LATENCY_STATS = ("median", "mean", "min", "p10", "p90")
# Most values in one SQL IN list (SQLite allows 32,766 bound parameters per statement).
IN_LIST_MAX = 5000
T = TypeVar("T")


class _KernelRowRequired(TypedDict):
    kernel_name: str
    op_type: str
    node_names: Sequence[str]
    duration_us: float
    sample_count: int


class KernelRow(_KernelRowRequired, total=False):
    """One kernel of a measurement, as given to :meth:`Store.add_kernel_profiles`;
    ``seq`` defaults to the row's position."""

    provider: str | None
    seq: int


def _finite(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value}")
    return value


def _json_object(name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    value = dict(value or {})
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not plain JSON ({exc})") from None
    return value


def _latency_columns(status: str, latency_ms: Mapping[str, float] | None) -> dict[str, float | None]:
    latency_ms = dict(latency_ms or {})
    unknown = set(latency_ms) - set(LATENCY_STATS)
    if unknown:
        raise ValueError(f"latency_ms has unknown keys {sorted(unknown)} (known: {', '.join(LATENCY_STATS)})")
    if status == "ok" and latency_ms.get("median") is None:
        raise ValueError("an ok measurement needs latency_ms['median']")
    return {f"latency_ms_{k}": _finite(f"latency_ms[{k!r}]", latency_ms.get(k)) for k in LATENCY_STATS}


def measurement_values(
    network_id: int,
    device_id: int,
    *,
    batch_size: int,
    status: str = "ok",
    latency_ms: Mapping[str, float] | None = None,
    repeat_cv: float | None = None,
    raw_samples_ms: Sequence[float] | None = None,
    reference_ratio: float | None = None,
    peak_memory_bytes: int | None = None,
    energy_mj: float | None = None,
    error_kind: str | None = None,
    error_message: str | None = None,
    environment: Mapping[str, Any] | None = None,
    source: str = "profiler",
) -> dict[str, Any]:
    """Check one measurement and return its column values.

    ``latency_ms`` maps median/mean/min/p10/p90 to milliseconds per batch; an ``ok``
    measurement needs the median, one that ``failed`` or hit a ``timeout`` needs
    ``error_kind``. Values that were not measured stay ``None``.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if status != "ok" and not error_kind:
        raise ValueError(f"a {status} measurement needs error_kind")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    if source != "profiler" and not (source.startswith("import:") and len(source) > len("import:")):
        raise ValueError(f"source must be 'profiler' or 'import:<dataset>', not {source!r}")
    if peak_memory_bytes is not None and (int(peak_memory_bytes) != peak_memory_bytes or peak_memory_bytes < 0):
        raise ValueError(f"peak_memory_bytes must be a non-negative integer, not {peak_memory_bytes!r}")
    samples = None
    if raw_samples_ms is not None:
        samples = [_finite("raw_samples_ms", s) for s in raw_samples_ms]
    return {
        "network_id": network_id,
        "device_id": device_id,
        "batch_size": batch_size,
        "status": status,
        "error_kind": error_kind,
        "error_message": error_message,
        **_latency_columns(status, latency_ms),
        "repeat_cv": _finite("repeat_cv", repeat_cv),
        "raw_samples_ms": samples,
        "reference_ratio": _finite("reference_ratio", reference_ratio),
        "peak_memory_bytes": int(peak_memory_bytes) if peak_memory_bytes is not None else None,
        "energy_mj": _finite("energy_mj", energy_mj),
        "environment": _json_object("environment", environment),
        "source": source,
    }


def _kernel_values(measurement_id: int, position: int, row: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(row) - KernelRow.__required_keys__ - KernelRow.__optional_keys__
    missing = KernelRow.__required_keys__ - set(row)
    if unknown or missing:
        raise ValueError(f"kernel row {position} has unknown keys {sorted(unknown)} / lacks {sorted(missing)}")
    names = row["node_names"]
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"node_names must be a list of node names, not {names!r}")
    return {
        "measurement_id": measurement_id,
        "seq": int(row.get("seq", position)),
        "kernel_name": row["kernel_name"],
        "op_type": row["op_type"],
        "provider": row.get("provider"),
        "node_names": list(names),
        "duration_us": _finite("duration_us", row["duration_us"]),
        "sample_count": int(row["sample_count"]),
    }


class Store:
    """An open measurement store; create it with :func:`open_store`.

    Safe to use from several threads; a child process opens its own store
    instead of inheriting one across ``fork``.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------
    def _write(self, fn: Callable[[Connection], T], retry_conflict: bool = False) -> T:
        """Run ``fn`` in one committed write transaction. With ``retry_conflict`` a
        unique-key clash with a concurrent writer is retried once (it then finds the row)."""
        try:
            with write_transaction(self.engine) as conn:
                return fn(conn)
        except IntegrityError:
            if not retry_conflict:
                raise
        with write_transaction(self.engine) as conn:
            return fn(conn)

    def upsert_device(
        self,
        name: str,
        *,
        runtime: str,
        runtime_version: str | None = None,
        hardware: str | None = None,
        threads: int | None = None,
        kind: str = "measured",
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Insert the device ``name``, or replace its description with these values; return its id."""
        if kind not in DEVICE_KINDS:
            raise ValueError(f"device kind must be one of {', '.join(DEVICE_KINDS)}, not {kind!r}")
        values = {
            "runtime": runtime, "runtime_version": runtime_version, "hardware": hardware,
            "threads": threads, "kind": kind, "extra": _json_object("extra", extra),
        }

        def upsert(conn: Connection) -> int:
            found = conn.scalar(select(Device.id).where(Device.name == name))
            if found is None:
                return conn.scalar(insert(Device).values(name=name, **values).returning(Device.id))
            conn.execute(update(Device).where(Device.id == found).values(**values))
            return found

        return self._write(upsert, retry_conflict=True)

    def add_network(self, graph: Graph, ref: str | os.PathLike) -> int:
        """Store ``graph`` once per content hash and register ``ref`` as one of its names;
        return the network id. Adding the same graph again only adds a new name."""
        return self.add_networks([(graph, ref)])[0]

    def add_networks(self, items: Sequence[tuple[Graph, str | os.PathLike]]) -> list[int]:
        """:meth:`add_network` for many ``(graph, ref)`` pairs in one transaction; return
        the network ids in order (graphs with one content hash share one network)."""
        items = [(graph, _checked_ref(ref)) for graph, ref in items]
        hashes = list(dict.fromkeys(graph.content_hash for graph, _ in items))
        if not hashes:
            return []
        known = self.network_ids(hashes)
        firsts: dict[str, tuple[Graph, str]] = {}
        for graph, ref in items:
            firsts.setdefault(graph.content_hash, (graph, ref))
        rows = {h: _network_values(*firsts[h]) for h in hashes if h not in known}
        return self._write(lambda conn: _add_networks(conn, rows, [(g.content_hash, r) for g, r in items]),
                           retry_conflict=True)

    def add_spec_networks(self, items: Sequence[tuple["NetworkSummary", str]]) -> list[int]:
        """Store networks built from spec strings without their IR, with ``(summary, ref)``
        pairs, in one transaction: each summary's network once per content hash (under the
        first ``ref`` naming it, which must rebuild it at ``summary.batch_size``), each
        ``ref`` as one of its names. Return the network ids in order."""
        items = [(summary, _checked_ref(ref)) for summary, ref in items]
        rows: dict[str, dict[str, Any]] = {}
        for summary, ref in items:
            if summary.content_hash not in rows:
                rows[summary.content_hash] = summary.values(ref)
        return self._write(lambda conn: _add_networks(conn, rows, [(s.content_hash, r) for s, r in items]),
                           retry_conflict=True)

    def add_network_refs(self, pairs: Iterable[tuple[int, str | os.PathLike]]) -> int:
        """Register many ``(network id, reference)`` names in one transaction; names a network
        already has are skipped. Return the number added."""
        wanted = [(network_id, _checked_ref(ref)) for network_id, ref in pairs]
        if not wanted:
            return 0
        return self._write(lambda conn: _add_refs(conn, wanted), retry_conflict=True)

    def add_measurement(self, network_id: int, device_id: int, **fields: Any) -> int:
        """Append one measurement (fields as in :func:`measurement_values`); return its id."""
        values = measurement_values(network_id, device_id, **fields)
        return self._write(lambda conn: conn.scalar(insert(Measurement).values(values).returning(Measurement.id)))

    def add_measurements(self, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Append many measurements in one transaction (each row holds ``network_id``,
        ``device_id`` and the fields of :func:`measurement_values`); return their ids in order."""
        values = [measurement_values(**row) for row in rows]
        if not values:
            return []
        stmt = insert(Measurement).returning(Measurement.id, sort_by_parameter_order=True)
        return self._write(lambda conn: list(conn.scalars(stmt, values)))

    def add_kernel_profiles(self, measurement_id: int, rows: Iterable[KernelRow]) -> int:
        """Append the kernel profile of a measurement; return the number of rows added."""
        values = [_kernel_values(measurement_id, i, row) for i, row in enumerate(rows)]
        if values:
            self._write(lambda conn: conn.execute(insert(KernelProfile), values))
        return len(values)

    # -- reading -------------------------------------------------------------------
    def _scalar(self, stmt) -> Any:
        with self.engine.connect() as conn:
            return conn.scalar(stmt)

    def _dicts(self, stmt) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    def find_network(self, ref_or_hash: str) -> int | None:
        """The network with this content hash, else the one most recently registered under this reference."""
        found = self._scalar(select(Network.id).where(Network.content_hash == ref_or_hash))
        if found is not None:
            return found
        return self._scalar(
            select(NetworkRef.network_id).where(NetworkRef.ref == ref_or_hash).order_by(NetworkRef.id.desc()).limit(1)
        )

    def network_refs(self, network_id: int) -> list[str]:
        """The references registered for a network, oldest first."""
        with self.engine.connect() as conn:
            return list(
                conn.scalars(select(NetworkRef.ref).where(NetworkRef.network_id == network_id).order_by(NetworkRef.id))
            )

    def network_ids(self, hashes: Iterable[str]) -> dict[str, int]:
        """The ids of the networks with these content hashes (hashes not stored are left out)."""
        with self.engine.connect() as conn:
            return _ids_of(conn, list(dict.fromkeys(hashes)))

    def network_graph(self, network_id: int) -> Graph:
        """The IR graph of a network: the stored IR, else the graph its spec string rebuilds.

        Raises :class:`perfcast.errors.ModelLoadError` when the spec now builds another
        graph than the stored one (the space's code changed since it was stored).
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(Network.ir_json, Network.source, Network.batch_size, Network.content_hash)
                               .where(Network.id == network_id)).first()
        if row is None:
            raise KeyError(f"no network with id {network_id}")
        if row.ir_json:
            return loads(row.ir_json, source=f"network {network_id}")
        from perfcast import api

        graph = api.load(row.source, batch_size=row.batch_size)
        if graph.content_hash != row.content_hash:
            raise ModelLoadError(f"network {network_id}", f"{row.source} now builds another graph "
                                 f"({graph.content_hash}, not {row.content_hash}) and its IR was not stored")
        return graph

    def measurement_keys(self, source: str, key: str) -> set[tuple[str, int, Any]]:
        """``(device name, batch size, environment[key])`` of every measurement from ``source``
        (status ignored): what an importer has already added."""
        stmt = (select(Device.name, Measurement.batch_size, Measurement.environment[key].as_string())
                .join(Device, Measurement.device_id == Device.id).where(Measurement.source == source))
        with self.engine.connect() as conn:
            return {tuple(r) for r in conn.execute(stmt)}

    def reference_baselines(self, device_id: int) -> tuple[float | None, float | None]:
        """The drift baselines ``(A, M)`` in ms (:mod:`perfcast.profiling.protocol`) of the device's
        first measurement that this store's profiler made and that recorded them, ``(None, None)``
        when none did (an imported dataset's baselines were taken on another machine)."""
        env = Measurement.environment
        compute, memory = env["reference_baseline_ms"].as_float(), env["memory_reference_baseline_ms"].as_float()
        stmt = (select(compute, memory).where(Measurement.device_id == device_id, Measurement.source == "profiler",
                                              compute.is_not(None))
                .order_by(Measurement.id).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return (None, None) if row is None else (float(row[0]), None if row[1] is None else float(row[1]))

    def has_good_measurement(
        self, network: int | str, device_id: int, batch_size: int, max_cv: float | None = None
    ) -> bool:
        """Whether an ``ok`` measurement of ``network`` (id, or content hash) exists on the
        device at this batch size, with ``repeat_cv <= max_cv`` when ``max_cv`` is given
        (a measurement without a recorded CV then does not count)."""
        return self._scalar(queries.good_measurement_stmt(network, device_id, batch_size, max_cv)) is not None

    def measurement_rows(
        self,
        *,
        status: str | None = "ok",
        device: str | None = None,
        network: int | str | None = None,
        batch_size: int | None = None,
        source: str | None = None,
        with_samples: bool = False,
    ) -> list[dict[str, Any]]:
        """Measurements joined with their network and device, oldest first, as plain dicts
        (keys in :data:`perfcast.store.queries.MEASUREMENT_COLUMNS`; ``model`` is the
        reference the network was first stored under). ``None`` filters nothing;
        ``with_samples`` adds the raw samples and the measuring environment."""
        return self._dicts(
            queries.measurement_rows_stmt(
                with_samples, status=status, device=device, network=network, batch_size=batch_size, source=source
            )
        )

    def kernel_profile_rows(self, measurement_id: int) -> list[dict[str, Any]]:
        return self._dicts(queries.kernel_rows_stmt(measurement_id))

    def device_rows(self) -> list[dict[str, Any]]:
        return self._dicts(queries.device_rows_stmt())

    def count_devices(self) -> int:
        return self._scalar(select(func.count(Device.id)))

    def count_networks(self) -> int:
        return self._scalar(select(func.count(Network.id)))

    def count_measurements(
        self, *, status: str | None = None, device_id: int | None = None, network: int | str | None = None
    ) -> int:
        return self._scalar(queries.measurement_count_stmt(status=status, device_id=device_id, network=network))

    def count_kernel_profiles(self, measurement_id: int | None = None) -> int:
        stmt = select(func.count(KernelProfile.id))
        if measurement_id is not None:
            stmt = stmt.where(KernelProfile.measurement_id == measurement_id)
        return self._scalar(stmt)


@dataclass(frozen=True)
class NetworkSummary:
    """What the store keeps of a network that a spec string rebuilds: its content hash,
    the batch size it was built at, its format and the totals of
    :func:`perfcast.analysis.analyze_graph`."""

    content_hash: str
    batch_size: int
    format: str
    macs: int
    flops: int
    params: int
    nodes: int

    @classmethod
    def of(cls, graph: Graph, batch_size: int, totals: tuple[int, int, int] | None = None) -> "NetworkSummary":
        """The summary of ``graph`` (built at ``batch_size``); ``totals`` are its
        ``(macs, flops, params)`` where already known, else it is analysed."""
        if totals is None:
            analysis = analyze_graph(graph)
            totals = (analysis.macs, analysis.flops, analysis.params)
        return cls(graph.content_hash, batch_size, graph.source_format or "unknown", *totals, len(graph.nodes))

    def values(self, ref: str) -> dict[str, Any]:
        """Column values of the network, first named ``ref``, without IR."""
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {self.batch_size!r}")
        return {**asdict(self), "source": ref, "ir_json": ""}


def _checked_ref(ref: str | os.PathLike) -> str:
    ref = os.fspath(ref)
    if not ref or len(ref) > REF_MAX_CHARS:
        raise ValueError(f"a network reference needs 1 to {REF_MAX_CHARS} characters, not {len(ref)}")
    return ref


def _network_values(graph: Graph, ref: str) -> dict[str, Any]:
    analysis = analyze_graph(graph)
    return {
        "content_hash": graph.content_hash,
        "source": ref,
        "format": graph.source_format or "unknown",
        "ir_json": dumps(graph),
        "macs": analysis.macs,
        "flops": analysis.flops,
        "params": analysis.params,
        "nodes": len(graph.nodes),
    }


def _in_chunks(values: Sequence[T], size: int = IN_LIST_MAX) -> Iterable[Sequence[T]]:
    return (values[i:i + size] for i in range(0, len(values), size))


def _ids_of(conn: Connection, hashes: Sequence[str]) -> dict[str, int]:
    """Content hash -> id of the stored networks among ``hashes``."""
    found: dict[str, int] = {}
    for part in _in_chunks(hashes):
        found.update(conn.execute(select(Network.content_hash, Network.id).where(Network.content_hash.in_(part))).all())
    return found


def _add_networks(conn: Connection, rows: Mapping[str, dict[str, Any]], named: Sequence[tuple[str, str]]) -> list[int]:
    """Insert the ``rows`` (by content hash) not stored yet and the ``(content hash, ref)``
    names; return the network id of each name."""
    ids = _ids_of(conn, list(rows) + [h for h, _ in named if h not in rows])
    new = [row for h, row in rows.items() if h not in ids]
    if new:
        conn.execute(insert(Network), new)
        ids.update(_ids_of(conn, [row["content_hash"] for row in new]))
    network_ids = [ids[h] for h, _ in named]
    _add_refs(conn, list(zip(network_ids, (ref for _, ref in named))))
    return network_ids


def _add_refs(conn: Connection, pairs: Sequence[tuple[int, str]]) -> int:
    """Insert the ``(network id, ref)`` names a network does not have yet; return how many."""
    wanted = list(dict.fromkeys(pairs))
    have: set[tuple[int, str]] = set()
    for part in _in_chunks(sorted({n for n, _ in wanted})):
        have.update(conn.execute(
            select(NetworkRef.network_id, NetworkRef.ref).where(NetworkRef.network_id.in_(part))).all())
    new = [{"network_id": n, "ref": r} for n, r in wanted if (n, r) not in have]
    if new:
        conn.execute(insert(NetworkRef), new)
    return len(new)


def open_store(url: str | os.PathLike | None = None) -> Store:
    """Open the store at ``url`` (default: ``$PERFCAST_DB``, else ``~/.perfcast/perfcast.db``),
    creating or upgrading its schema. A URL that cannot be opened raises
    :class:`perfcast.errors.UsageError`."""
    engine, label = open_engine(url)
    return Store(engine, label)
