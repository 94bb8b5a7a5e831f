"""identify a caller by postcode or order reference: customers.postcode, orders.reference index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm_core.models import postcode_of

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def upgrade() -> None:
    # Plain ADD/DROP COLUMN (both databases have them): a batch copy of the table on SQLite
    # would lose the expression index on lower(email).
    op.add_column("customers", sa.Column("postcode", sa.String(length=16), nullable=True))
    op.create_index(
        "ix_customers_postcode",
        "customers",
        ["postcode"],
        sqlite_where=sa.text("postcode IS NOT NULL"),
        postgresql_where=sa.text("postcode IS NOT NULL"),
    )
    op.create_index("ix_orders_reference", "orders", ["reference"])
    # Existing customers: the postcode read from their address, in batches by id.
    conn = op.get_bind()
    customers = sa.table(
        "customers", sa.column("id", sa.Integer), sa.column("address"), sa.column("postcode")
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(customers.c.id, customers.c.address)
            .where(customers.c.id > last, customers.c.address.is_not(None))
            .order_by(customers.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        found = [{"cid": r.id, "pc": postcode_of(r.address)} for r in rows]
        found = [f for f in found if f["pc"]]
        if found:
            conn.execute(
                customers.update()
                .where(customers.c.id == sa.bindparam("cid"))
                .values(postcode=sa.bindparam("pc")),
                found,
            )


def downgrade() -> None:
    op.drop_index("ix_orders_reference", table_name="orders")
    op.drop_index("ix_customers_postcode", table_name="customers")
    op.execute("ALTER TABLE customers DROP COLUMN postcode")
