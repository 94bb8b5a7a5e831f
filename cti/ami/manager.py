"""panoramisk's ``Manager``, kept as the AMI connection layer, with its defects overridden.

``CtiManager`` IS a ``panoramisk.Manager``: each connection is opened by panoramisk's own
``connect()`` (``loop.create_connection(protocol_factory, host, port, ssl=...)`` in a task
whose done-callback is ``connection_made``), and actions go through ``send_action`` to the
current protocol. What is replaced, and why (tests/test_panoramisk_defects.py shows each
defect on the stock ``Manager`` and guarded here):

* ``protocol_factory``: our ``AmiProtocol`` (bytes parser ``cti.ami.wire``: ~3x panoramisk's
  throughput, keeps a UTF-8 character split across two reads, which panoramisk drops);
* ``dispatch``: hands each event to the sink (the client's queue) and runs no callback, so
  no user code runs inside ``data_received`` (in panoramisk an exception in a callback
  closes the connection and loses the rest of the read); ``register_event`` is refused;
* ``connection_made``: only records the protocol (no login sent from a done-callback, no
  timer-driven ping, no attributes poked into the protocol); the caller logs in (``login``);
* ``ping``: awaits the ``Pong`` within a timeout (``AmiTimeout``); ``watchdog`` pings every
  interval and drops a link that does not answer (panoramisk's ping never checks);
* ``send_awaiting_actions``: never re-sends anything; an action in flight at a drop fails
  with ``AmiConnectionLost`` (panoramisk re-sends it after the reconnect: a second call);
* ``connection_lost``: no fixed-delay reconnect scheduled forever; the owner
  (``AmiClient``) reconnects with capped exponential backoff and jitter;
* ``close``: closes our protocol (panoramisk's also cancels its pinger, which is never set).

Create it inside the running loop (it passes ``asyncio.get_running_loop()`` to panoramisk).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Any

import panoramisk
import structlog

from cti.ami.errors import AmiActionError, AmiAuthError, AmiNotConnected, AmiTimeout
from cti.ami.messages import AmiResponse
from cti.ami.protocol import AmiProtocol, EventSink, PendingAction
from cti.config import AmiConfig

log = structlog.get_logger(__name__)


class CtiManager(panoramisk.Manager):
    """One AMI link at a time, opened by panoramisk; reconnect policy belongs to the owner."""

    def __init__(
        self, config: AmiConfig, on_event: EventSink, skip_events: Collection[str] = ()
    ) -> None:
        self._sealed = False
        self._sink = on_event
        self._skip_events = skip_events
        self.ami = config
        super().__init__(
            loop=asyncio.get_running_loop(),
            host=config.host,
            port=config.port,
            ssl=False,
            events=config.events,
            protocol_factory=self._new_protocol,
            forgetable_actions=(),  # unused: nothing is ever queued to be re-sent
        )
        self.protocol: AmiProtocol | None = None
        self._sealed = True

    def _new_protocol(self) -> AmiProtocol:
        return AmiProtocol(
            self.dispatch, on_lost=self.connection_lost, skip_events=self._skip_events
        )

    # --- opening a link: panoramisk's connect(), our connection_made ---
    async def open(self) -> tuple[AmiProtocol, str]:
        """Open a new link with panoramisk's ``connect()`` and wait for the banner.

        Returns the protocol and the banner; the link is aborted if any step fails or
        ``connect_timeout_s`` passes (a peer that never sends the banner is not leaked).
        """
        timeout = self.ami.connect_timeout_s
        task = self.connect()  # panoramisk's: a Task of loop.create_connection(...)
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await task
        except BaseException:
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result()[1].abort("connect given up")  # connected just as time ran out
            raise
        assert isinstance(protocol, AmiProtocol)
        self.protocol = protocol  # connection_made (its done-callback) did so already
        try:
            async with asyncio.timeout(timeout):
                banner = await protocol.banner
        except BaseException:
            protocol.abort("no banner from Asterisk")
            raise
        return protocol, banner

    def connection_made(self, f: asyncio.Future[tuple[Any, Any]]) -> None:
        """The done-callback of ``connect()``: keep the protocol, nothing else.

        A failed or cancelled connect is left to whoever awaits ``connect()`` (panoramisk
        would log and schedule another connect after ``reconnect_timeout``, forever).
        """
        if f.cancelled() or f.exception() is not None:
            return
        _, protocol = f.result()
        old, self.protocol = self.protocol, protocol
        if old is not None and old is not protocol and old.is_open:
            old.abort("replaced by a new connection")
        self._connected = True
        self.authenticated = False

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by the protocol when its link ends: state only, no reconnect scheduled."""
        self._connected = False
        self.authenticated = False

    @property
    def connected(self) -> bool:
        return self.protocol is not None and self.protocol.is_open

    # --- events: to the sink, never to callbacks inside data_received ---
    def dispatch(self, event: dict[str, str]) -> None:
        """The protocol's event sink (runs inside data_received): hand over, run nothing."""
        self._sink(event)

    def register_event(self, pattern: str, callback: Callable[..., Any] | None = None) -> Any:
        if self._sealed:
            raise TypeError(
                "CtiManager runs no callbacks inside data_received: "
                "read events from AmiClient.events()"
            )
        return super().register_event(pattern, callback)  # panoramisk's own __init__ only

    # --- actions ---
    def send_action(
        self,
        action: Mapping[str, str],
        as_list: bool | None = None,
        *,
        follow_event: str | None = None,
    ) -> PendingAction:
        """Write an action on the current link (``AmiNotConnected`` when there is none)."""
        protocol = self.protocol
        if protocol is None or not protocol.is_open:
            name = action.get("Action", "?")
            raise AmiNotConnected(f"{name}: not connected to Asterisk AMI")
        return protocol.send(action, as_list=bool(as_list), follow_event=follow_event)

    async def call(
        self,
        fields: Mapping[str, str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per action, the API's contract
    ) -> AmiResponse:
        """Send an action and wait for its answer: ``AmiTimeout`` after ``timeout`` (default
        ``action_timeout_s``), ``AmiActionError`` on ``Response: Error``."""
        name = fields.get("Action", "?")
        limit = self.ami.action_timeout_s if timeout is None else timeout
        pending = self.send_action(fields)
        link = self.protocol
        try:
            async with asyncio.timeout(limit):
                response = await asyncio.shield(pending.future)
        except TimeoutError:
            if link is not None:
                link.forget(pending.action_id)
            message = f"{name}: no answer from Asterisk within {limit}s"
            raise AmiTimeout(message, action=name) from None
        if not response.success:
            raise AmiActionError(name, response.message or response.response, response.fields)
        return response

    async def send_awaiting_actions(self, *_: object) -> None:
        """panoramisk re-sends actions pending at a drop; here nothing is ever re-sent."""
        queued: deque[Any] = self.awaiting_actions  # always empty: our protocol queues nothing
        if queued:
            log.warning("ami.awaiting_actions_dropped", count=len(queued))
            queued.clear()

    async def login(self, *_: object) -> None:
        """Log in (plain, or MD5 challenge) with ``Events: <config.events>``.

        Raises ``AmiAuthError`` when Asterisk refuses the credentials.
        """
        cfg = self.ami
        fields = {"Action": "Login", "Username": cfg.username}
        if cfg.auth == "md5":
            challenge = await self.call({"Action": "Challenge", "AuthType": "MD5"})
            key = hashlib.md5((challenge.get("Challenge") + cfg.secret).encode()).hexdigest()
            fields.update(AuthType="MD5", Key=key)
        else:
            fields["Secret"] = cfg.secret
        fields["Events"] = cfg.events
        try:
            # Asterisk answers a failed login after 1 s: leave it that time to say so.
            await self.call(fields, timeout=cfg.action_timeout_s + 1.0)
        except AmiActionError as exc:
            raise AmiAuthError(
                f"Asterisk AMI at {cfg.host}:{cfg.port} refused user {cfg.username!r}: "
                f"{exc.message} (check [ami] username/secret and manager.conf)"
            ) from exc
        self.authenticated = True

    # --- keepalive: a Ping whose answer is checked ---
    async def ping(self, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """Round trip of a Ping in seconds; ``AmiTimeout`` if unanswered in ``timeout``."""
        start = time.perf_counter()
        await self.call({"Action": "Ping"}, timeout=timeout)
        return time.perf_counter() - start

    async def watchdog(self) -> None:
        """Ping the current link every ``ping_interval_s``; abort it when a Ping is not
        answered within ``ping_timeout_s`` (a dead link); return when the link ends."""
        cfg = self.ami
        protocol = self.protocol
        while protocol is not None and protocol.is_open:
            await asyncio.sleep(cfg.ping_interval_s)
            if protocol is not self.protocol:
                return
            try:
                await self.ping(cfg.ping_timeout_s)
            except AmiTimeout:
                log.warning("ami.ping_timeout", timeout_s=cfg.ping_timeout_s)
                protocol.abort(f"no answer to Ping within {cfg.ping_timeout_s}s: dead link")
                return
            except AmiNotConnected:
                return

    def close(self, reason: str = "closed") -> None:
        if self.protocol is not None:
            self.protocol.close(reason)
