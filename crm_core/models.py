"""The CRM schema (SQLAlchemy 2 declarative); the same tables on SQLite and PostgreSQL.

Changing anything here needs a new Alembic revision in ``crm_core/migrations/versions``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so that migrations can name what they alter on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Flag columns on Customer, in the order they are shown; the first five are highlights.
FLAGS = (
    "vip",
    "hearing_impaired",
    "wheelchair_user",
    "payment_arrears",
    "do_not_call",
    "marketing_opt_in",
)
HIGHLIGHT_FLAGS = FLAGS[:5]
PHONE_KINDS = ("mobile", "home", "work", "other")
CASE_OPEN_STATUSES = ("open", "pending", "escalated")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Any:
    return func.now()


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        Index("ix_customers_email_lower", func.lower(text("email"))),
        # Partial: customers without a postcode (all those seeded) would make the planner's
        # statistics call the index useless and scan the table instead.
        Index(
            "ix_customers_postcode",
            "postcode",
            sqlite_where=text("postcode IS NOT NULL"),
            postgresql_where=text("postcode IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="person")  # person / organisation
    name: Mapped[str] = mapped_column(String(200), index=True)
    organisation: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    address: Mapped[str | None] = mapped_column(Text)
    # The postcode found in the address (``postcode_of``), kept apart to be searched by index.
    postcode: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(16))
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    hearing_impaired: Mapped[bool] = mapped_column(Boolean, default=False)
    wheelchair_user: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_arrears: Mapped[bool] = mapped_column(Boolean, default=False)
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    marketing_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    marketing_opt_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=_now()
    )
    updated_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=_now()
    )


# Words are compared bytewise so that a prefix is a range of the index on both databases.
WORD = String(64).with_variant(String(64, collation="C"), "postgresql")


def name_words(*texts: str | None) -> set[str]:
    """The searchable words of a customer's name: ``Zoë O'Brien-Ünal`` → zoë, o, brien, ünal."""
    return {w[:64] for text in texts if text for w in re.findall(r"\w+", text.casefold())}


# A UK postcode (outward code, inward code): "SW1A 1AA", "m1 1ae", "EC1A1BB".
_POSTCODE = re.compile(r"\b([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})\b", re.IGNORECASE)


def postcode_of(text: str | None) -> str | None:
    """The postcode in an address or a search, in one form (``SW1A1AA``); None if there is none.
    The last one wins: an address ends with its postcode."""
    found = _POSTCODE.findall(text or "")
    return (found[-1][0] + found[-1][1]).upper() if found else None


class CustomerWord(Base):
    """One word of a customer's name, for fast prefix search by any word (surname...)."""

    __tablename__ = "customer_words"
    __table_args__ = (Index("ix_customer_words_customer_id", "customer_id"),)

    word: Mapped[str] = mapped_column(WORD, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )


class Contact(Base):
    """A person at an organisation customer (or a second person of a household)."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))


class PhoneNumber(Base):
    __tablename__ = "phone_numbers"
    __table_args__ = (Index("ix_phone_numbers_e164_customer", "e164", "customer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16), default="mobile")
    number: Mapped[str] = mapped_column(String(64))  # as entered
    e164: Mapped[str | None] = mapped_column(String(20))  # None when it could not be normalised


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_customer_status", "customer_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="open")
    tier: Mapped[str | None] = mapped_column(String(32))
    product: Mapped[str | None] = mapped_column(String(100))
    sla_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notes: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_customer_placed", "customer_id", "placed_at"),
        Index("ix_orders_reference", "reference"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    reference: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="placed")
    delivery_state: Mapped[str | None] = mapped_column(String(32))
    tracking_ref: Mapped[str | None] = mapped_column(String(64))
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OwnedProduct(Base):
    __tablename__ = "owned_products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    product: Mapped[str] = mapped_column(String(100))
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Interaction(Base):
    """One call in a customer's history, written once per call (``call_id`` is unique)."""

    __tablename__ = "interactions"
    __table_args__ = (Index("ix_interactions_customer_started", "customer_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    caller: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8), default="inbound")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    agents: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome: Mapped[str] = mapped_column(String(16), default="answered")
    wait_s: Mapped[float | None] = mapped_column(Float)
    talk_s: Mapped[float | None] = mapped_column(Float)
    transfers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    routing_reason: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str] = mapped_column(Text, default="")
    disposition: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class InteractionNote(Base):
    """A note an agent added to a call, during or after it."""

    __tablename__ = "interaction_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interaction_id: Mapped[int] = mapped_column(
        ForeignKey("interactions.id", ondelete="CASCADE"), index=True
    )
    author: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=_now()
    )


class OutboxItem(Base):
    """An event or write-back waiting for its target (``connectors.outbox``); times are epoch s."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("target", "idempotency_key", name="uq_outbox_target_key"),
        Index("ix_outbox_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(100))
    ordering_key: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    delivered_at: Mapped[float | None] = mapped_column(Float)


class LiveCall(Base):
    """A call in progress as the daemon knows it (``cti.callstate``), kept so that a restarted
    daemon, or another instance later, picks it up: keyed by PBX and call id. Times are
    epoch seconds on the PBX's clock; ``context`` is the live call context as JSON."""

    __tablename__ = "live_calls"

    pbx_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float | None] = mapped_column(Float)
    answered_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[float] = mapped_column(Float)


class LivePbx(Base):
    """What the daemon last knew of a PBX link: ``seen_at`` (PBX clock) is the last moment
    the calls of ``live_calls`` were known to be up (heartbeat, or the shutdown)."""

    __tablename__ = "live_pbx"

    pbx_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[float | None] = mapped_column(Float)
    stopped_at: Mapped[float | None] = mapped_column(Float)  # set by an orderly shutdown
    # The fencing token of the instance ingesting this PBX (cti.cluster; 0: one instance):
    # a write carrying a lower token is refused.
    fence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


# ---- statistics and supervision (migration 0005) --------------------------------------------
# Times here are epoch seconds (Float): waits, hour buckets and period clipping are then plain
# arithmetic, the same SQL on SQLite and PostgreSQL.


class CallLeg(Base):
    """One call's stay in one queue (``cti.stats.legs``), written when the call ends."""

    __tablename__ = "call_legs"
    __table_args__ = (
        Index("ix_call_legs_joined_at", "joined_at"),
        Index("ix_call_legs_agent_joined_at", "agent", "joined_at"),
    )

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(8), default="inbound")
    caller: Mapped[str | None] = mapped_column(String(64))
    joined_at: Mapped[float] = mapped_column(Float)
    joined_hour: Mapped[int] = mapped_column(Integer)  # joined_at // 3600 (UTC hour)
    answered_at: Mapped[float | None] = mapped_column(Float)
    left_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))
    exit: Mapped[str | None] = mapped_column(String(16))
    # NULL: not known (a call recovered from Asterisk's queue_log; ``cti.queuelog.legs``).
    wrap_s: Mapped[float | None] = mapped_column(Float, default=0.0)
    hold_s: Mapped[float | None] = mapped_column(Float, default=0.0, server_default="0")
    # Repeat calls (``crm_core.repeats``): on the legs of an inbound call from a known customer,
    # seconds since that customer's previous inbound call started, that call, and the agents
    # who answered it (a JSON list); NULL when there was none.
    repeat_gap_s: Mapped[float | None] = mapped_column(Float)
    repeat_of: Mapped[str | None] = mapped_column(String(64))
    repeat_agents: Mapped[str | None] = mapped_column(Text)


class AgentActivity(Base):
    """A closed interval of an agent's day: ``login`` or ``pause`` (with its reason)."""

    __tablename__ = "agent_activity"
    __table_args__ = (Index("ix_agent_activity_agent_started_at", "agent", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(100), default="")
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)


class SupervisorAudit(Base):
    """Who listened to, whispered to or barged into which call, played which recording."""

    __tablename__ = "supervisor_audit"
    __table_args__ = (Index("ix_supervisor_audit_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    supervisor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))
    call_id: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    ended_at: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# ---- cases from the pop and callbacks (migration 0006) --------------------------------------


class CaseCall(Base):
    """A call made about a case (by call id: the interaction may not be written yet)."""

    __tablename__ = "case_calls"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    call_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    linked_at: Mapped[float] = mapped_column(Float)
    linked_by: Mapped[str | None] = mapped_column(String(100))


class CallbackTask(Base):
    """A caller who gave up in a queue, to be called back (``crm_core.callbacks``). At most
    one open task per number and queue (``open_key`` is "queue|e164" while open, else null).
    Times are epoch seconds."""

    __tablename__ = "callback_tasks"
    __table_args__ = (
        UniqueConstraint("open_key", name="uq_callback_tasks_open_key"),
        Index("ix_callback_tasks_status_queue", "status", "queue"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    open_key: Mapped[str | None] = mapped_column(String(140))
    queue: Mapped[str] = mapped_column(String(64))
    e164: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    call_id: Mapped[str] = mapped_column(String(64))  # the first call abandoned
    last_call_id: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=1)  # abandoned calls counted
    wait_s: Mapped[float | None] = mapped_column(Float)  # the longest wait before giving up
    created_at: Mapped[float] = mapped_column(Float)
    last_abandoned_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open / dialling / closed
    dialled_by: Mapped[str | None] = mapped_column(String(100))
    dialled_at: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str | None] = mapped_column(String(20))
    closed_reason: Mapped[str | None] = mapped_column(String(40))
    closed_at: Mapped[float | None] = mapped_column(Float)


# ---- merging and dividing customers (migration 0008) -----------------------------------------


class CustomerMerge(Base):
    """The tombstone of a customer merged into another: the row of ``customers`` stays (old ids
    and links still resolve), and this says which customer now holds its records."""

    __tablename__ = "customer_merges"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    survivor_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    merged_at: Mapped[float] = mapped_column(Float)
    audit_id: Mapped[int | None] = mapped_column(Integer)


class CustomerAudit(Base):
    """Every merge or divide of customers: who, when, what moved, and the rows per table of
    both customers before and after (``crm_core.merge``). ``at`` is epoch seconds."""

    __tablename__ = "customer_audit"
    __table_args__ = (Index("ix_customer_audit_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))  # merge / divide
    customer_id: Mapped[int] = mapped_column(Integer)  # survivor of a merge; source of a divide
    other_id: Mapped[int] = mapped_column(Integer)  # merged away; the divide's other customer
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
