"""AMI actions for a PBX another instance ingests, sent through that instance.

Only the ingester of a PBX is logged in to its AMI; a desktop's request may reach any
instance behind the load balancer. The instance that received the request reads who holds
the PBX's lease (``holder token``) and publishes the action on that instance's own channel
``{prefix}:actions:{holder}``; the ingester checks it still ingests the PBX, sends the
action on its link and pushes the outcome on the reply list named in the request, which the
sender waits for (``timeout_s``). Pub/sub, not a stream: an action nobody takes now must not
be sent later by whoever ingests next (PUBLISH says at once that nobody listens).

Outcomes: sent (None), Asterisk refused or failed it (``AmiError`` with its message: 502),
nobody ingests the PBX or the instance no longer does (``PbxRefused`` 503 naming the PBX).
No answer within ``timeout_s``: ``AmiError`` (the action may have been sent; not retried).
Only the actions of ``METHODS`` are carried, with JSON arguments.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog

from cti.ami.errors import AmiError
from cti.pbx_actions import ActionLink, PbxRefused

log = structlog.get_logger(__name__)

METHODS = frozenset(
    {
        "setvar",
        "redirect",
        "blind_transfer",
        "originate",
        "queue_add",
        "queue_remove",
        "queue_pause",
        "send_action",
    }
)


class RelayRedis(Protocol):
    def publish(self, channel: str, message: str) -> Awaitable[int]: ...

    def blpop(self, keys: list[str], timeout: float) -> Awaitable[Any]: ...

    def rpush(self, name: str, *values: str) -> Awaitable[Any]: ...

    def expire(self, name: str, seconds: int) -> Awaitable[Any]: ...

    def get(self, name: str) -> Awaitable[Any]: ...

    def pubsub(self) -> Any: ...


class ActionRelay:
    """This instance's end of the relay: it sends to other ingesters and serves its own PBXs."""

    def __init__(
        self, redis: RelayRedis, prefix: str, holder: str, *, timeout_s: float = 10.0
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.holder = holder
        self.timeout_s = timeout_s
        self._links: Mapping[str, ActionLink] = {}
        self._ingesting: Callable[[str], bool] = lambda _pbx: False
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self.served = 0  # actions this instance sent for another one

    def _channel(self, holder: str) -> str:
        return f"{self._prefix}:actions:{holder}"

    def serve(self, links: Mapping[str, ActionLink], ingesting: Callable[[str], bool]) -> None:
        """What this instance sends for the others: its links, while it ingests their PBX."""
        self._links, self._ingesting = links, ingesting

    # ---- sending ---------------------------------------------------------------------------

    def remote(self, pbx: str) -> ActionLink:
        return _RemoteLink(self, pbx)  # type: ignore[return-value]  # __getattr__ serves all

    async def call(self, pbx: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        if method not in METHODS:
            raise AttributeError(method)
        lease = await self._redis.get(f"{self._prefix}:lease:{pbx}")
        if lease is None:
            raise PbxRefused(
                503, f"pbx: no instance ingests PBX {pbx} now (a takeover is under way)"
            )
        text = lease.decode() if isinstance(lease, bytes) else str(lease)
        holder = text.rsplit(" ", 1)[0]
        if holder == self.holder and self._ingesting(pbx) and pbx in self._links:
            await getattr(self._links[pbx], method)(*args, **kwargs)  # we just took it over
            return
        reply = f"{self._prefix}:action-reply:{uuid.uuid4().hex}"
        request = {"pbx": pbx, "method": method, "args": args, "kwargs": kwargs, "reply": reply}
        if not await self._redis.publish(self._channel(holder), json.dumps(request)):
            raise PbxRefused(503, f"pbx: instance {holder} ingesting PBX {pbx} is not reachable")
        got = await self._redis.blpop([reply], timeout=self.timeout_s)
        if got is None:
            raise AmiError(
                f"no answer from instance {holder} ingesting PBX {pbx} within "
                f"{self.timeout_s:g} s (the action may have been sent)"
            )
        outcome = json.loads(got[1])
        if "refused" in outcome:
            raise PbxRefused(503, outcome["refused"])
        if "error" in outcome:
            raise AmiError(outcome["error"])
        log.info("relay.sent", pbx=pbx, action=method, via=holder)

    # ---- serving ---------------------------------------------------------------------------

    async def start(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._channel(self.holder))
        self._task = asyncio.create_task(self._listen(pubsub), name="action-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)

    async def _listen(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                job = asyncio.create_task(self._serve_one(message["data"]), name="relay-action")
                self._jobs.add(job)
                job.add_done_callback(self._jobs.discard)
        finally:
            await pubsub.aclose()

    async def _serve_one(self, data: bytes | str) -> None:
        try:
            request = json.loads(data)
            pbx, method, reply = str(request["pbx"]), str(request["method"]), str(request["reply"])
            args, kwargs = list(request["args"]), dict(request["kwargs"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("relay.bad_request", error=repr(exc))
            return
        outcome: dict[str, str] = {}
        link = self._links.get(pbx)
        if method not in METHODS:
            outcome["error"] = f"{method} is not an action the relay carries"
        elif link is None or not self._ingesting(pbx):
            outcome["refused"] = f"pbx: instance {self.holder} no longer ingests PBX {pbx}"
        else:
            try:
                await getattr(link, method)(*args, **kwargs)
                self.served += 1
            except AmiError as exc:
                outcome["error"] = str(exc)
            except (ConnectionError, TimeoutError) as exc:
                outcome["error"] = repr(exc)
        await self._redis.rpush(reply, json.dumps(outcome | {"ok": not outcome}))
        await self._redis.expire(reply, max(1, int(self.timeout_s * 2)))


class _RemoteLink:
    """A PBX's actions as sent through its ingester (the methods of ``ActionLink``)."""

    def __init__(self, relay: ActionRelay, pbx: str) -> None:
        self._relay = relay
        self._pbx = pbx

    def __getattr__(self, method: str) -> Callable[..., Awaitable[None]]:
        if method not in METHODS:
            raise AttributeError(method)

        async def send(*args: Any, **kwargs: Any) -> None:
            await self._relay.call(self._pbx, method, list(args), dict(kwargs))

        return send
