"""The CRM store: caller-ID resolution, the 360° view, search and the writes calls make.

``CrmStore`` implements ``crm_core.types.CustomerDirectory`` on SQLite or PostgreSQL. Every
database failure surfaces as ``CrmUnavailable`` (the router falls back on it), never as a raw
driver exception.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_core import schema
from crm_core.cache import TtlCache
from crm_core.cases import calls_of_cases
from crm_core.db import create_engine, describe_db_error, refused_by_database, sqlite_path
from crm_core.errors import CrmError, CrmUnavailable, InvalidCustomer
from crm_core.fence import Fence
from crm_core.fence import claim as claim_fence
from crm_core.lookup import EngineLookup, Facts, Holder, NumberLookup
from crm_core.models import (
    CASE_OPEN_STATUSES,
    FLAGS,
    HIGHLIGHT_FLAGS,
    PHONE_KINDS,
    Case,
    Contact,
    Customer,
    CustomerMerge,
    CustomerWord,
    Interaction,
    InteractionNote,
    Order,
    OwnedProduct,
    PhoneNumber,
    name_words,
    postcode_of,
)
from crm_core.phone import normalise
from crm_core.records import storable
from crm_core.repeats import mark_recorded
from crm_core.types import (
    Candidate,
    CaseView,
    ContactView,
    CustomerView,
    InteractionRecord,
    InteractionView,
    OrderFact,
    OrderView,
    PhoneView,
    Resolution,
    RoutingFacts,
)

if TYPE_CHECKING:
    from cti.config import Config


def _log() -> Any:
    """A logger bound to the current configuration: cti.logsetup caches loggers on first use
    with the stderr of that moment, which a module-level logger would outlive (pytest capsys)."""
    return structlog.get_logger(__name__)


# At most this many customers are returned for one shared number.
MAX_CANDIDATES = 50
RECENT_ORDER = timedelta(days=30)


@dataclass(frozen=True)
class PhoneInput:
    number: str
    kind: str = "mobile"


@dataclass(frozen=True)
class UpsertResult:
    customer_id: int
    created: bool
    # Numbers kept as entered but not normalisable (stored without an E.164 form).
    invalid_numbers: tuple[str, ...] = ()


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetimes in and out (SQLite hands back naive UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _ago(when: datetime, now: datetime) -> str:
    days = (now - when).days
    if days <= 0:
        return "today"
    return "yesterday" if days == 1 else f"{days} days ago"


def rank(holders: Sequence[Holder], facts: Sequence[Facts]) -> tuple[Candidate, ...]:
    """Order customers sharing a number: open case, then recent order, then latest call."""
    now = datetime.now(UTC)
    oldest = datetime.min.replace(tzinfo=UTC)
    by_id = {f.customer_id: f for f in facts}
    scored = []
    for customer_id, external_id, name in holders:
        fact = by_id.get(customer_id)
        case = (fact.case_id, fact.case_tier) if fact and fact.case_id is not None else None
        order_at = fact.last_order if fact else None
        recent_order = order_at if order_at and now - order_at <= RECENT_ORDER else None
        call_at = fact.last_call if fact else None
        reasons = []
        if case:
            reasons.append(f"open case #{case[0]}" + (f" ({case[1]})" if case[1] else ""))
        if recent_order:
            reasons.append(f"order placed {_ago(recent_order, now)}")
        if call_at:
            reasons.append(f"last call {_ago(call_at, now)}")
        key = (case is not None, recent_order or oldest, call_at or oldest, -customer_id)
        reason = "; ".join(reasons) or "no open case, recent order or past call"
        scored.append((key, Candidate(customer_id, external_id, name, reason)))
    scored.sort(key=lambda item: item[0], reverse=True)
    return tuple(candidate for _, candidate in scored)


class CrmStore:
    """The CRM on a SQLAlchemy async engine. Build it with ``open`` or ``from_config``."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        region: str = "GB",
        internal_max_digits: int = 6,
        cache: TtlCache[str, Resolution] | None = None,
        view_interactions: int = 10,
        view_orders: int = 5,
    ) -> None:
        self.engine = engine
        self.region = region.upper()
        self.internal_max_digits = internal_max_digits
        self.cache: TtlCache[str, Resolution] = cache if cache is not None else TtlCache(0, 0)
        self.view_interactions = view_interactions
        self.view_orders = view_orders
        self._dialect = engine.dialect.name
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        in_memory = self._dialect == "sqlite" and sqlite_path(str(engine.url)) is None
        self._lookup: NumberLookup | EngineLookup = (
            EngineLookup(engine, MAX_CANDIDATES, orders=view_orders)
            if in_memory
            else NumberLookup(engine.url, MAX_CANDIDATES, orders=view_orders)
        )

    # -- lifetime ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        region: str = "GB",
        internal_max_digits: int = 6,
        cache_ttl_s: float = 30.0,
        cache_size: int = 10_000,
        view_interactions: int = 10,
        view_orders: int = 5,
        migrate: bool = True,
        echo: bool = False,
    ) -> CrmStore:
        """Connect to ``url`` (an async SQLAlchemy URL) and, by default, migrate to head."""
        path = sqlite_path(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CrmUnavailable(
                    f"cannot create the CRM directory {path.parent}: {exc}"
                ) from exc
        engine = create_engine(url, echo=echo)
        store = cls(
            engine,
            region=region,
            internal_max_digits=internal_max_digits,
            cache=TtlCache(cache_size, cache_ttl_s),
            view_interactions=view_interactions,
            view_orders=view_orders,
        )
        try:
            async with store._guard("open"):
                if migrate:
                    await schema.upgrade(engine)
                else:
                    async with engine.connect() as conn:
                        await conn.execute(select(1))
        except BaseException:
            await engine.dispose()
            raise
        _log().debug("crm.opened", url=engine.url.render_as_string(hide_password=True))
        return store

    @classmethod
    async def from_config(cls, config: Config, *, migrate: bool = True) -> CrmStore:
        return await cls.open(
            config.database_url,
            region=config.phone.default_region,
            internal_max_digits=config.phone.internal_max_digits,
            cache_ttl_s=config.crm.cache_ttl_s,
            cache_size=config.crm.cache_size,
            view_interactions=config.crm.view_interactions,
            view_orders=config.crm.view_orders,
            migrate=migrate,
            echo=config.database.echo,
        )

    async def close(self) -> None:
        await self._lookup.close()
        await self.engine.dispose()

    async def __aenter__(self) -> CrmStore:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def ping(self) -> None:
        """Raise ``CrmUnavailable`` unless the database answers."""
        async with self._guard("ping"), self.engine.connect() as conn:
            await conn.execute(select(1))

    @asynccontextmanager
    async def _guard(self, operation: str) -> AsyncIterator[None]:
        """Turn driver and connection failures into ``CrmUnavailable`` with a clear message."""
        try:
            yield
        except (sa_exc.IntegrityError, sa_exc.DataError) as exc:
            raise CrmError(f"CRM {operation} rejected: {describe_db_error(exc)}") from exc
        except (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError, TimeoutError) as exc:
            if refused_by_database(exc):
                # asyncpg's data errors come as a plain DBAPIError: the database is up, said no.
                raise CrmError(f"CRM {operation} rejected: {describe_db_error(exc)}") from exc
            _log().warning("crm.unavailable", operation=operation, error=describe_db_error(exc))
            raise CrmUnavailable(
                f"CRM database unavailable during {operation}: {describe_db_error(exc)}"
            ) from exc
        except sa_exc.SQLAlchemyError as exc:
            _log().warning("crm.error", operation=operation, error=describe_db_error(exc))
            raise CrmUnavailable(
                f"CRM database error during {operation}: {describe_db_error(exc)}"
            ) from exc

    @asynccontextmanager
    async def _read(self, operation: str) -> AsyncIterator[AsyncConnection]:
        # Reads run without BEGIN/ROLLBACK: two round trips fewer per view on PostgreSQL.
        async with self._guard(operation), self._reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self, operation: str) -> AsyncIterator[AsyncConnection]:
        async with self._guard(operation), self.engine.begin() as conn:
            yield conn

    # -- caller-ID resolution ---------------------------------------------------------------

    async def resolve(self, caller_id: str | None) -> Resolution:
        """Who is calling: match, ambiguous (ranked), unknown, anonymous or internal."""
        caller = caller_id if isinstance(caller_id, str) else ""
        number = normalise(caller_id, self.region, self.internal_max_digits)
        if number.kind == "anonymous":
            return Resolution("anonymous", None, caller)
        if number.kind == "internal":
            return Resolution("internal", None, caller)
        if number.e164 is None:
            return Resolution("unknown", None, caller)
        cached = self.cache.get(number.e164)
        if cached is not None:
            return cached if cached.caller == caller else dataclasses.replace(cached, caller=caller)
        generation = self.cache.generation
        holders = await self._holders(number.e164)
        if not holders:
            result = Resolution("unknown", number.e164, caller)
        elif len(holders) == 1:
            result = Resolution("match", number.e164, caller, (Candidate(*holders[0]),))
        else:
            async with self._guard("resolve"):
                facts = await self._lookup.facts([h[0] for h in holders])
            result = Resolution("ambiguous", number.e164, caller, rank(holders, facts))
        self.cache.put(number.e164, result, generation)
        return result

    async def resolve_for_routing(
        self, caller_id: str | None, *, facts: bool = True
    ) -> tuple[Resolution, RoutingFacts | None]:
        """``resolve`` and, for a single match (when ``facts``), ``routing_facts``: what the
        router needs of a call, in one hop to the database thread on SQLite (two round trips on
        PostgreSQL). The same cache and ``CrmUnavailable`` as ``resolve``."""
        caller = caller_id if isinstance(caller_id, str) else ""
        number = normalise(caller_id, self.region, self.internal_max_digits)
        if number.kind == "anonymous":
            return Resolution("anonymous", None, caller), None
        if number.kind == "internal":
            return Resolution("internal", None, caller), None
        if number.e164 is None:
            return Resolution("unknown", None, caller), None
        cached = self.cache.get(number.e164)
        if cached is not None:
            if cached.caller != caller:
                cached = dataclasses.replace(cached, caller=caller)
            if facts and cached.status == "match" and cached.customer_id is not None:
                return cached, await self.routing_facts(cached.customer_id)
            return cached, None
        generation = self.cache.generation
        async with self._guard("resolve"):
            holders, ranking, routing = await self._lookup.for_routing(number.e164, facts)
        if not holders:
            result = Resolution("unknown", number.e164, caller)
        elif len(holders) == 1:
            result = Resolution("match", number.e164, caller, (Candidate(*holders[0]),))
        else:
            result = Resolution("ambiguous", number.e164, caller, rank(holders, ranking))
        self.cache.put(number.e164, result, generation)
        return result, routing

    async def _holders(self, e164: str) -> list[Holder]:
        async with self._guard("resolve"):
            return await self._lookup.holders(e164)

    # -- routing --------------------------------------------------------------------------

    async def routing_facts(self, customer_id: int) -> RoutingFacts | None:
        """What routing rules need of one customer (flags, open cases' tiers, products, latest
        orders, language), as ``view`` has them, in one round trip; None if there is none."""
        async with self._guard("routing_facts"):
            return await self._lookup.routing_facts(customer_id)

    # -- the 360° view ----------------------------------------------------------------------

    async def view(self, customer_id: int) -> CustomerView | None:
        """Everything an agent needs on screen for one customer, or None if there is none."""
        async with self._read("view") as conn:
            customer = (
                await conn.execute(select(Customer).where(Customer.id == customer_id))
            ).first()
            if customer is None:
                return None
            phones = (
                await conn.execute(
                    select(PhoneNumber.number, PhoneNumber.e164, PhoneNumber.kind)
                    .where(PhoneNumber.customer_id == customer_id)
                    .order_by(PhoneNumber.id)
                )
            ).all()
            cases = (
                await conn.execute(
                    select(Case)
                    .where(Case.customer_id == customer_id, Case.status.in_(CASE_OPEN_STATUSES))
                    .order_by(Case.sla_deadline.is_(None), Case.sla_deadline, Case.id)
                )
            ).all()
            case_calls = await calls_of_cases(conn, [c.id for c in cases])
            orders = (
                await conn.execute(
                    select(Order)
                    .where(Order.customer_id == customer_id)
                    .order_by(Order.placed_at.desc(), Order.id.desc())
                    .limit(self.view_orders)
                )
            ).all()
            contacts = (
                await conn.execute(
                    select(Contact.name, Contact.role, Contact.email)
                    .where(Contact.customer_id == customer_id)
                    .order_by(Contact.id)
                )
            ).all()
            products = (
                await conn.execute(
                    select(OwnedProduct.product)
                    .where(OwnedProduct.customer_id == customer_id)
                    .order_by(OwnedProduct.id)
                )
            ).scalars()
            product_names = tuple(products)
            interactions = (
                await conn.execute(
                    select(Interaction)
                    .where(Interaction.customer_id == customer_id)
                    .order_by(Interaction.started_at.desc(), Interaction.id.desc())
                    .limit(self.view_interactions)
                )
            ).all()
            notes: dict[int, list[str]] = {}
            if interactions:
                for interaction_id, author, text in (
                    await conn.execute(
                        select(
                            InteractionNote.interaction_id,
                            InteractionNote.author,
                            InteractionNote.text,
                        )
                        .where(InteractionNote.interaction_id.in_([i.id for i in interactions]))
                        .order_by(InteractionNote.id)
                    )
                ).all():
                    notes.setdefault(interaction_id, []).append(f"{author}: {text}")
        flags = tuple(flag for flag in FLAGS if getattr(customer, flag))
        return CustomerView(
            customer_id=customer.id,
            external_id=customer.external_id,
            name=customer.name,
            kind=customer.kind,
            organisation=customer.organisation,
            language=customer.language,
            email=customer.email,
            address=customer.address,
            phones=_one_per_number(phones),
            flags=flags,
            highlights=tuple(flag for flag in flags if flag in HIGHLIGHT_FLAGS),
            open_cases=tuple(
                CaseView(
                    case_id=c.id,
                    subject=c.subject,
                    status=c.status,
                    tier=c.tier,
                    product=c.product,
                    sla_deadline=utc(c.sla_deadline),
                    notes=c.notes,
                    calls=tuple(case_calls.get(c.id, ())),
                )
                for c in cases
            ),
            orders=tuple(
                OrderView(
                    order_id=o.id,
                    reference=o.reference,
                    status=o.status,
                    delivery_state=o.delivery_state,
                    tracking_ref=o.tracking_ref,
                    placed_at=utc(o.placed_at),
                )
                for o in orders
            ),
            products=product_names,
            interactions=tuple(
                InteractionView(
                    interaction_id=i.id,
                    started_at=utc(i.started_at),
                    direction=i.direction,
                    queue=" → ".join(i.queues) or None,
                    tier=" → ".join(i.tiers) or None,
                    agent=" → ".join(i.agents) or None,
                    outcome=i.outcome,
                    disposition=i.disposition,
                    notes="\n".join(([i.notes] if i.notes else []) + notes.get(i.id, [])),
                )
                for i in interactions
            ),
            contacts=tuple(ContactView(c.name, c.role, c.email) for c in contacts),
        )

    # -- self-service identification (the IVR) ---------------------------------------------

    async def customer_by_external_id(self, external_id: str) -> int | None:
        """The customer whose account number (external id) this is, or None; a customer merged
        into another keeps its number on its tombstone: the survivor is the one."""
        async with self._read("identify") as conn:
            row = (
                await conn.execute(select(Customer.id).where(Customer.external_id == external_id))
            ).first()
            return await _survivor(conn, row.id) if row is not None else None

    async def order_by_reference(self, reference: str) -> tuple[int, OrderFact] | None:
        """The customer and the state of the order with this reference, newest first; None
        when there is none, or when orders of two customers carry it (it says not who)."""
        stmt = (
            select(Order.customer_id, Order.reference, Order.status, Order.delivery_state)
            .where(Order.reference == reference)
            .order_by(Order.id.desc())
            .limit(10)
        )
        async with self._read("identify") as conn:
            rows = (await conn.execute(stmt)).all()
        if not rows or len({r.customer_id for r in rows}) > 1:
            return None
        row = rows[0]
        return row.customer_id, OrderFact(row.reference, row.status, row.delivery_state)

    # -- search -----------------------------------------------------------------------------

    async def search(self, query: str, limit: int = 20) -> list[Candidate]:
        """Customers by number, external id (account number), email, order reference, postcode,
        or words of the name: ``ann ex`` and ``exam`` both find "Ann Example" (each word of the
        query starts a word of the name). Every lookup uses an index; the exact ones (number,
        id, email, order) stop the search when they find someone."""
        text = query.strip()
        if not text or limit <= 0:
            return []
        shown = (Customer.id, Customer.external_id, Customer.name, Customer.postcode)
        base = select(*shown).where(
            Customer.id.not_in(select(CustomerMerge.customer_id))  # not merged away
        )
        queries: list[tuple[str, Any]] = []
        number = normalise(text, self.region, self.internal_max_digits)
        if number.e164:
            queries.append(
                (
                    "number",
                    base.join(PhoneNumber, PhoneNumber.customer_id == Customer.id)
                    .where(PhoneNumber.e164 == number.e164)
                    .distinct(),
                )
            )
        # With the merged-away too: their account number leads to the survivor (below).
        queries.append(
            (
                "external id",
                select(*shown).where(Customer.external_id == text),
            )
        )
        if "@" in text:
            queries.append(("email", base.where(func.lower(Customer.email) == text.lower())))
        if len(text) <= 64:
            queries.append(
                (
                    "order reference",
                    base.where(
                        Customer.id.in_(select(Order.customer_id).where(Order.reference == text))
                    ),
                )
            )
        postcode = postcode_of(text)
        if postcode is not None:
            queries.append(
                # No ORDER BY: SQLite would walk the name index over every customer instead.
                ("postcode", base.where(Customer.postcode == postcode))
            )
        words = sorted(name_words(text), key=len, reverse=True)[:5]
        if words:
            by_name = base
            for word in words:
                by_name = by_name.where(
                    Customer.id.in_(
                        select(CustomerWord.customer_id).where(
                            CustomerWord.word >= word, CustomerWord.word < word + "\U0010ffff"
                        )
                    )
                )
            queries.append(("name", by_name.order_by(Customer.name, Customer.id)))
        found: dict[int, Candidate] = {}
        async with self._read("search") as conn:
            for reason, stmt in queries:
                for row in (await conn.execute(stmt.limit(limit))).all():
                    hit = Candidate(
                        row.id, row.external_id, row.name, reason, _spaced(row.postcode)
                    )
                    if reason == "external id":
                        hit = await _alive(conn, hit)
                    found.setdefault(hit.customer_id, hit)
                if found and reason not in ("name", "postcode"):
                    break  # an exact number, id, email or order match says who it is
        return list(found.values())[:limit]

    # -- writes -----------------------------------------------------------------------------

    async def upsert_customer(
        self,
        *,
        name: str,
        external_id: str | None = None,
        phones: Sequence[PhoneInput | str] | None = (),
        email: str | None = None,
        kind: str = "person",
        organisation: str | None = None,
        address: str | None = None,
        language: str | None = None,
        flags: Iterable[str] | None = (),
        marketing_opt_in_at: datetime | None = None,
        contacts: Sequence[ContactView] | None = None,
    ) -> UpsertResult:
        """Create a customer, or update the one with this ``external_id`` (all in one transaction);
        the external id of a customer merged into another updates the survivor.

        ``phones`` and ``contacts`` replace the customer's (None leaves them); ``flags`` sets
        exactly the flags listed (None leaves them alone). Numbers that cannot be normalised
        are kept as entered, without an E.164 form, and returned in ``invalid_numbers``.
        """
        if not name or not name.strip():
            raise InvalidCustomer("a customer needs a name")
        if kind not in ("person", "organisation"):
            raise InvalidCustomer(f"kind must be person or organisation, not {kind!r}")
        values: dict[str, Any] = {
            "name": name.strip(),
            "kind": kind,
            "organisation": organisation,
            "email": email,
            "address": address,
            "postcode": postcode_of(address),
            "language": language,
            "updated_at": datetime.now(UTC),
        }
        for column, value in (*values.items(), ("external_id", external_id)):
            limit = getattr(Customer.__table__.c[column].type, "length", None)
            if isinstance(value, str) and limit and len(value) > limit:
                raise InvalidCustomer(f"{column} is longer than {limit} characters")
            if isinstance(value, str) and "\x00" in value:  # PostgreSQL cannot store it
                raise InvalidCustomer(f"{column} contains a NUL character")
        if flags is not None:
            wanted = {f.strip().lower() for f in flags if f.strip()}
            unknown = wanted - set(FLAGS)
            if unknown:
                raise InvalidCustomer(
                    f"unknown flag(s) {', '.join(sorted(unknown))} (known: {', '.join(FLAGS)})"
                )
            values.update({flag: flag in wanted for flag in FLAGS})
            if "marketing_opt_in" in wanted:
                values["marketing_opt_in_at"] = utc(marketing_opt_in_at) or datetime.now(UTC)
            else:
                values["marketing_opt_in_at"] = None
        phone_rows: list[dict[str, Any]] = []
        invalid: list[str] = []
        for phone in phones or ():
            entry = PhoneInput(phone) if isinstance(phone, str) else phone
            if entry.kind not in PHONE_KINDS:
                raise InvalidCustomer(
                    f"phone kind must be one of {PHONE_KINDS}, not {entry.kind!r}"
                )
            if not entry.number.strip():
                continue
            if len(entry.number.strip()) > 64:
                raise InvalidCustomer("a phone number is longer than 64 characters")
            if "\x00" in entry.number:
                raise InvalidCustomer("a phone number contains a NUL character")
            e164 = normalise(entry.number, self.region, self.internal_max_digits).e164
            if e164 is None:
                invalid.append(entry.number)
            phone_rows.append({"kind": entry.kind, "number": entry.number.strip(), "e164": e164})
        async with self._write("upsert_customer") as conn:
            existing = None
            if external_id is not None:
                existing = (
                    await conn.execute(
                        select(Customer.id).where(Customer.external_id == external_id)
                    )
                ).scalar()
                if existing is not None:  # merged away: the survivor holds its records now
                    existing = await _survivor(conn, existing)
            if existing is None:
                defaults = {flag: False for flag in FLAGS}
                customer_id = (
                    await conn.execute(
                        insert(Customer)
                        .values({**defaults, **values, "external_id": external_id})
                        .returning(Customer.id)
                    )
                ).scalar_one()
                old_e164: set[str] = set()
            else:
                customer_id = existing
                await conn.execute(
                    update(Customer).where(Customer.id == customer_id).values(values)
                )
                old_e164 = set()
                if phones is not None:
                    old_e164 = {
                        e164
                        for e164 in (
                            await conn.execute(
                                select(PhoneNumber.e164).where(
                                    PhoneNumber.customer_id == customer_id
                                )
                            )
                        ).scalars()
                        if e164
                    }
            if phones is not None:
                await conn.execute(
                    delete(PhoneNumber).where(PhoneNumber.customer_id == customer_id)
                )
                if phone_rows:
                    await conn.execute(
                        insert(PhoneNumber),
                        [{**row, "customer_id": customer_id} for row in phone_rows],
                    )
            await conn.execute(delete(CustomerWord).where(CustomerWord.customer_id == customer_id))
            words = name_words(values["name"], organisation)
            if words:
                await conn.execute(
                    insert(CustomerWord), [{"word": w, "customer_id": customer_id} for w in words]
                )
            if contacts is not None:
                await conn.execute(delete(Contact).where(Contact.customer_id == customer_id))
                if contacts:
                    await conn.execute(
                        insert(Contact),
                        [
                            {"customer_id": customer_id, "name": c.name, "role": c.role,
                             "email": c.email}
                            for c in contacts
                        ],
                    )  # fmt: skip
        if phones is not None:
            self.cache.invalidate(old_e164 | {r["e164"] for r in phone_rows if r["e164"]})
        return UpsertResult(customer_id, existing is None, tuple(invalid))

    async def add_phone(self, customer_id: int, number: str, kind: str = "mobile") -> str | None:
        """Add one number to a customer; returns its E.164 form (None if it is not valid).
        A number the customer already has (same E.164 form) is not added twice; a customer
        merged into another gets it on the survivor."""
        if kind not in PHONE_KINDS:
            raise InvalidCustomer(f"phone kind must be one of {PHONE_KINDS}, not {kind!r}")
        e164 = normalise(number, self.region, self.internal_max_digits).e164
        async with self._write("add_phone") as conn:
            customer_id = await _survivor(conn, customer_id)  # never on a tombstone
            if e164 is not None:
                has = select(PhoneNumber.id).where(
                    PhoneNumber.customer_id == customer_id, PhoneNumber.e164 == e164
                )
                if (await conn.execute(has.limit(1))).first() is not None:
                    return e164
            await conn.execute(
                insert(PhoneNumber).values(
                    customer_id=customer_id, kind=kind, number=number.strip(), e164=e164
                )
            )
        if e164:
            self.cache.invalidate([e164])
        return e164

    async def remove_phone(self, customer_id: int, number: str) -> int:
        """Remove a customer's number (matched on its E.164 form); returns how many went."""
        e164 = normalise(number, self.region, self.internal_max_digits).e164
        condition = PhoneNumber.e164 == e164 if e164 else PhoneNumber.number == number.strip()
        async with self._write("remove_phone") as conn:
            removed = (
                await conn.execute(
                    delete(PhoneNumber).where(PhoneNumber.customer_id == customer_id, condition)
                )
            ).rowcount
        if e164:
            self.cache.invalidate([e164])
        return int(removed or 0)

    def _insert(self) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(Interaction)
        return sqlite.insert(Interaction)

    async def record_interaction(
        self, rec: InteractionRecord, *, fence: Fence | None = None
    ) -> int:
        """Write the call into the history once (keyed on ``call_id``); later calls update it.

        ``InvalidInteraction`` when the record cannot be stored (see ``crm_core.records``).
        With ``fence`` (several instances) the write claims the ingester's token in the same
        transaction: ``StaleFence``, and nothing written, when a newer ingester has written
        for the PBX since (``crm_core.fence``)."""
        rec = storable(rec)
        values: dict[str, Any] = {
            "call_id": rec.call_id,
            "customer_id": rec.customer_id,
            "caller": rec.caller,
            "direction": rec.direction,
            "started_at": utc(rec.started_at),
            "answered_at": utc(rec.answered_at),
            "ended_at": utc(rec.ended_at),
            "queues": list(rec.queues),
            "tiers": list(rec.tiers),
            "agents": list(rec.agents),
            "outcome": rec.outcome,
            "wait_s": rec.wait_s,
            "talk_s": rec.talk_s,
            "transfers": [dict(t) for t in rec.transfers],
            "routing_reason": rec.routing_reason,
            "notes": rec.notes,
            "disposition": rec.disposition,
            "extra": dict(rec.extra),
        }
        stmt = self._insert().values(values)
        # A later report of the same call adds to it: what it leaves empty is kept as stored.
        update_set = {
            name: stmt.excluded[name]
            for name, value in values.items()
            if name != "call_id" and value not in (None, "", [], {})
        }
        stmt = stmt.on_conflict_do_update(index_elements=["call_id"], set_=update_set).returning(
            Interaction.id
        )
        try:
            async with self._write("record_interaction") as conn:
                if fence is not None:
                    await claim_fence(conn, fence.pbx_id, fence.token)
                interaction_id = int((await conn.execute(stmt)).scalar_one())
                # A customer's inbound call: its legs (if written) and the customer's next
                # call are marked repeat or not (crm_core.repeats); 4 indexed look-ups.
                started = values["started_at"]
                if rec.customer_id is not None and rec.direction == "inbound" and started:
                    await mark_recorded(conn, rec.call_id, rec.customer_id, started)
        except CrmError as exc:
            if rec.customer_id is None or isinstance(exc, CrmUnavailable):
                raise
            # The customer was deleted during the call: keep the call, unlinked.
            _log().warning("crm.interaction_customer_gone", call_id=rec.call_id,
                        customer_id=rec.customer_id)  # fmt: skip
            extra = {**rec.extra, "missing_customer_id": rec.customer_id}
            return await self.record_interaction(
                dataclasses.replace(rec, customer_id=None, extra=extra), fence=fence
            )
        caller = normalise(rec.caller, self.region, self.internal_max_digits).e164
        if caller:
            self.cache.invalidate([caller])  # its ranking may change
        return interaction_id

    async def _interaction_id(self, conn: AsyncConnection, call_id: str) -> int:
        """The interaction of ``call_id``, created as ``in_progress`` if the call is not written."""
        await conn.execute(
            self._insert()
            .values(
                call_id=call_id,
                direction="inbound",
                outcome="in_progress",
                queues=[],
                tiers=[],
                agents=[],
                transfers=[],
                notes="",
                extra={},
            )
            .on_conflict_do_nothing(index_elements=["call_id"])
        )
        return int(
            (
                await conn.execute(select(Interaction.id).where(Interaction.call_id == call_id))
            ).scalar_one()
        )

    async def add_interaction_note(self, call_id: str, text: str, author: str) -> int:
        """Append an agent's note to a call (during or after it); returns the note's id."""
        if not text.strip():
            raise CrmError("an empty note is not saved")
        async with self._write("add_interaction_note") as conn:
            interaction_id = await self._interaction_id(conn, call_id)
            return int(
                (
                    await conn.execute(
                        insert(InteractionNote)
                        .values(interaction_id=interaction_id, author=author, text=text.strip())
                        .returning(InteractionNote.id)
                    )
                ).scalar_one()
            )

    async def set_disposition(self, call_id: str, code: str) -> None:
        """Set the wrap-up code of a call (during or after it)."""
        async with self._write("set_disposition") as conn:
            interaction_id = await self._interaction_id(conn, call_id)
            await conn.execute(
                update(Interaction).where(Interaction.id == interaction_id).values(disposition=code)
            )

    async def interaction(self, call_id: str) -> dict[str, Any] | None:
        """The stored row of one call (for the API and tests), with its agent notes."""
        async with self._read("interaction") as conn:
            row = (
                await conn.execute(select(Interaction).where(Interaction.call_id == call_id))
            ).first()
            if row is None:
                return None
            data = dict(row._mapping)
            notes = (
                await conn.execute(
                    select(InteractionNote.author, InteractionNote.text)
                    .where(InteractionNote.interaction_id == data["id"])
                    .order_by(InteractionNote.id)
                )
            ).all()
        for key in ("started_at", "answered_at", "ended_at"):
            data[key] = utc(data[key])
        data["agent_notes"] = [{"author": a, "text": t} for a, t in notes]
        return data

    async def count_customers(self) -> int:
        async with self._read("count_customers") as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(Customer))).scalar_one()
            )

    async def shared_numbers(self, e164s: Iterable[str]) -> dict[str, list[Candidate]]:
        """Of these numbers, those held by more than one customer, with those customers."""
        wanted = sorted(set(e164s))
        holders: dict[str, list[Candidate]] = {}
        async with self._read("shared_numbers") as conn:
            for start in range(0, len(wanted), 500):
                rows = (
                    await conn.execute(
                        select(PhoneNumber.e164, Customer.id, Customer.external_id, Customer.name)
                        .join(Customer, Customer.id == PhoneNumber.customer_id)
                        .where(PhoneNumber.e164.in_(wanted[start : start + 500]))
                        .distinct()
                        .order_by(PhoneNumber.e164, Customer.id)
                    )
                ).all()
                for e164, customer_id, external_id, name in rows:
                    if e164:
                        holders.setdefault(e164, []).append(
                            Candidate(customer_id, external_id, name, "shares this number")
                        )
        return {k: v for k, v in holders.items() if len(v) > 1}


__all__ = ["CrmStore", "PhoneInput", "UpsertResult"]


async def _survivor(conn: AsyncConnection, customer_id: int) -> int:
    """The customer holding a merged-away customer's records now (itself if not merged),
    following chains (A into B, B into C: C)."""
    seen = {customer_id}
    current = customer_id
    while True:
        nxt = (
            await conn.execute(
                select(CustomerMerge.survivor_id).where(CustomerMerge.customer_id == current)
            )
        ).scalar()
        if nxt is None or nxt in seen:
            return current
        seen.add(nxt)
        current = int(nxt)


async def _alive(conn: AsyncConnection, hit: Candidate) -> Candidate:
    """A customer found by a number its tombstone keeps: the survivor, saying why."""
    alive = await _survivor(conn, hit.customer_id)
    if alive == hit.customer_id:
        return hit
    row = (
        await conn.execute(
            select(Customer.id, Customer.external_id, Customer.name, Customer.postcode).where(
                Customer.id == alive
            )
        )
    ).one()
    why = f"{hit.rank_reason} {hit.external_id} (merged into this customer)"
    return Candidate(row.id, row.external_id, row.name, why, _spaced(row.postcode))


def _spaced(postcode: str | None) -> str | None:
    """``SW1A1AA`` (as kept, for the index) as written: ``SW1A 1AA``."""
    return f"{postcode[:-3]} {postcode[-3:]}" if postcode and len(postcode) > 3 else postcode


def _one_per_number(rows: Sequence[Any]) -> tuple[PhoneView, ...]:
    """The customer's numbers, each once: two duplicates merged often held the same one (both
    rows are kept, so that nothing is lost; the agent needs to see it once)."""
    seen: set[str] = set()
    out = []
    for p in rows:
        key = p.e164 or p.number
        if key not in seen:
            seen.add(key)
            out.append(PhoneView(p.number, p.e164, p.kind))
    return tuple(out)
