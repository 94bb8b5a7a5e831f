"""call_legs: wrap-up and hold may be unknown (NULL), for calls recovered from queue_log

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-03 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_legs") as batch:
        batch.alter_column("wrap_s", existing_type=sa.Float(), nullable=True)
        batch.alter_column(
            "hold_s", existing_type=sa.Float(), nullable=True, existing_server_default="0"
        )


def downgrade() -> None:
    # What was not known reads as none (0), as before.
    op.execute("UPDATE call_legs SET wrap_s = 0 WHERE wrap_s IS NULL")
    op.execute("UPDATE call_legs SET hold_s = 0 WHERE hold_s IS NULL")
    with op.batch_alter_table("call_legs") as batch:
        batch.alter_column("wrap_s", existing_type=sa.Float(), nullable=False)
        batch.alter_column(
            "hold_s", existing_type=sa.Float(), nullable=False, existing_server_default="0"
        )
