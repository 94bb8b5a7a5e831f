"""Call-scoped API requests that land on a standby, answered by the ingester of the call's PBX.

Live calls are in the ingester's memory only. The standby sends the request as received
(method, path and query, Authorization, content type, body) as a relay job to the instance
holding the PBX's lease; that instance replays it on its own HTTP server (the bound address,
127.0.0.1 when bound to every interface), so authentication, validation and handlers are
the same as for a desktop connected to it, and the standby returns its answer as is (status,
content type, body up to ``MAX_REPLY``). No instance needs another's address: Redis only.

Who took a call (``took_call``, e.g. may this agent hear its recording): a standby asks the
ingester, whose memory has the call until its legs are written (``TOOK_CALL`` job).

Loop guard: the replay carries ``RELAY_HEADER`` with a secret of the ingester's process,
which never leaves it; a request bearing it is never forwarded, and bearing a wrong one is
refused (403). No answer in time: 504 saying the request may have been applied there.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from yarl import URL

from cti.ami.errors import AmiError
from cti.cluster.relay import ActionRelay
from cti.http.errors import ApiError
from cti.pbx_actions import PbxRefused

log = structlog.get_logger(__name__)

RELAY_HEADER = "X-CTI-Relayed"
JOB = "http"
TOOK_CALL = "took_call"
MAX_REPLY = 4 * 1024 * 1024
# A list of calls is read at once or not at all: one instance's silence must not hold up the
# others' calls for the relay's whole timeout (which an action needs).
LIST_TIMEOUT_S = 2.0
ANY_HOST = frozenset({"", "0.0.0.0", "::"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _error(status: int, message: str) -> dict[str, Any]:
    body = json.dumps({"error": message}).encode()
    return {"status": status, "content_type": "application/json", "body": _b64(body)}


class HttpForward:
    """Both ends: the standby's ``to_ingester`` and the ingester's replay (``Forwarder``)."""

    def __init__(
        self,
        relay: ActionRelay,
        pbx_ids: Sequence[str],
        ingests: Callable[[str], bool],
        *,
        took_call: Callable[[str, str], Awaitable[bool]] | None = None,
        list_timeout_s: float = LIST_TIMEOUT_S,
    ) -> None:
        self._relay = relay
        self._pbx_ids = list(pbx_ids)
        self._ingests = ingests
        self._secret = secrets.token_urlsafe(32)
        # This instance's bound HTTP address once started (set by the daemon).
        self.address: Callable[[], tuple[str, int] | None] = lambda: None
        self.list_timeout_s = list_timeout_s
        self.replayed = 0  # requests this instance answered for another one
        relay.handle(JOB, self._replay)
        if took_call is not None:
            answer = took_call

            async def took(payload: Any) -> bool:
                return await answer(str(payload["call_id"]), str(payload["member"]))

            relay.handle(TOOK_CALL, took)

    def replay_headers(self) -> dict[str, str]:
        """What marks a request this instance's relay replays on its own server."""
        return {RELAY_HEADER: self._secret}

    # ---- the standby's end -----------------------------------------------------------------

    def relayed(self, request: web.Request) -> bool:
        value = request.headers.get(RELAY_HEADER)
        if value is None:
            return False
        if not hmac.compare_digest(value.encode(), self._secret.encode()):
            raise ApiError(403, f"{RELAY_HEADER}: only an instance's own relay may set it")
        return True

    async def to_ingester(self, pbx: str, request: web.Request) -> web.StreamResponse | None:
        holder = (await self._relay.holders([pbx]))[pbx]
        if holder is None or holder == self._relay.holder:
            return None  # nobody (the handler says 503) or this one (just took it over)
        answer = await self._send(holder, request, request.method, request.raw_path)
        log.info("forward.answered", pbx=pbx, via=holder, status=answer.status)
        return answer

    async def took_call(self, pbx: str, call_id: str, member: str) -> bool:
        holder = (await self._relay.holders([pbx]))[pbx]
        if holder is None or holder == self._relay.holder:
            return False  # nobody has it in memory: the legs written said it all
        what = f"who took call {call_id}"
        try:
            payload = {"call_id": call_id, "member": member}
            return bool(await self._relay.job(holder, TOOK_CALL, payload, what))
        except (PbxRefused, AmiError) as exc:
            log.warning("forward.took_call_unanswered", via=holder, error=str(exc))
            raise ApiError(
                503, f"cluster: instance {holder}, which holds call {call_id}, did not say {what}"
            ) from None

    async def calls_elsewhere(self, request: web.Request) -> tuple[list[dict[str, Any]], list[str]]:
        elsewhere = [p for p in self._pbx_ids if not self._ingests(p)]
        holders = await self._relay.holders(elsewhere)
        by_holder: dict[str, list[str]] = {}
        missing = [p for p, h in holders.items() if h is None]
        for pbx, holder in holders.items():
            if holder is not None and holder != self._relay.holder:
                by_holder.setdefault(holder, []).append(pbx)

        async def one(holder: str) -> list[dict[str, Any]] | None:
            try:
                async with asyncio.timeout(self.list_timeout_s):
                    answer = await self._send(holder, request, "GET", "/api/calls")
                if answer.status != 200 or answer.body is None:
                    return None
                calls: list[dict[str, Any]] = json.loads(bytes(answer.body))["calls"]  # type: ignore[arg-type]
                return calls
            except TimeoutError:
                log.warning("forward.list_late", via=holder, within_s=self.list_timeout_s)
                return None
            except (ApiError, ValueError, KeyError, TypeError) as exc:
                log.warning("forward.list_failed", via=holder, error=repr(exc))
                return None

        holders_now = list(by_holder)
        lists = await asyncio.gather(*(one(h) for h in holders_now))
        out: list[dict[str, Any]] = []
        for holder, calls in zip(holders_now, lists, strict=True):
            if calls is None:
                missing.extend(by_holder[holder])
            else:
                out.extend(calls)
        return out, sorted(missing)

    async def _send(
        self, holder: str, request: web.Request, method: str, path: str
    ) -> web.Response:
        payload = {
            "method": method,
            "path": path,
            "authorization": request.headers.get("Authorization"),
            "content_type": request.headers.get("Content-Type"),
            "body": _b64(await request.read()) if method != "GET" else "",
        }
        what = f"{method} {request.path}"
        try:
            value = await self._relay.job(holder, JOB, payload, what)
        except PbxRefused as exc:
            raise ApiError(503, f"cluster: {exc.message}") from None
        except AmiError:
            raise ApiError(
                504,
                f"cluster: no answer within {self._relay.timeout_s:g} s from instance {holder}, "
                f"which holds this call ({what}): the request may have been applied there; "
                "check the call before trying again",
            ) from None
        return web.Response(
            status=int(value["status"]),
            body=base64.b64decode(value["body"]),
            headers={"Content-Type": str(value["content_type"])},
        )

    # ---- the ingester's end ----------------------------------------------------------------

    async def _replay(self, payload: Any) -> dict[str, Any]:
        address = self.address()
        if address is None:
            return _error(503, "cluster: the ingesting instance's HTTP server is not up")
        host, port = address
        host = "127.0.0.1" if host in ANY_HOST else host
        path, _, query = str(payload["path"]).partition("?")
        url = URL.build(
            scheme="http", host=host, port=port, path=path, query_string=query, encoded=True
        )
        headers = self.replay_headers()
        for name, key in (("Authorization", "authorization"), ("Content-Type", "content_type")):
            if payload.get(key):
                headers[name] = str(payload[key])
        timeout = aiohttp.ClientTimeout(total=self._relay.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(
                    str(payload["method"]),
                    url,
                    headers=headers,
                    data=base64.b64decode(payload.get("body") or ""),
                ) as r,
            ):
                body = bytearray()
                async for chunk in r.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_REPLY:
                        why = f"the answer is larger than {MAX_REPLY // 1024} KiB"
                        return _error(502, f"cluster: {why} (the request was applied)")
                self.replayed += 1
                return {
                    "status": r.status,
                    "content_type": r.headers.get("Content-Type", "application/octet-stream"),
                    "body": _b64(bytes(body)),
                }
        except aiohttp.ClientConnectorError as exc:  # not sent: nothing applied
            log.warning("forward.replay_unreachable", error=repr(exc))
            return _error(503, f"cluster: instance {self._relay.holder} cannot reach its own API")
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("forward.replay_failed", error=repr(exc))
            why = f"instance {self._relay.holder} got no answer from its own API"
            return _error(504, f"cluster: {why}: the request may have been applied there")
