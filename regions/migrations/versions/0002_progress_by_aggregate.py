"""An index on aggregate_progress by aggregate: a local write's version vector looked its
aggregate up across every source region with a scan of the whole table, one row per order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A store `create_all` made from today's models before it was stamped has it already.
    op.create_index(
        "ix_aggregate_progress_aggregate",
        "aggregate_progress",
        ["aggregate_type", "aggregate_id"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_aggregate_progress_aggregate", table_name="aggregate_progress")
