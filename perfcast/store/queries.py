"""Read queries of the store: SELECT statements and the plain-dict rows they give."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from perfcast.store.models import Device, KernelProfile, Measurement, Network

# Output key -> column of the joined measurement rows.
MEASUREMENT_COLUMNS: dict[str, Any] = {
    "id": Measurement.id,
    "model": Network.source,
    "content_hash": Network.content_hash,
    "format": Network.format,
    "macs": Network.macs,
    "flops": Network.flops,
    "params": Network.params,
    "nodes": Network.nodes,
    "device": Device.name,
    "runtime": Device.runtime,
    "device_kind": Device.kind,
    "batch_size": Measurement.batch_size,
    "status": Measurement.status,
    "error_kind": Measurement.error_kind,
    "error_message": Measurement.error_message,
    "latency_ms_median": Measurement.latency_ms_median,
    "latency_ms_mean": Measurement.latency_ms_mean,
    "latency_ms_min": Measurement.latency_ms_min,
    "latency_ms_p10": Measurement.latency_ms_p10,
    "latency_ms_p90": Measurement.latency_ms_p90,
    "repeat_cv": Measurement.repeat_cv,
    "reference_ratio": Measurement.reference_ratio,
    "peak_memory_bytes": Measurement.peak_memory_bytes,
    "energy_mj": Measurement.energy_mj,
    "source": Measurement.source,
    "created_at": Measurement.created_at,
}

KERNEL_COLUMNS: dict[str, Any] = {
    name: getattr(KernelProfile, name)
    for name in ("seq", "kernel_name", "op_type", "provider", "node_names", "duration_us", "sample_count")
}

DEVICE_COLUMNS: dict[str, Any] = {
    name: getattr(Device, name)
    for name in ("id", "name", "runtime", "runtime_version", "hardware", "threads", "kind", "extra", "created_at")
}


def labelled(columns: dict[str, Any]) -> list:
    return [col.label(key) for key, col in columns.items()]


def network_filter(network: int | str) -> ColumnElement[bool]:
    """A network by id (int) or by content hash (str)."""
    if isinstance(network, str):
        return Network.content_hash == network
    return Network.id == network


def measurement_filters(
    *,
    network: int | str | None = None,
    device: str | None = None,
    device_id: int | None = None,
    batch_size: int | None = None,
    status: str | None = None,
    source: str | None = None,
) -> list[ColumnElement[bool]]:
    """WHERE clauses over the measurement/network/device join; ``None`` means any."""
    clauses = []
    if network is not None:
        clauses.append(network_filter(network))
    if device is not None:
        clauses.append(Device.name == device)
    if device_id is not None:
        clauses.append(Measurement.device_id == device_id)
    if batch_size is not None:
        clauses.append(Measurement.batch_size == batch_size)
    if status is not None:
        clauses.append(Measurement.status == status)
    if source is not None:
        clauses.append(Measurement.source == source)
    return clauses


def _joined(stmt: Select) -> Select:
    return stmt.select_from(Measurement).join(Network, Measurement.network_id == Network.id).join(
        Device, Measurement.device_id == Device.id
    )


def measurement_rows_stmt(with_samples: bool = False, **filters) -> Select:
    columns = dict(MEASUREMENT_COLUMNS)
    if with_samples:
        columns["raw_samples_ms"] = Measurement.raw_samples_ms
        columns["environment"] = Measurement.environment
    return _joined(select(*labelled(columns))).where(*measurement_filters(**filters)).order_by(Measurement.id)


def measurement_count_stmt(**filters) -> Select:
    return _joined(select(func.count(Measurement.id))).where(*measurement_filters(**filters))


def good_measurement_stmt(
    network: int | str, device_id: int, batch_size: int, max_cv: float | None
) -> Select:
    """A row exists when an ``ok`` measurement (with ``repeat_cv <= max_cv`` when given) exists."""
    stmt = (
        select(Measurement.id)
        .join(Network, Measurement.network_id == Network.id)
        .where(
            network_filter(network),
            Measurement.device_id == device_id,
            Measurement.batch_size == batch_size,
            Measurement.status == "ok",
        )
    )
    if max_cv is not None:
        stmt = stmt.where(Measurement.repeat_cv <= max_cv)
    return stmt.limit(1)


def kernel_rows_stmt(measurement_id: int) -> Select:
    return (
        select(*labelled(KERNEL_COLUMNS))
        .where(KernelProfile.measurement_id == measurement_id)
        .order_by(KernelProfile.seq, KernelProfile.id)
    )


def device_rows_stmt() -> Select:
    return select(*labelled(DEVICE_COLUMNS)).order_by(Device.name)
