"""Initial schema: devices, networks, network_refs, measurements, kernel_profiles.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
REF = sa.String(2048)
LATENCY_STATS = ("median", "mean", "min", "p10", "p90")


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("runtime", sa.String(64), nullable=False),
        sa.Column("runtime_version", sa.String(64), nullable=True),
        sa.Column("hardware", sa.String(300), nullable=True),
        sa.Column("threads", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("extra", JSON, nullable=False),
        _created_at(),
        sa.CheckConstraint("kind IN ('measured', 'estimated')", name=op.f("ck_devices_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("name", name=op.f("uq_devices_name")),
    )
    op.create_table(
        "networks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("source", REF, nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("ir_json", sa.Text(), nullable=False),
        sa.Column("macs", sa.BigInteger(), nullable=False),
        sa.Column("flops", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_networks")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_networks_content_hash")),
    )
    op.create_table(
        "network_refs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("ref", REF, nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_network_refs_network_id_networks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_refs")),
        sa.UniqueConstraint("network_id", "ref", name=op.f("uq_network_refs_network_id_ref")),
    )
    op.create_index(op.f("ix_network_refs_ref"), "network_refs", ["ref"])
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_kind", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        *(sa.Column(f"latency_ms_{stat}", sa.Float(), nullable=True) for stat in LATENCY_STATS),
        sa.Column("repeat_cv", sa.Float(), nullable=True),
        sa.Column("raw_samples_ms", JSON, nullable=True),
        sa.Column("reference_ratio", sa.Float(), nullable=True),
        sa.Column("peak_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("energy_mj", sa.Float(), nullable=True),
        sa.Column("environment", JSON, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        _created_at(),
        sa.CheckConstraint("status IN ('ok', 'failed', 'timeout')", name=op.f("ck_measurements_status")),
        sa.CheckConstraint("batch_size >= 1", name=op.f("ck_measurements_batch_size")),
        sa.CheckConstraint(
            "status <> 'ok' OR latency_ms_median IS NOT NULL", name=op.f("ck_measurements_ok_has_latency")
        ),
        sa.CheckConstraint("status = 'ok' OR error_kind IS NOT NULL", name=op.f("ck_measurements_error_has_kind")),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name=op.f("fk_measurements_network_id_networks")),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name=op.f("fk_measurements_device_id_devices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_measurements")),
    )
    op.create_index(op.f("ix_measurements_lookup"), "measurements", ["network_id", "device_id", "batch_size"])
    op.create_index(op.f("ix_measurements_device_id"), "measurements", ["device_id"])
    op.create_table(
        "kernel_profiles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("measurement_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kernel_name", sa.Text(), nullable=False),
        sa.Column("op_type", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("node_names", JSON, nullable=False),
        sa.Column("duration_us", sa.Float(), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["measurement_id"], ["measurements.id"],
            name=op.f("fk_kernel_profiles_measurement_id_measurements"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kernel_profiles")),
    )
    op.create_index(op.f("ix_kernel_profiles_measurement_id"), "kernel_profiles", ["measurement_id"])


def downgrade() -> None:
    op.drop_table("kernel_profiles")
    op.drop_table("measurements")
    op.drop_table("network_refs")
    op.drop_table("networks")
    op.drop_table("devices")
