"""cases from the pop and callbacks: case_calls, callback_tasks

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_calls",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("linked_at", sa.Float(), nullable=False),
        sa.Column("linked_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_case_calls_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", "call_id", name=op.f("pk_case_calls")),
    )
    op.create_index(op.f("ix_case_calls_call_id"), "case_calls", ["call_id"])
    op.create_table(
        "callback_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("open_key", sa.String(length=140), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("e164", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("last_call_id", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_abandoned_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("dialled_by", sa.String(length=100), nullable=True),
        sa.Column("dialled_at", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("closed_reason", sa.String(length=40), nullable=True),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_callback_tasks_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_tasks")),
        sa.UniqueConstraint("open_key", name="uq_callback_tasks_open_key"),
    )
    op.create_index("ix_callback_tasks_status_queue", "callback_tasks", ["status", "queue"])


def downgrade() -> None:
    op.drop_index("ix_callback_tasks_status_queue", table_name="callback_tasks")
    op.drop_table("callback_tasks")
    op.drop_index(op.f("ix_case_calls_call_id"), table_name="case_calls")
    op.drop_table("case_calls")
