"""GET /api/customers?q= (search) and GET /api/customers/{id} (the 360° view)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cti.http.errors import ApiError
from cti.http.state import DEPS


def _plain(item: Any) -> Any:
    to_dict = getattr(item, "to_dict", None)
    return to_dict() if callable(to_dict) else item


def int_param(value: str, name: str, *, low: int = 1, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{name}: must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"{name}: must be {bound}")
    return number


async def search_customers(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    if len(query) < 2:
        raise ApiError(400, "q: give at least 2 characters to search for")
    limit = int_param(request.query.get("limit", "20"), "limit", high=100)
    found = await request.app[DEPS].crm.search(query, limit=limit)
    return web.json_response({"customers": [_plain(c) for c in found]})


async def get_customer(request: web.Request) -> web.Response:
    customer_id = int_param(request.match_info["customer_id"], "id")
    view = await request.app[DEPS].crm.view(customer_id)
    if view is None:
        raise ApiError(404, f"no customer {customer_id}")
    return web.json_response(view.to_dict())
