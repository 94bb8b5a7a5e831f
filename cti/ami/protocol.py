"""One AMI TCP connection: bytes in, messages routed to waiting actions or to an event sink.

Replaces panoramisk's ``AMIProtocol`` (it is ``CtiManager``'s ``protocol_factory``) and
guards against its defects:

* bytes go through ``cti.ami.wire.AmiParser`` (incremental, whole lines only), so a UTF-8
  character split across two reads is kept (panoramisk decodes each read with
  ``errors='ignore'`` and drops it);
* ``data_received`` runs no user code: events go to ``on_event``, which the client makes a
  queue ``put_nowait``; each message is routed inside its own ``try``, so neither a bad frame
  nor a failing sink closes the connection or loses the rest of the read;
* on connection loss every action in flight fails with ``AmiConnectionLost``: nothing is
  kept to be re-sent on the next connection (panoramisk re-sends pending actions after a
  reconnect, so an Originate can place a call twice).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable, Collection, Mapping
from typing import cast

import structlog

from cti.ami.errors import AmiConnectionLost, AmiNotConnected
from cti.ami.messages import AmiResponse
from cti.ami.wire import AmiParser, WireStats, serialise_action

log = structlog.get_logger(__name__)

EventSink = Callable[[dict[str, str]], None]


class PendingAction:
    """An action written to the socket, waiting for its ``Response`` (and list items)."""

    __slots__ = (
        "_items",
        "_response",
        "action",
        "action_id",
        "as_list",
        "follow_event",
        "followup",
        "future",
    )

    def __init__(
        self,
        action: str,
        action_id: str,
        as_list: bool,
        follow_event: str | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.action = action
        self.action_id = action_id
        self.as_list = as_list
        self.future: asyncio.Future[AmiResponse] = loop.create_future()
        # An event answering the action later, by ActionID (OriginateResponse).
        self.follow_event = follow_event
        self.followup: asyncio.Future[dict[str, str]] | None = (
            loop.create_future() if follow_event else None
        )
        self._response: dict[str, str] | None = None
        self._items: list[dict[str, str]] = []

    def take(self, msg: dict[str, str]) -> bool:
        """Consume ``msg`` if it belongs to this action's answer; True when consumed."""
        if self.future.done():
            return False
        if self._response is None:
            if "Response" not in msg:
                return False
            self._response = msg
            if msg.get("EventList", "").lower() != "start":  # not a list, or an error
                self.future.set_result(AmiResponse(msg))
            return True
        if "Event" not in msg:
            return False
        if msg.get("EventList", "").lower() == "complete":
            self.future.set_result(AmiResponse(self._response, self._items, msg))
        else:
            self._items.append(msg)
        return True

    @property
    def open(self) -> bool:
        return not self.future.done() or (self.followup is not None and not self.followup.done())

    def fail(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
        elif self.followup is not None and not self.followup.done():
            self.followup.set_exception(exc)
        for fut in (self.future, self.followup):
            if fut is not None and fut.done() and not fut.cancelled():
                fut.exception()  # mark retrieved: nobody may be awaiting any more


class AmiProtocol(asyncio.Protocol):
    """Create inside the running loop; ``CtiManager`` (panoramisk's ``Manager``) uses it as
    its ``protocol_factory``, with ``on_event`` its ``dispatch`` and ``on_lost`` its
    ``connection_lost``; ``loop.create_connection(lambda: AmiProtocol(sink), ...)`` works too.

    ``banner`` resolves with the banner line; ``closed`` resolves with the reason the
    connection ended. ``send(fields)`` writes an action and returns its ``PendingAction``.
    """

    def __init__(
        self,
        on_event: EventSink,
        *,
        on_lost: Callable[[Exception | None], None] | None = None,
        id_prefix: str | None = None,
        skip_events: Collection[str] = (),
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._on_event = on_event
        self._on_lost = on_lost
        self._parser = AmiParser(skip_events=skip_events)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[str, PendingAction] = {}
        self._ids = itertools.count(1)
        self._prefix = id_prefix or f"cti-{secrets.token_hex(4)}"
        self.banner: asyncio.Future[str] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.close_reason: str | None = None
        self.last_received = loop.time()
        self.unroutable = 0  # messages neither an event nor an awaited answer

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not isinstance-checked: uvloop's are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_received = self._loop.time()
        try:
            messages = self._parser.feed(data)
        except Exception:  # the parser never raises by contract; keep the link if it does
            log.exception("ami.parse_failed", size=len(data))
            return
        if not self.banner.done() and self._parser.banner is not None:
            self.banner.set_result(self._parser.banner)
        for msg in messages:
            try:
                self._route(msg)
            except Exception:
                log.exception(
                    "ami.message_failed", ami_event=msg.get("Event"), response=msg.get("Response")
                )

    def eof_received(self) -> bool | None:
        self.close_reason = self.close_reason or "Asterisk closed the connection (EOF)"
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.close_reason or (f"connection lost: {exc}" if exc else "connection closed")
        self.close_reason = reason
        self._transport = None
        pending, self._pending = self._pending, {}
        for action in pending.values():
            action.fail(
                AmiConnectionLost(
                    f"{action.action}: AMI connection lost before the answer ({reason}); "
                    "it was not re-sent and may or may not have been executed",
                    action=action.action,
                )
            )
        if not self.banner.done():
            self.banner.set_exception(AmiNotConnected(reason))
            self.banner.exception()
        if not self.closed.done():
            self.closed.set_result(reason)
        if self._on_lost is not None:
            self._on_lost(exc)

    # --- routing ---
    def _route(self, msg: dict[str, str]) -> None:
        action_id = msg.get("ActionID")
        if action_id is not None:
            pending = self._pending.get(action_id)
            if pending is not None:
                if pending.take(msg):
                    if not pending.open:
                        del self._pending[action_id]
                    return
                if (
                    pending.followup is not None
                    and msg.get("Event") == pending.follow_event
                    and not pending.followup.done()
                ):
                    pending.followup.set_result(msg)
                    if not pending.open:
                        del self._pending[action_id]
                    # an OriginateResponse is also a call event: fall through to the sink
        if "Event" in msg:
            if msg["Event"] == "Shutdown":
                restart = msg.get("Restart", "")
                self.close_reason = (
                    f"Asterisk shut down ({msg.get('Shutdown', '')}, restart: {restart})"
                )
            self._on_event(msg)
        else:
            self.unroutable += 1
            log.debug("ami.unmatched_message", message=msg)

    def wire_stats(self) -> WireStats:
        """What this connection's input had that was refused or repaired."""
        stats = self._parser.stats()
        stats.unroutable = self.unroutable
        return stats

    # --- sending ---
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(
        self,
        fields: Mapping[str, str],
        *,
        as_list: bool = False,
        follow_event: str | None = None,
    ) -> PendingAction:
        if not self.is_open or self._transport is None:
            raise AmiNotConnected(f"{fields.get('Action', '?')}: not connected to Asterisk AMI")
        action_id = fields.get("ActionID") or f"{self._prefix}-{next(self._ids)}"
        data = serialise_action({**fields, "ActionID": action_id})
        pending = PendingAction(
            fields.get("Action", ""), action_id, as_list, follow_event, self._loop
        )
        self._pending[action_id] = pending
        self._transport.write(data)
        return pending

    def forget(self, action_id: str) -> None:
        """Stop waiting for an action (timed out); a late answer is then dropped."""
        self._pending.pop(action_id, None)

    def close(self, reason: str) -> None:
        """Close gracefully (flushes what was written)."""
        self.close_reason = self.close_reason or reason
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str) -> None:
        """Drop the link now, without waiting for a peer that may be gone."""
        self.close_reason = reason
        if self._transport is not None:
            self._transport.abort()
