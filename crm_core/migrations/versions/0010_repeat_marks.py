"""call_legs: repeat-call marks (gap to the customer's previous call) and hold time

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_legs") as batch:
        batch.add_column(sa.Column("hold_s", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("repeat_gap_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("repeat_of", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("repeat_agents", sa.Text(), nullable=True))
    # The calls already written: marked from the interactions and legs as they stand (the
    # hold time of legs written before is not known: 0).
    from crm_core.repeats import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("call_legs") as batch:
        batch.drop_column("repeat_agents")
        batch.drop_column("repeat_of")
        batch.drop_column("repeat_gap_s")
        batch.drop_column("hold_s")
