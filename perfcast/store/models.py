"""Tables of the measurement store, as typed SQLAlchemy 2 declarative models.

Units are part of the column names: ``*_ms`` milliseconds per batch, ``*_bytes``
bytes, ``energy_mj`` millijoules per batch, ``duration_us`` microseconds per
inference. Measurements and kernel profiles are append-only: measuring a network
again adds a row; nothing is updated in place. A value that was not measured
(energy on a machine without counters, memory of a failed run) is NULL.

The schema itself is created by the migrations in :mod:`perfcast.store.migrations`;
these models describe it and a test checks that both agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

DEVICE_KINDS = ("measured", "estimated")
STATUSES = ("ok", "failed", "timeout")
REF_MAX_CHARS = 2048

# Constraint names are fixed so that later migrations can address them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Python None is SQL NULL (not the JSON value null) in every JSON column.
JsonType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL that checks ``column`` against a list of string values."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value} has no time zone")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JsonType, list[Any]: JsonType, datetime: UTCDateTime}


class Device(Base):
    """A runtime on a piece of hardware: ``kind`` is ``measured`` for a device that
    perfcast profiled, ``estimated`` for one known only through imported or adapted data."""

    __tablename__ = "devices"
    __table_args__ = (CheckConstraint(one_of("kind", DEVICE_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    runtime: Mapped[str] = mapped_column(String(64))
    runtime_version: Mapped[str | None] = mapped_column(String(64))
    hardware: Mapped[str | None] = mapped_column(String(300))
    threads: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    extra: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Network(Base):
    """One distinct architecture, identified by :attr:`perfcast.ir.graph.Graph.content_hash`.

    ``source`` is the reference it was first added under; ``ir_json`` is the IR as
    written by :func:`perfcast.ir.serialize.dumps`; ``macs``, ``flops`` and ``params``
    are those of :func:`perfcast.analysis.analyze_graph`. A network built from a spec
    string may keep no IR: ``ir_json`` is then empty and ``batch_size`` is set, and the
    graph is ``perfcast.api.load(source, batch_size=batch_size)``.
    """

    __tablename__ = "networks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(REF_MAX_CHARS))
    format: Mapped[str] = mapped_column(String(32))
    ir_json: Mapped[str] = mapped_column(Text)
    macs: Mapped[int] = mapped_column(BigInteger)
    flops: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[int] = mapped_column(BigInteger)
    nodes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    batch_size: Mapped[int | None] = mapped_column(Integer)


class NetworkRef(Base):
    """A reference (spec string or file path) that named a network.

    Several references can name one network (isomorphic NAS-Bench-201 strings), and
    one reference can name several networks over time (a file that was rewritten,
    a spec loaded at another batch size), so the pair is unique, not the reference.
    """

    __tablename__ = "network_refs"
    __table_args__ = (UniqueConstraint("network_id", "ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    ref: Mapped[str] = mapped_column(String(REF_MAX_CHARS), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Measurement(Base):
    """One profiling result of a network on a device at a batch size.

    ``status`` is ``ok``, ``failed`` or ``timeout``; a run that is not ``ok`` keeps
    ``error_kind`` and ``error_message`` and has no latency. ``reference_ratio`` is
    the median latency divided by the adjacent level of the fixed reference models
    timed in alternating blocks in the same workers (the drift-corrected value;
    :mod:`perfcast.profiling.stats`).
    ``source`` is ``profiler`` or ``import:<dataset>``.
    """

    __tablename__ = "measurements"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint("batch_size >= 1", name="batch_size"),
        CheckConstraint("status <> 'ok' OR latency_ms_median IS NOT NULL", name="ok_has_latency"),
        CheckConstraint("status = 'ok' OR error_kind IS NOT NULL", name="error_has_kind"),
        Index("ix_measurements_lookup", "network_id", "device_id", "batch_size"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    batch_size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    latency_ms_median: Mapped[float | None] = mapped_column(Float)
    latency_ms_mean: Mapped[float | None] = mapped_column(Float)
    latency_ms_min: Mapped[float | None] = mapped_column(Float)
    latency_ms_p10: Mapped[float | None] = mapped_column(Float)
    latency_ms_p90: Mapped[float | None] = mapped_column(Float)
    repeat_cv: Mapped[float | None] = mapped_column(Float)
    raw_samples_ms: Mapped[list[Any] | None]
    reference_ratio: Mapped[float | None] = mapped_column(Float)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    energy_mj: Mapped[float | None] = mapped_column(Float)
    environment: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class KernelProfile(Base):
    """One runtime kernel of a measurement, in execution order (``seq``).

    ``node_names`` lists the IR nodes the kernel runs (several after fusion);
    ``duration_us`` is its median time per inference over ``sample_count`` samples.
    """

    __tablename__ = "kernel_profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    measurement_id: Mapped[int] = mapped_column(ForeignKey("measurements.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kernel_name: Mapped[str] = mapped_column(Text)
    op_type: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(64))
    node_names: Mapped[list[Any]]
    duration_us: Mapped[float] = mapped_column(Float)
    sample_count: Mapped[int] = mapped_column(Integer)
