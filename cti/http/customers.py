"""GET /api/customers?q= (search) and GET /api/customers/{id} (the 360° view)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from cti.http.errors import ApiError
from cti.http.models import MAX_ID
from cti.http.state import DEPS

# ASCII digits only: int() would also take "１２" (full-width), "+1", " 1" and "1_000".
_DIGITS = re.compile(r"[0-9]{1,19}")


def _plain(item: Any) -> Any:
    to_dict = getattr(item, "to_dict", None)
    return to_dict() if callable(to_dict) else item


def int_param(value: str, name: str, *, low: int = 1, high: int = MAX_ID) -> int:
    """A whole number from a path or query parameter, within ``low..high``; 400 otherwise."""
    if _DIGITS.fullmatch(value) is None:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ApiError(400, f"{name}: must be a whole number written in digits 0-9, got {shown!r}")
    number = int(value)
    if not low <= number <= high:
        raise ApiError(400, f"{name}: must be between {low} and {high}")
    return number


async def search_customers(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    if len(query) < 2:
        raise ApiError(400, "q: give at least 2 characters to search for")
    if len(query) > 200 or not query.isprintable():
        raise ApiError(400, "q: at most 200 printable characters")
    limit = int_param(request.query.get("limit", "20"), "limit", high=100)
    found = await request.app[DEPS].crm.search(query, limit=limit)
    return web.json_response({"customers": [_plain(c) for c in found]})


async def get_customer(request: web.Request) -> web.Response:
    customer_id = int_param(request.match_info["customer_id"], "id")
    admin = request.app[DEPS].customers_admin
    # A customer merged into another answers with the survivor (old links keep working).
    survivor = await admin.survivor_of(customer_id) if admin is not None else None
    view = await request.app[DEPS].crm.view(survivor or customer_id)
    if view is None:
        raise ApiError(404, f"id: no customer {customer_id}")
    if survivor is None:
        return web.json_response(view.to_dict())
    return web.json_response(
        {**view.to_dict(), "merged_into": survivor, "requested_id": customer_id}
    )
