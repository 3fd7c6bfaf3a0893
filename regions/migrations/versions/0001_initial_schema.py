"""The initial schema: every table of regions/models.py as `create_all` made it before
migrations existed (stores made then are stamped with this revision, not migrated).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "aggregate_progress",
        sa.Column("source_region", sa.String(length=32), nullable=False),
        sa.Column("aggregate_type", sa.String(length=32), nullable=False),
        sa.Column("aggregate_id", sa.String(length=200), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source_region", "aggregate_type", "aggregate_id"),
    )
    op.create_table(
        "aggregate_sequence",
        sa.Column("aggregate_type", sa.String(length=32), nullable=False),
        sa.Column("aggregate_id", sa.String(length=200), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("aggregate_type", "aggregate_id"),
    )
    op.create_table(
        "authorisation",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status",
            sa.Enum("AUTHORISED", "DECLINED", "VOIDED", "CAPTURED", name="authorisationstatus"),
            nullable=False,
        ),
        sa.Column("gateway_ref", sa.String(length=100), nullable=True),
        sa.Column("decline_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_authorisation_order_id"), "authorisation", ["order_id"], unique=False)

    op.create_table(
        "cart_operation",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("dot_region", sa.String(length=32), nullable=False),
        sa.Column("dot_counter", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "dot_region", "dot_counter"),
    )
    op.create_table(
        "clock_state",
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("wall_ms", sa.BigInteger(), nullable=False),
        sa.Column("logical", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("region"),
    )
    op.create_table(
        "dead_letter",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("source_region", sa.String(length=32), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("aggregate_type", sa.String(length=32), nullable=False),
        sa.Column("aggregate_id", sa.String(length=200), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_table(
        "inbox_event",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("source_region", sa.String(length=32), nullable=False),
        sa.Column("aggregate_type", sa.String(length=32), nullable=False),
        sa.Column("aggregate_id", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        op.f("ix_inbox_event_aggregate_id"), "inbox_event", ["aggregate_id"], unique=False
    )

    op.create_table(
        "order_view",
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("home_region", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("total_minor", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("regions", sa.Text(), nullable=False),
        sa.Column("status_hlc", sa.String(length=64), nullable=False),
        sa.Column("version_vector", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "outbox_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("aggregate_type", sa.String(length=32), nullable=False),
        sa.Column("aggregate_id", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("source_region", sa.String(length=32), nullable=False),
        sa.Column("hlc", sa.String(length=64), nullable=False),
        sa.Column("version_vector", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("aggregate_type", "aggregate_id", "sequence", name="outbox_sequence"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        op.f("ix_outbox_event_aggregate_id"), "outbox_event", ["aggregate_id"], unique=False
    )

    op.create_table(
        "processed_event",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("source_region", sa.String(length=32), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_table(
        "processed_key",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "replication_source",
        sa.Column("source_region", sa.String(length=32), nullable=False),
        sa.Column("delivered_through", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("held_back", sa.Integer(), nullable=False),
        sa.Column("conflicts_detected", sa.Integer(), nullable=False),
        sa.Column("conflicts_resolved", sa.Integer(), nullable=False),
        sa.Column("dead_lettered", sa.Integer(), nullable=False),
        sa.Column("last_event_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source_region"),
    )
    op.create_table(
        "reservation",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum("HELD", "RELEASED", "COMMITTED", "REJECTED", name="reservationstatus"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_reservation_order_id"), "reservation", ["order_id"], unique=False)

    op.create_table(
        "stock",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("on_hand >= 0", name="stock_on_hand_not_negative"),
        sa.CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="stock_reserved_in_range"),
        sa.PrimaryKeyConstraint("sku"),
    )
    op.create_table(
        "stock_view",
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("hlc", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("region", "sku"),
    )
    op.create_table(
        "capture",
        sa.Column("authorisation_key", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("gateway_ref", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["authorisation_key"],
            ["authorisation.key"],
        ),
        sa.PrimaryKeyConstraint("authorisation_key"),
    )
    op.create_index(op.f("ix_capture_order_id"), "capture", ["order_id"], unique=False)

    op.create_table(
        "reservation_line",
        sa.Column("reservation_key", sa.String(length=200), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reservation_key"],
            ["reservation.key"],
        ),
        sa.PrimaryKeyConstraint("reservation_key", "sku"),
    )


def downgrade() -> None:
    op.drop_table("reservation_line")
    op.drop_index(op.f("ix_capture_order_id"), table_name="capture")

    op.drop_table("capture")
    op.drop_table("stock_view")
    op.drop_table("stock")
    op.drop_index(op.f("ix_reservation_order_id"), table_name="reservation")

    op.drop_table("reservation")
    op.drop_table("replication_source")
    op.drop_table("processed_key")
    op.drop_table("processed_event")
    op.drop_index(op.f("ix_outbox_event_aggregate_id"), table_name="outbox_event")

    op.drop_table("outbox_event")
    op.drop_table("order_view")
    op.drop_index(op.f("ix_inbox_event_aggregate_id"), table_name="inbox_event")

    op.drop_table("inbox_event")
    op.drop_table("dead_letter")
    op.drop_table("clock_state")
    op.drop_table("cart_operation")
    op.drop_index(op.f("ix_authorisation_order_id"), table_name="authorisation")

    op.drop_table("authorisation")
    op.drop_table("aggregate_sequence")
    op.drop_table("aggregate_progress")
    # PostgreSQL keeps enum types apart from the tables that use them.
    bind = op.get_bind()
    sa.Enum(name="reservationstatus").drop(bind, checkfirst=True)
    sa.Enum(name="authorisationstatus").drop(bind, checkfirst=True)
