"""Agent authentication: bearer tokens checked against the hashes in the config.

A token is a random secret the agent keeps; the config holds only its SHA-256
(``cti agent-token NAME`` makes both). Every API path needs a token except the health,
metrics, OpenAPI, favicon and static desktop paths. ``/api/route`` (it tells who owns a number)
has its own credential, not an agent's: the ``[agi] http_token`` secret that the ``cti-agi``
script sends; without one configured it answers nobody.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from cti.config import AgentConfig
from cti.http.errors import ApiError

AGENT = web.RequestKey("agent", AgentConfig)

PUBLIC_PATHS = frozenset(
    {"/", "/favicon.ico", "/healthz", "/metrics", "/api/openapi.json", "/api/login", "/ws"}
)
PUBLIC_PATHS |= {"/supervisor", "/ws/supervisor"}  # the console page; its socket checks tokens
PUBLIC_PREFIXES = ("/desktop/",)
ROUTE_PATH = "/api/route"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # A header with bytes that are not UTF-8 reaches us with surrogate escapes: hash them too.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def same_secret(given: str | None, expected: str) -> bool:
    """``given`` is the configured secret ``expected`` (constant time; never an empty one)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(hash_token(given), hash_token(expected))


class AgentDirectory:
    """The desktop users from the config, found by their token."""

    def __init__(self, agents: Sequence[AgentConfig]) -> None:
        # Looked up by the token's SHA-256, not compared with each: a lookup's timing tells
        # about the digest only, never the token, and 2,000 desktops reconnecting after a
        # failover cost one hash each instead of 2,000 comparisons each.
        self._by_digest = {
            a.token_sha256.strip().lower(): a for a in agents if a.token_sha256.strip()
        }
        self._by_name = {a.name: a for a in agents}

    def authenticate(self, token: str | None) -> AgentConfig | None:
        if not token:
            return None
        return self._by_digest.get(hash_token(token))

    def by_name(self, name: str) -> AgentConfig | None:
        return self._by_name.get(name)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def is_supervisor(agent: AgentConfig) -> bool:
    return agent.role == "supervisor"


def agent_info(agent: AgentConfig) -> dict[str, Any]:
    return {
        "name": agent.name,
        "member": agent.member,
        "interface": agent.interface,
        "role": agent.role,
        "tiers": list(agent.tiers),
    }


def auth_middleware(directory: AgentDirectory, route_token: str = "") -> Middleware:
    """Agents' bearer tokens on the API; ``route_token`` (``[agi] http_token``) on /api/route."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or request.method == "OPTIONS":
            return await handler(request)
        if path == ROUTE_PATH:
            if not route_token:
                raise ApiError(401, "token: /api/route is off until [agi] http_token is set")
            if not same_secret(bearer_token(request), route_token):
                raise ApiError(401, "token: missing or wrong [agi] http_token (Bearer)")
            return await handler(request)
        agent = directory.authenticate(bearer_token(request))
        if agent is None:
            raise ApiError(401, "token: missing or unknown (Authorization: Bearer <token>)")
        request[AGENT] = agent
        return await handler(request)

    return middleware
