"""The inbox keeps when each event was written (the lag counts from there) and is read by
source and aggregate in sequence order (the sweep, the lag).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A store `create_all` made from today's models before it was stamped has both already.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("inbox_event")}
    if "created_at" not in columns:
        # Rows already waiting keep None: the lag counts them from when they were received.
        op.add_column("inbox_event", sa.Column("created_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_inbox_event_source_aggregate",
        "inbox_event",
        ["source_region", "aggregate_type", "aggregate_id", "sequence"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_event_source_aggregate", table_name="inbox_event")
    op.drop_column("inbox_event", "created_at")
