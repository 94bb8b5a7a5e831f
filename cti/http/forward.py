"""Several instances: a call-scoped request that lands on a standby is answered by the
ingester of the call's PBX (``cti.cluster.forward`` carries it there through Redis).

``/api/calls/{call_id}`` and everything under it (notes, disposition, escalate, customer,
cases, spy, recording...), and ``POST /api/cases/{case_id}/calls`` (the call in its body), is
forwarded, as received, when the call is not in this instance's
memory and its PBX is ingested by another instance; the ingester replays it on its own HTTP
server, so its answer (status, content type, body) is the one returned here. A replayed
request carries a header only the ingester's relay sets (a secret of that process): it is
never forwarded again, and the header from anyone else is refused with 403.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from aiohttp import web

from cti.http.auth import AGENT, Handler
from cti.http.state import DEPS

RELAYED = web.RequestKey("relayed", bool)
CALL_PATH = re.compile(r"^/api/calls/(?P<call_id>[^/]+)(?:/|$)")
CASE_CALLS = re.compile(r"^/api/cases/[^/]+/calls$")  # {"call_id"} in the body
NOT_CALLS = frozenset({"originate"})  # /api/calls/originate is an agent's, not a call's


class Forwarder(Protocol):
    def relayed(self, request: web.Request) -> bool:
        """The request was replayed here by this instance's relay (403 if the header is forged)."""
        ...

    async def to_ingester(self, pbx: str, request: web.Request) -> web.StreamResponse | None:
        """The ingester of ``pbx``'s answer to ``request`` (None: no other instance holds it)."""
        ...

    async def took_call(self, pbx: str, call_id: str, member: str) -> bool:
        """Whether the ingester of ``pbx`` has the call in memory, answered by ``member``."""
        ...

    async def calls_elsewhere(self, request: web.Request) -> tuple[list[dict[str, Any]], list[str]]:
        """``GET /api/calls`` of every other ingester, and the PBXs whose list is missing."""
        ...


@web.middleware
async def forward_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    deps = request.app[DEPS]
    forward = deps.forward
    if forward is None:
        return await handler(request)
    if forward.relayed(request):
        request[RELAYED] = True
        return await handler(request)
    call_id = await _call_of(request) if AGENT in request else None
    if call_id is not None and deps.pbx is not None:
        pbx = deps.pbx.standby_for(call_id)
        if pbx is not None and deps.calls.get(call_id) is None:
            answer = await forward.to_ingester(pbx, request)
            if answer is not None:
                return answer
    return await handler(request)


async def _call_of(request: web.Request) -> str | None:
    """The live call a request is about (None: none, or not one the path or body names)."""
    found = CALL_PATH.match(request.path)
    if found is not None:
        return None if found["call_id"] in NOT_CALLS else found["call_id"]
    if request.method != "POST" or CASE_CALLS.match(request.path) is None:
        return None
    try:
        body = await request.json()  # read once: the handler gets the same bytes
    except ValueError:
        return None  # the handler says what is wrong with it
    call_id = body.get("call_id") if isinstance(body, dict) else None
    return call_id if isinstance(call_id, str) else None
