"""Networks built from a spec string: ``networks.batch_size``; their ``ir_json`` may be empty.

A network whose graph a spec string rebuilds (``source`` at ``batch_size``) need not
keep its IR, which is most of the size of a store of imported measurements. Existing
rows keep their IR and get ``batch_size`` NULL; the column is added in place (no table
copy), so stores of any size upgrade in a moment.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("networks", sa.Column("batch_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    without_ir = op.get_bind().scalar(sa.text("SELECT count(*) FROM networks WHERE ir_json = ''"))
    if without_ir:
        raise RuntimeError(f"{without_ir} networks keep no IR (rebuilt from their spec): revision 0001 cannot hold them")
    op.drop_column("networks", "batch_size")
