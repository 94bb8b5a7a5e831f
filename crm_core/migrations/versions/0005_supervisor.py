"""statistics and supervision: call_legs, agent_activity, supervisor_audit

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_legs",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=True),
        sa.Column("agent", sa.String(length=100), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=True),
        sa.Column("joined_at", sa.Float(), nullable=False),
        sa.Column("joined_hour", sa.Integer(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("left_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("exit", sa.String(length=16), nullable=True),
        sa.Column("wrap_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("call_id", "seq", name=op.f("pk_call_legs")),
    )
    op.create_index("ix_call_legs_joined_at", "call_legs", ["joined_at"])
    op.create_index("ix_call_legs_agent_joined_at", "call_legs", ["agent", "joined_at"])
    op.create_table(
        "agent_activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_activity")),
    )
    op.create_index(
        "ix_agent_activity_agent_started_at", "agent_activity", ["agent", "started_at"]
    )
    op.create_table(
        "supervisor_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("supervisor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supervisor_audit")),
    )
    op.create_index("ix_supervisor_audit_at", "supervisor_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_supervisor_audit_at", table_name="supervisor_audit")
    op.drop_table("supervisor_audit")
    op.drop_index("ix_agent_activity_agent_started_at", table_name="agent_activity")
    op.drop_table("agent_activity")
    op.drop_index("ix_call_legs_agent_joined_at", table_name="call_legs")
    op.drop_index("ix_call_legs_joined_at", table_name="call_legs")
    op.drop_table("call_legs")
