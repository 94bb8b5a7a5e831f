"""Likely duplicate customers, each pair with a score and the reasons for it.

Candidates are found by **blocking**, never by comparing every pair: customers are grouped by
normalised number (E.164), by email (case-insensitively) and by address (the UK postcode when
the address has one, else the whole address, case and punctuation folded); only customers
that share a group are compared. One pass over the numbers and one over the customers, then
work proportional to the pairs within groups: 100,000 customers take seconds. A group larger
than ``max_block`` (a switchboard number, a shared mailbox, a block of flats) says nothing
about who is who: it is skipped and counted in ``skipped_blocks``.

The score of a pair (0-100) is the sum of the points of its reasons:

- same number: +35; same email: +45; same address: +25 (same postcode only: +10);
- names alike (rapidfuzz ``ratio`` or ``token_sort_ratio``, so "Smith, John" is "John Smith"):
  +60 at 100 %, 0 at 75 %, down to -40 at 50 % or less. Two people of one household share a
  number and an address but not a first name ("Ann Smith" and "Bob Smith", 67 %): they score
  low, which is right: they are two customers (see ``crm_core.merge`` to divide a number).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from rapidfuzz import fuzz, utils
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.models import Customer, CustomerMerge, PhoneNumber

NUMBER_POINTS = 35
EMAIL_POINTS = 45
ADDRESS_POINTS = 25
POSTCODE_POINTS = 10
MAX_BLOCK = 30
MIN_SCORE = 50

_POSTCODE = re.compile(r"\b([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})\b", re.IGNORECASE)
_NOT_WORD = re.compile(r"\W+")


@dataclass(frozen=True)
class Reason:
    kind: str  # number / email / address / postcode / name
    detail: str
    points: int


@dataclass(frozen=True)
class DuplicatePair:
    first_id: int
    second_id: int
    first_name: str
    second_name: str
    score: int
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DuplicateReport:
    pairs: tuple[DuplicatePair, ...]
    customers: int
    compared: int  # pairs scored (all that share a block)
    skipped_blocks: int  # blocks above max_block, not compared

    def to_dict(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "compared": self.compared,
            "skipped_blocks": self.skipped_blocks,
            "pairs": [p.to_dict() for p in self.pairs],
        }


def postcode(address: str | None) -> str | None:
    """The UK postcode in an address, spaced and upper-case (``sw1a1aa`` → ``SW1A 1AA``)."""
    found = _POSTCODE.search(address or "")
    return f"{found.group(1)} {found.group(2)}".upper() if found else None


def address_key(address: str | None) -> str | None:
    folded = _NOT_WORD.sub(" ", (address or "").casefold()).strip()
    return folded or None


def name_similarity(first: str, second: str) -> float:
    """0..1: how alike two names are, word order and case aside (the better of the plain and
    the word-sorted comparison: sorting alone puts "Katherine Green" after "Green")."""
    a, b = utils.default_process(first), utils.default_process(second)
    return max(fuzz.ratio(a, b), fuzz.token_sort_ratio(a, b)) / 100.0


def name_points(similarity: float) -> int:
    return max(-40, min(60, round(60 * (similarity - 0.75) / 0.25)))


@dataclass
class _Customer:
    name: str
    email: str | None
    address: str | None


def find_duplicates(
    customers: dict[int, _Customer],
    numbers: Iterable[tuple[int, str]],
    *,
    min_score: int = MIN_SCORE,
    max_block: int = MAX_BLOCK,
) -> DuplicateReport:
    """The pairs scoring at least ``min_score``, best first (pure: no database)."""
    blocks: dict[tuple[str, str], set[int]] = defaultdict(set)
    for customer_id, e164 in numbers:
        if customer_id in customers:
            blocks[("number", e164)].add(customer_id)
    for customer_id, c in customers.items():
        if c.email and c.email.strip():
            blocks[("email", c.email.strip().casefold())].add(customer_id)
        code = postcode(c.address)
        if code:
            blocks[("postcode", code)].add(customer_id)
        else:
            key = address_key(c.address)
            if key:
                blocks[("address", key)].add(customer_id)
    shared: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)
    skipped = 0
    for (kind, value), members in blocks.items():
        if len(members) < 2:
            continue
        if len(members) > max_block:
            skipped += 1
            continue
        ordered = sorted(members)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                shared[(a, b)].setdefault(kind, value)
    names: dict[int, str] = {}
    places: dict[int, str | None] = {}
    pairs = []
    for (a, b), kinds in shared.items():
        for cid in (a, b):
            if cid not in names:
                names[cid] = utils.default_process(customers[cid].name)
                places[cid] = address_key(customers[cid].address)
        same_address = places[a] is not None and places[a] == places[b]
        reasons = _reasons(kinds, same_address, customers[a].address)
        base = sum(r.points for r in reasons)
        # The least name likeness that can still reach min_score: pairs that cannot are not
        # scored further (most pairs of a busy street).
        needed = 0.75 + 0.25 * (min_score - base) / 60
        if needed > 1.0:
            continue
        cutoff = max(0.0, needed * 100 - 1)
        similarity = _similarity(names[a], names[b], cutoff)
        name = Reason("name", f"names {round(similarity * 100)}% alike", name_points(similarity))
        score = max(0, min(100, base + name.points))
        if score >= min_score:
            first, second = customers[a], customers[b]
            pair = DuplicatePair(a, b, first.name, second.name, score, (*reasons, name))
            pairs.append(pair)
    pairs.sort(key=lambda p: (-p.score, p.first_id, p.second_id))
    return DuplicateReport(tuple(pairs), len(customers), len(shared), skipped)


def _similarity(a: str, b: str, cutoff: float) -> float:
    """``name_similarity`` of processed names; below ``cutoff`` (0-100) rapidfuzz answers 0."""
    best = max(
        fuzz.ratio(a, b, score_cutoff=cutoff), fuzz.token_sort_ratio(a, b, score_cutoff=cutoff)
    )
    return float(best) / 100.0


def _reasons(kinds: dict[str, str], same_address: bool, address: str | None) -> list[Reason]:
    reasons = []
    if "number" in kinds:
        reasons.append(Reason("number", f"same number {kinds['number']}", NUMBER_POINTS))
    if "email" in kinds:
        reasons.append(Reason("email", f"same email {kinds['email']}", EMAIL_POINTS))
    if same_address:
        reasons.append(Reason("address", f"same address {address}", ADDRESS_POINTS))
    elif "postcode" in kinds:
        reasons.append(Reason("postcode", f"same postcode {kinds['postcode']}", POSTCODE_POINTS))
    return reasons


async def load_and_find(
    engine: AsyncEngine, *, min_score: int = MIN_SCORE, max_block: int = MAX_BLOCK
) -> DuplicateReport:
    """``find_duplicates`` over every customer not merged away: two reads of the database."""
    merged = select(CustomerMerge.customer_id)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Customer.id, Customer.name, Customer.email, Customer.address).where(
                Customer.id.not_in(merged)
            )
        )
        customers = {r.id: _Customer(r.name, r.email, r.address) for r in rows}
        found = await conn.execute(
            select(PhoneNumber.customer_id, PhoneNumber.e164).where(
                PhoneNumber.e164.is_not(None), PhoneNumber.customer_id.not_in(merged)
            )
        )
        numbers = [(int(r.customer_id), str(r.e164)) for r in found]
    return find_duplicates(customers, numbers, min_score=min_score, max_block=max_block)
