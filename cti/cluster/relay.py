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

The same way an instance asks another a question it answers from its memory (``ask``, e.g.
``live_stats``: today's figures of the PBXs it ingests; ``answer`` registers them), or hands
it a job it does and answers (``job``, e.g. ``http``: an API request replayed on the
ingester's own HTTP server, ``cti.cluster.forward``; ``handle`` registers them).
"""

from __future__ import annotations

import asyncio
import contextlib
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


WAIT_SLICE_S = 0.25


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
        self._queries: dict[str, Callable[[], Any]] = {}
        self._handlers: dict[str, Callable[[Any], Awaitable[Any]]] = {}
        self.served = 0  # actions this instance sent for another one

    def _channel(self, holder: str) -> str:
        return f"{self._prefix}:actions:{holder}"

    def serve(self, links: Mapping[str, ActionLink], ingesting: Callable[[str], bool]) -> None:
        """What this instance sends for the others: its links, while it ingests their PBX."""
        self._links, self._ingesting = links, ingesting

    def answer(self, name: str, value: Callable[[], Any]) -> None:
        """What this instance answers to ``ask(…, name)`` (a JSON value)."""
        self._queries[name] = value

    def handle(self, name: str, job: Callable[[Any], Awaitable[Any]]) -> None:
        """What this instance does for ``job(…, name, payload)`` (JSON in, JSON out)."""
        self._handlers[name] = job

    # ---- sending ---------------------------------------------------------------------------

    async def holders(self, pbx_ids: list[str]) -> dict[str, str | None]:
        """The instance holding each PBX's lease now (None: nobody)."""
        out: dict[str, str | None] = {}
        for pbx in pbx_ids:
            lease = await self._redis.get(f"{self._prefix}:lease:{pbx}")
            text = lease.decode() if isinstance(lease, bytes) else lease
            out[pbx] = None if text is None else str(text).rsplit(" ", 1)[0]
        return out

    async def ask(self, holder: str, name: str) -> Any:
        """``name``'s value on instance ``holder`` (this one: at once)."""
        if holder == self.holder:
            return self._queries[name]()
        outcome = await self._request(holder, {"query": name}, f"asking {name}")
        if "value" not in outcome:
            raise AmiError(outcome.get("error") or f"instance {holder} cannot answer {name}")
        return outcome["value"]

    async def job(self, holder: str, name: str, payload: Any, what: str) -> Any:
        """``name`` done by instance ``holder`` on ``payload``: its JSON answer. ``PbxRefused``
        503: nobody listens there; ``AmiError``: no answer in time (it may have been done)."""
        outcome = await self._request(holder, {"job": name, "payload": payload}, what)
        if "value" not in outcome:
            raise PbxRefused(503, outcome.get("error") or f"instance {holder} cannot do {name}")
        return outcome["value"]

    async def _request(self, holder: str, request: dict[str, Any], what: str) -> dict[str, Any]:
        """Publish to ``holder`` and wait for its outcome (``PbxRefused`` 503: unreachable)."""
        reply = f"{self._prefix}:action-reply:{uuid.uuid4().hex}"
        if not await self._redis.publish(
            self._channel(holder), json.dumps(request | {"reply": reply})
        ):
            raise PbxRefused(503, f"pbx: instance {holder} is not reachable ({what})")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        got = None
        while got is None and (left := deadline - loop.time()) > 0:
            # Short waits: redis-py cuts a read at its socket timeout (5 s by default), and a
            # wait longer than that would fail as a Redis error instead of "no answer".
            got = await self._redis.blpop([reply], timeout=max(0.01, min(left, WAIT_SLICE_S)))
        if got is None:
            raise AmiError(f"no answer from instance {holder} within {self.timeout_s:g} s ({what})")
        outcome: dict[str, Any] = json.loads(got[1])
        return outcome

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
        request = {"pbx": pbx, "method": method, "args": args, "kwargs": kwargs}
        what = f"{method} for PBX {pbx}, which it ingests; the action may have been sent"
        outcome = await self._request(holder, request, what)
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
        """Serve requests as they come; Redis lost: subscribe again once it is back."""
        while True:
            try:
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    job = asyncio.create_task(self._serve_one(message["data"]), name="relay-job")
                    self._jobs.add(job)
                    job.add_done_callback(self._jobs.discard)
            except Exception as exc:
                log.warning("relay.listen_failed", error=repr(exc))
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            pubsub = self._redis.pubsub()
            with contextlib.suppress(Exception):
                await pubsub.subscribe(self._channel(self.holder))

    async def _serve_one(self, data: bytes | str) -> None:
        try:
            request = json.loads(data)
            reply = str(request["reply"])
            if "query" in request:
                await self._answer(str(request["query"]), reply)
                return
            if "job" in request:
                await self._do(str(request["job"]), request.get("payload"), reply)
                return
            pbx, method = str(request["pbx"]), str(request["method"])
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
            except Exception as exc:  # the sender must hear back whatever happened
                outcome["error"] = repr(exc)
        await self._reply(reply, outcome | {"ok": not outcome})

    async def _answer(self, name: str, reply: str) -> None:
        query = self._queries.get(name)
        outcome: dict[str, Any] = {}
        if query is None:
            outcome["error"] = f"instance {self.holder} does not answer {name}"
        else:
            outcome["value"] = query()
        await self._reply(reply, outcome)

    async def _do(self, name: str, payload: Any, reply: str) -> None:
        job = self._handlers.get(name)
        outcome: dict[str, Any] = {}
        if job is None:
            outcome["error"] = f"instance {self.holder} does not do {name}"
        else:
            try:
                outcome["value"] = await job(payload)
            except Exception as exc:  # the sender must hear back whatever happened
                log.warning("relay.job_failed", job=name, error=repr(exc))
                outcome["error"] = f"instance {self.holder} failed {name}: {exc!r}"
        await self._reply(reply, outcome)

    async def _reply(self, reply: str, outcome: Mapping[str, Any]) -> None:
        try:
            await self._redis.rpush(reply, json.dumps(outcome))
            await self._redis.expire(reply, max(1, int(self.timeout_s * 2)))
        except Exception as exc:  # Redis away: the sender times out and says so
            log.warning("relay.reply_failed", error=repr(exc))


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
