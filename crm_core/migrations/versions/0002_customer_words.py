"""customer_words: prefix search by any word of a name; case-insensitive email index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm_core.models import WORD, name_words

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    words = op.create_table(
        "customer_words",
        sa.Column("word", WORD, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_words_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("word", "customer_id", name=op.f("pk_customer_words")),
    )
    op.create_index("ix_customer_words_customer_id", "customer_words", ["customer_id"])
    op.create_index("ix_customers_email_lower", "customers", [sa.text("lower(email)")])
    # Backfill the customers already there, in chunks.
    conn = op.get_bind()
    customers = sa.table("customers", sa.column("id"), sa.column("name"), sa.column("organisation"))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(customers.c.id, customers.c.name, customers.c.organisation)
            .where(customers.c.id > last)
            .order_by(customers.c.id)
            .limit(20000)
        ).all()
        if not rows:
            break
        batch = [
            {"word": word, "customer_id": cid}
            for cid, name, organisation in rows
            for word in name_words(name, organisation)
        ]
        if batch:
            conn.execute(words.insert(), batch)
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_customers_email_lower", table_name="customers")
    op.drop_index("ix_customer_words_customer_id", table_name="customer_words")
    op.drop_table("customer_words")
