"""The AMI connection: login, events, resync, reconnect, keepalive, actions.

Usage::

    client = AmiClient(config.ami)
    await client.start()               # AmiAuthError at once on wrong credentials
    async for item in client.events():  # dict events and Connected/Disconnected/Resynced
        ...
    await client.redirect(channel, context="transfer", exten="8002")
    result = await client.originate("PJSIP/alice", context="agents", exten="1002")
    await client.stop()

Behaviour:

* Login (plain, or MD5 challenge with ``auth = "md5"``) with ``Events: <config.events>``,
  then ``Filter`` actions dropping VarSet/Newexten at the source (a user without the right
  to filter gets a warning, not a failure).
* After every (re)connect: a Ping (Asterisk's clock), CoreShowChannels, QueueStatus,
  BridgeList, BridgeInfo per bridge and Status with the CTI_* routing variables of each
  channel in a queue, emitted as one ``Resynced(items, refused, pbx_time)``; events arriving
  meanwhile are held and emitted after it, in order (see ``cti.ami.stream``). A list refused
  (``Permission denied``) is logged as an error naming the write class the user lacks and
  reported in ``refused``. Asterisk still starting: with ``system`` in ``[ami] events`` the
  client waits for ``FullyBooted`` (up to ``boot_timeout_s``); a list answered
  ``Invalid/unknown command`` (its module not loaded yet) is asked again with backoff, up
  to ``resync_attempts`` times, each retry logged.
* Reconnect on EOF, refused connections, a ``Shutdown`` event, or a dead link (a Ping not
  answered within ``ping_timeout_s``, sent every ``ping_interval_s``), with capped
  exponential backoff and jitter (``reconnect_initial_s`` doubling up to
  ``reconnect_max_s``, times a random factor in [0.5, 1]). Wrong credentials fail
  ``start()``; if they go wrong later (secret changed on the PBX), the client logs an error
  and retries only every ``reconnect_max_s``.
* Actions: ``send_action`` / ``send_list_action`` correlate by ActionID, time out with
  ``AmiTimeout``, turn ``Response: Error`` into ``AmiActionError`` (Asterisk's message
  verbatim), raise ``AmiNotConnected`` while there is no link. An action in flight when
  the link drops fails with ``AmiConnectionLost`` and is never re-sent (no call placed twice).

The connection layer is panoramisk's ``Manager`` (``cti.ami.manager.CtiManager``, a
subclass, at ``AmiClient.manager``). Kept from panoramisk: the ``Manager`` object and its
configuration, its ``connect()`` (one ``loop.create_connection(protocol_factory, host, port,
ssl=...)`` task per link, done-callback ``connection_made``; it works on Python 3.11 given the
running loop, so it is not overridden) and the ``send_action`` → ``protocol.send`` path.
Replaced, because panoramisk 1.4 has measured defects there (tests/test_panoramisk_defects.py
shows each on the stock ``Manager`` and guarded here):

* its protocol, by ``cti.ami.protocol.AmiProtocol`` on our bytes parser (``cti.ami.wire``):
  parsing was the bottleneck (the issue's figures: ~37,000 events/s against ~130,000), and
  panoramisk's drops a UTF-8 character split across two reads;
* ``dispatch``: events go to this client's queue, no user callback runs inside
  ``data_received`` (in panoramisk an exception in one closes the link and loses the rest
  of the read);
* ``connection_made``: keeps the protocol only; this client logs in (``CtiManager.login``);
* ``ping``: the answer is awaited within ``ping_timeout_s`` (``CtiManager.watchdog``);
* ``send_awaiting_actions``: nothing is re-sent after a reconnect (no call placed twice);
* ``connection_lost``: no fixed-delay reconnect forever, also on a wrong secret: this
  client's supervisor reconnects as described above.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence

import structlog

from cti.ami.errors import (
    AmiActionError,
    AmiAuthError,
    AmiConnectionLost,
    AmiError,
    AmiNotConnected,
    AmiOriginateFailed,
    AmiTimeout,
)
from cti.ami.manager import CtiManager
from cti.ami.messages import AmiResponse, OriginateResult
from cti.ami.protocol import AmiProtocol
from cti.ami.stream import Connected, Disconnected, Resynced, StreamItem
from cti.ami.wire import WireStats
from cti.config import AmiConfig

log = structlog.get_logger(__name__)

# Legacy regex event filters: a leading "!" excludes matching events.
DEFAULT_FILTERS = ("!Event: VarSet", "!Event: Newexten")
# Events nothing here reads (not the tracker, nor a resync or an action waiting for its
# answer), dropped unparsed as they arrive: nearly half of a queue call's events once the
# filters are in, and all of VarSet and Newexten when Asterisk refuses the filters.
UNREAD_EVENTS = frozenset(
    {
        "VarSet",
        "Newexten",
        "DeviceStateChange",
        "Newstate",
        "NewConnectedLine",
        "LocalBridge",
        "LocalOptimizationBegin",
        "LocalOptimizationEnd",
        "MusicOnHoldStart",
        "MusicOnHoldStop",
        "DialState",
        "BridgeCreate",
        "RTCPSent",
        "RTCPReceived",
        "ChannelTalkingStart",
        "ChannelTalkingStop",
        "DTMFBegin",
        "DTMFEnd",
    }
)
RESYNC_LISTS = ("CoreShowChannels", "QueueStatus", "BridgeList")
# The write class(es) Asterisk 22 requires of the AMI user for each resync action, any one of
# them (manager.c, app_queue.c, manager_bridges.c; "none": every logged-in user may).
RESYNC_NEEDS = {
    "CoreShowChannels": "system or reporting",
    "Status": "system, call or reporting",
    "QueueStatus": "none",
    "BridgeList": "none",
    "BridgeInfo": "none",
}
ROUTING_VARIABLES = "CTI_QUEUE,CTI_PRIORITY,CTI_TIER,CTI_REASON,CTI_CUSTOMER_ID,CTI_RULE"


class _Stop:
    """Marks the end of the event stream."""


_STOP = _Stop()


class _Stream:
    """An unbounded FIFO for one consumer: a deque and a wake-up flag (cheaper per event
    than ``asyncio.Queue``, which the hot path of every AMI event goes through)."""

    def __init__(self) -> None:
        self._items: deque[StreamItem | _Stop] = deque()
        self._ready = asyncio.Event()

    def put(self, item: StreamItem | _Stop) -> None:
        self._items.append(item)
        self._ready.set()

    async def get(self) -> StreamItem | _Stop:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if isinstance(item, _Stop):
            self._items.appendleft(item)  # the end stays the end for every later reader
        return item

    async def get_batch(self, limit: int) -> list[StreamItem]:
        """Up to ``limit`` items, at least one, in order; empty once the stream has ended."""
        items = self._items
        while not items:
            self._ready.clear()
            await self._ready.wait()
        if len(items) <= limit and not isinstance(items[-1], _Stop):
            batch: list[StreamItem] = list(items)  # type: ignore[arg-type]
            items.clear()
            return batch
        batch = []
        while items and len(batch) < limit:
            item = items.popleft()
            if isinstance(item, _Stop):
                items.appendleft(item)  # the end stays the end for every later reader
                break
            batch.append(item)
        return batch

    def __len__(self) -> int:
        return len(self._items)


class AmiClient:
    """One supervised AMI connection; see the module docstring."""

    def __init__(
        self,
        config: AmiConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        filters: Sequence[str] = DEFAULT_FILTERS,
        skip_events: Collection[str] = UNREAD_EVENTS,
    ) -> None:
        self.config = config
        self._clock = clock
        self._rng = rng
        self._filters = tuple(filters)
        self._skip_events = frozenset(skip_events)
        self._manager: CtiManager | None = None
        self._protocol: AmiProtocol | None = None  # the current link, once logged in
        self._queue: _Stream | None = None
        self._held: list[dict[str, str]] | None = None  # events held during a resync
        self._task: asyncio.Task[None] | None = None
        self._connected: asyncio.Event | None = None
        self.connects = 0  # successful logins so far
        self._wire_past = WireStats()  # of the links that ended
        self.resync_retries = 0  # resyncs asked again because Asterisk was still starting

    # --- lifetime ---
    async def start(self) -> None:
        """Connect and log in once; keep (re)connecting in the background afterwards.

        Raises ``AmiAuthError`` when Asterisk refuses the credentials. Any other failure
        (Asterisk down) is logged and retried in the background.
        """
        if self._task is not None:
            raise RuntimeError("AmiClient already started")
        self._queue = _Stream()
        self._connected = asyncio.Event()
        self._manager = CtiManager(self.config, self._on_event, self._skip_events)
        first: AmiProtocol | None = None
        try:
            first = await self._open()
        except AmiAuthError:
            raise
        except (OSError, TimeoutError, AmiError) as exc:
            log.warning(
                "ami.connect_failed", host=self.config.host, port=self.config.port, error=str(exc)
            )
        self._task = asyncio.create_task(self._run(first), name="ami-connection")

    async def stop(self) -> None:
        """Log off, close the link, end ``events()``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        protocol, self._protocol = self._protocol, None
        manager = self._manager
        if manager is not None and protocol is not None and protocol.is_open:
            with contextlib.suppress(AmiError):
                await manager.call({"Action": "Logoff"}, timeout=0.5)
        if manager is not None:
            manager.close("client stopped")
        if self._queue is not None:
            self._queue.put(_STOP)

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.is_open

    def wire_stats(self) -> WireStats:
        """Malformed, cut and unroutable AMI input since start (for ``/metrics``)."""
        current = self._protocol
        return self._wire_past + current.wire_stats() if current is not None else self._wire_past

    @property
    def manager(self) -> CtiManager:
        """The panoramisk ``Manager`` (``CtiManager``) that opens this client's links."""
        if self._manager is None:
            raise AmiNotConnected("AmiClient not started")
        return self._manager

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until logged in (raises ``TimeoutError``)."""
        if self._connected is None:
            raise AmiNotConnected("AmiClient not started")
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    # --- events ---
    async def events(self) -> AsyncIterator[StreamItem]:
        """Events and stream markers, in order, until ``stop()``."""
        while (item := await self.get_event()) is not None:
            yield item

    async def event_batches(self, limit: int = 512) -> AsyncIterator[list[StreamItem]]:
        """The same items as ``events()``, in order, as lists of what has arrived (at most
        ``limit`` each): one wake-up per read from Asterisk rather than one per event."""
        if self._queue is None:
            raise AmiNotConnected("AmiClient not started")
        queue = self._queue
        while batch := await queue.get_batch(limit):
            yield batch

    async def get_event(self) -> StreamItem | None:
        """The next event or marker; ``None`` once the client is stopped."""
        if self._queue is None:
            raise AmiNotConnected("AmiClient not started")
        item = await self._queue.get()
        return None if isinstance(item, _Stop) else item

    @property
    def backlog(self) -> int:
        """Items waiting for the consumer (a growing backlog means the consumer is too slow)."""
        return len(self._queue) if self._queue is not None else 0

    def _emit(self, item: StreamItem) -> None:
        assert self._queue is not None
        self._queue.put(item)

    def _on_event(self, event: dict[str, str]) -> None:
        """The protocol's event sink: runs inside data_received, so it only enqueues."""
        if self._held is not None:
            self._held.append(event)
        elif self._queue is not None:
            self._queue.put(event)

    # --- connection ---
    def _backoff(self, attempt: int) -> float:
        cfg = self.config
        delay: float = min(cfg.reconnect_max_s, cfg.reconnect_initial_s * 2**attempt)
        return delay * (0.5 + 0.5 * self._rng())

    async def _open(self) -> AmiProtocol:
        """Connect, read the banner, log in, set filters. Events are held from here on."""
        cfg = self.config
        manager = self.manager
        self._held = []
        protocol, banner = await manager.open()
        try:
            await manager.login()
            for text in self._filters:
                try:
                    await manager.call({"Action": "Filter", "Operation": "Add", "Filter": text})
                except AmiActionError as exc:
                    log.warning("ami.filter_refused", filter=text, message=exc.message)
        except BaseException:
            protocol.abort("login failed")
            raise
        self._protocol = protocol
        self.connects += 1
        assert self._connected is not None
        self._connected.set()
        log.info("ami.connected", host=cfg.host, port=cfg.port, banner=banner, events=cfg.events)
        self._emit(Connected(cfg.host, cfg.port, banner))
        return protocol

    async def _run(self, protocol: AmiProtocol | None) -> None:
        cfg = self.config
        attempt = 0
        while True:
            if protocol is None:
                try:
                    protocol = await self._open()
                except AmiAuthError as exc:
                    self._held = None
                    log.error("ami.auth_failed", error=str(exc), retry_in_s=cfg.reconnect_max_s)
                    await asyncio.sleep(cfg.reconnect_max_s)
                    continue
                except (OSError, TimeoutError, AmiError) as exc:
                    self._held = None
                    delay = self._backoff(attempt)
                    attempt += 1
                    log.warning(
                        "ami.reconnect_failed",
                        error=str(exc) or type(exc).__name__,
                        retry_in_s=round(delay, 3),
                    )
                    await asyncio.sleep(delay)
                    continue
            started = self._clock()
            reason = await self._serve(protocol)
            self._wire_past += protocol.wire_stats()
            lost_at = time.monotonic()
            protocol = None
            self._protocol = None
            assert self._connected is not None
            self._connected.clear()
            if self._clock() - started >= cfg.reconnect_max_s:
                attempt = 0  # it was a good connection: start the backoff over
            delay = self._backoff(attempt)
            attempt += 1
            log.warning("ami.disconnected", reason=reason, retry_in_s=round(delay, 3))
            self._emit(Disconnected(reason, lost_at))
            await asyncio.sleep(delay)

    async def _serve(self, protocol: AmiProtocol) -> str:
        """Resync, then watch the link until it ends; returns why it ended."""
        watchdog = asyncio.create_task(self.manager.watchdog(), name="ami-ping-watchdog")
        try:
            try:
                resynced = await self._resync_when_ready()
            except AmiTimeout as exc:
                protocol.abort(f"resync timed out: {exc}")
            except AmiNotConnected:
                pass
            else:
                self._emit(resynced)
            self._release_held()
            return await asyncio.shield(protocol.closed)
        finally:
            self._release_held()
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    def _release_held(self) -> None:
        held, self._held = self._held, None
        for event in held or ():
            self._emit(event)

    def _mask_has_system(self) -> bool:
        mask = {c.strip().lower() for c in self.config.events.split(",")}
        return bool(mask & {"system", "all", "on", "yes", "true", "1"})

    async def _wait_booted(self) -> None:
        """Wait (up to ``boot_timeout_s``) for ``FullyBooted`` when the login's event mask
        brings it: a login during Asterisk's start-up is accepted before the modules are
        loaded, and FullyBooted follows once they are (it is never sent with ``Events: off``
        or a mask without ``system``; then a list refused as an unknown command is retried)."""
        if not self._mask_has_system():
            return
        held = self._held if self._held is not None else []
        deadline = time.monotonic() + self.config.boot_timeout_s
        while not any(e.get("Event") == "FullyBooted" for e in held):
            if time.monotonic() >= deadline:
                log.warning("ami.not_fully_booted", waited_s=self.config.boot_timeout_s)
                return
            await asyncio.sleep(0.02)

    async def _resync_when_ready(self) -> Resynced:
        """The resync, asked again with backoff while Asterisk is still loading a module the
        lists need (``Invalid/unknown command: QueueStatus`` right after a restart)."""
        await self._wait_booted()
        cfg = self.config
        attempt = 0
        while True:
            resynced, not_ready = await self._resync()
            attempt += 1
            if not not_ready:
                return resynced
            if attempt >= cfg.resync_attempts:
                log.error(
                    "ami.resync_incomplete",
                    actions=sorted(not_ready),
                    attempts=attempt,
                    message="Asterisk does not know these actions: is the module loaded?",
                )
                return resynced
            delay = min(cfg.reconnect_max_s, 0.25 * 2 ** (attempt - 1))
            log.warning(
                "ami.resync_retry", actions=sorted(not_ready), attempt=attempt, retry_in_s=delay
            )
            self.resync_retries += 1
            await asyncio.sleep(delay)

    async def _resync(self) -> tuple[Resynced, set[str]]:
        """One pass over the lists: the ``Resynced`` and the actions Asterisk did not know."""
        call = self.manager.call
        items: list[dict[str, str]] = []
        refused: dict[str, str] = {}
        not_ready: set[str] = set()

        def refusal(name: str, exc: AmiActionError) -> None:
            refused[name] = exc.message
            if exc.message.startswith("Invalid/unknown command"):
                not_ready.add(name)
            else:
                log.error(
                    "ami.resync_refused",
                    action=name,
                    message=exc.message,
                    needs=f"write = {RESYNC_NEEDS.get(name, '?')} for the AMI user",
                    user=self.config.username,
                )

        pbx_time: float | None = None
        with contextlib.suppress(AmiActionError, ValueError):
            pbx_time = float((await call({"Action": "Ping"})).get("Timestamp"))
        for name in RESYNC_LISTS:
            try:
                items += (await call({"Action": name})).items
            except AmiActionError as exc:
                refusal(name, exc)
        bridges = [i["BridgeUniqueid"] for i in items if i.get("Event") == "BridgeListItem"]
        for bridge in bridges:
            try:
                info = await call({"Action": "BridgeInfo", "BridgeUniqueid": bridge})
            except AmiActionError:
                continue  # the bridge went away meanwhile
            items += [{**item, "BridgeUniqueid": bridge} for item in info.items]
        # The routing decision the dialplan holds for each caller in a queue (``Queue`` runs on
        # the caller's channel, where the AGI set CTI_*): what a restarted daemon cannot know.
        queued = [
            i["Channel"]
            for i in items
            if i.get("Event") == "CoreShowChannel" and i.get("Application") == "Queue"
        ]
        for channel in queued[: self.config.resync_variables_max]:
            fields = {"Action": "Status", "Channel": channel, "Variables": ROUTING_VARIABLES}
            try:
                items += (await call(fields)).items
            except AmiActionError as exc:
                if exc.message != "No such channel":  # it hung up meanwhile
                    refusal("Status", exc)
                    break
        log.info("ami.resynced", items=len(items), bridges=len(bridges), refused=sorted(refused))
        return Resynced(items, refused, pbx_time), not_ready

    # --- actions ---
    def _require(self) -> CtiManager:
        """The manager, if its link is logged in (``AmiNotConnected`` otherwise)."""
        protocol = self._protocol
        if self._manager is None or protocol is None or not protocol.is_open:
            cfg = self.config
            raise AmiNotConnected(f"not connected to Asterisk AMI at {cfg.host}:{cfg.port}")
        return self._manager

    async def send_action(
        self,
        fields: Mapping[str, str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per action, the API's contract
    ) -> AmiResponse:
        """Send one action, return its response; see the module docstring for errors."""
        return await self._require().call(fields, timeout=timeout)

    async def send_list_action(
        self,
        fields: Mapping[str, str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per action, the API's contract
    ) -> tuple[AmiResponse, list[dict[str, str]]]:
        """A list action (``EventList: start`` ... ``Complete``): the response and its items."""
        response = await self._require().call(fields, timeout=timeout)
        return response, response.items

    async def originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int = 1,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        ring_timeout_s: float = 30.0,
        account: str | None = None,
    ) -> OriginateResult:
        """Async Originate; waits for its ``OriginateResponse`` (matched by ActionID).

        Raises ``AmiActionError`` when Asterisk refuses it, ``AmiOriginateFailed`` when the
        call could not be placed, ``AmiConnectionLost`` if the link drops meanwhile (never
        re-sent: check the PBX before trying again). Needs ``call`` in ``[ami] events``.
        """
        fields: dict[str, str] = {"Action": "Originate", "Channel": channel}
        if application is not None:
            fields["Application"] = application
            if data is not None:
                fields["Data"] = data
        else:
            fields.update(Context=context or "", Exten=exten or "", Priority=str(priority))
        if caller_id is not None:
            fields["CallerID"] = caller_id
        if account is not None:
            fields["Account"] = account
        if variables:
            fields["Variable"] = "\n".join(f"{k}={v}" for k, v in variables.items())
        fields.update(Timeout=str(int(ring_timeout_s * 1000)), Async="true")
        manager = self._require()
        pending = manager.send_action(fields, follow_event="OriginateResponse")
        link = manager.protocol
        assert pending.followup is not None
        try:
            async with asyncio.timeout(self.config.action_timeout_s):
                response = await asyncio.shield(pending.future)
            if not response.success:
                raise AmiActionError("Originate", response.message, response.fields)
            async with asyncio.timeout(ring_timeout_s + self.config.action_timeout_s):
                event = await asyncio.shield(pending.followup)
        except TimeoutError:
            if link is not None:
                link.forget(pending.action_id)
            raise AmiTimeout(
                "Originate: no OriginateResponse from Asterisk in time", action="Originate"
            ) from None
        except AmiConnectionLost as exc:
            raise AmiConnectionLost(
                f"Originate to {channel}: {exc}", action="Originate", may_have_run=True
            ) from exc
        result = OriginateResult.from_event(event)
        if not result.success:
            raise AmiOriginateFailed(result.reason, result.reason_text, result.fields)
        return result

    async def redirect(
        self,
        channel: str,
        *,
        context: str,
        exten: str,
        priority: int = 1,
        extra_channel: str | None = None,
    ) -> AmiResponse:
        fields = {
            "Action": "Redirect",
            "Channel": channel,
            "Context": context,
            "Exten": exten,
            "Priority": str(priority),
        }
        if extra_channel is not None:
            fields.update(
                ExtraChannel=extra_channel,
                ExtraContext=context,
                ExtraExten=exten,
                ExtraPriority=str(priority),
            )
        return await self.send_action(fields)

    async def blind_transfer(self, channel: str, *, exten: str, context: str) -> AmiResponse:
        return await self.send_action(
            {"Action": "BlindTransfer", "Channel": channel, "Exten": exten, "Context": context}
        )

    async def atxfer(self, channel: str, *, exten: str, context: str) -> AmiResponse:
        return await self.send_action(
            {"Action": "Atxfer", "Channel": channel, "Exten": exten, "Context": context}
        )

    async def hangup(self, channel: str, *, cause: int | None = None) -> AmiResponse:
        fields = {"Action": "Hangup", "Channel": channel}
        if cause is not None:
            fields["Cause"] = str(cause)
        return await self.send_action(fields)

    async def setvar(self, variable: str, value: str, *, channel: str | None = None) -> AmiResponse:
        fields = {"Action": "Setvar", "Variable": variable, "Value": value}
        if channel is not None:
            fields["Channel"] = channel
        return await self.send_action(fields)

    async def getvar(self, variable: str, *, channel: str | None = None) -> str:
        """A variable's value (``""`` when unset, as Asterisk answers)."""
        fields = {"Action": "Getvar", "Variable": variable}
        if channel is not None:
            fields["Channel"] = channel
        return (await self.send_action(fields)).get("Value")

    async def queue_add(
        self,
        queue: str,
        interface: str,
        *,
        member_name: str | None = None,
        state_interface: str | None = None,
        penalty: int | None = None,
        paused: bool | None = None,
        reason: str | None = None,
    ) -> AmiResponse:
        fields = {"Action": "QueueAdd", "Queue": queue, "Interface": interface}
        optional = {
            "MemberName": member_name,
            "StateInterface": state_interface,
            "Penalty": None if penalty is None else str(penalty),
            "Paused": None if paused is None else str(paused).lower(),
            "Reason": reason,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        return await self.send_action(fields)

    async def queue_remove(self, queue: str, interface: str) -> AmiResponse:
        return await self.send_action(
            {"Action": "QueueRemove", "Queue": queue, "Interface": interface}
        )

    async def queue_pause(
        self, interface: str, paused: bool, *, queue: str | None = None, reason: str | None = None
    ) -> AmiResponse:
        """Pause or unpause a member, in ``queue`` or (``None``) in every queue."""
        fields = {"Action": "QueuePause", "Interface": interface, "Paused": str(paused).lower()}
        if queue is not None:
            fields["Queue"] = queue
        if reason is not None:
            fields["Reason"] = reason
        return await self.send_action(fields)

    async def queue_status(
        self, queue: str | None = None, *, member: str | None = None
    ) -> list[dict[str, str]]:
        """QueueParams/QueueMember/QueueEntry items; an unknown queue gives ``[]`` (as Asterisk)."""
        fields = {"Action": "QueueStatus"}
        if queue is not None:
            fields["Queue"] = queue
        if member is not None:
            fields["Member"] = member
        return (await self.send_list_action(fields))[1]

    async def command(self, command: str) -> list[str]:
        """A CLI command's output lines; an unknown command raises ``AmiActionError``
        whose ``fields["Output"]`` holds Asterisk's explanation."""
        fields = {"Action": "Command", "Command": command}
        try:
            response = await self.send_action(fields)
        except AmiActionError as exc:
            output = exc.fields.get("Output")
            if output:
                raise AmiActionError("Command", output, exc.fields) from None
            raise
        output = response.get("Output")
        return output.split("\n") if output else []

    async def ping(self) -> float:
        """Round trip of a Ping, in seconds."""
        return await self._require().ping()
