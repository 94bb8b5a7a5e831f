"""Reconcile the tracker with Asterisk's own lists after a (re)connect.

The items are what ``CoreShowChannels`` (``CoreShowChannel``), ``QueueStatus`` (``QueueParams``,
``QueueMember``, ``QueueEntry``) and ``BridgeList``/``BridgeInfo`` (``BridgeListItem``,
``BridgeInfoChannel``) returned. Channels the tracker knows but Asterisk no longer has are hung
up (their calls end with ``hangup_by: "system"`` and ``resynced: True``); channels it does not
know are adopted, grouped into calls by ``Linkedid``; bridges are taken from the channels'
``BridgeId``. What is already known is not reported again. List items carry no ``Timestamp``:
times are estimated from the last event seen and the channels' ``Duration``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import structlog

from cti.tracker.events import CallEvent
from cti.tracker.model import Bridge, Call, Channel, device_name

if TYPE_CHECKING:
    from cti.tracker.tracker import CallTracker, Event

log = structlog.get_logger(__name__)


def _duration_s(text: str | None) -> float:
    """``Duration: 00:01:05`` (CoreShowChannel) as seconds."""
    if not text:
        return 0.0
    try:
        total = 0
        for part in text.split(":"):
            total = total * 60 + int(part)
        return float(total)
    except ValueError:
        return 0.0


def _caller_first(item: Event) -> tuple[bool, float]:
    return item.get("Uniqueid") != item.get("Linkedid"), -_duration_s(item.get("Duration"))


def reconcile(tracker: CallTracker, items: Sequence[Event]) -> list[CallEvent]:
    out: list[CallEvent] = []
    now = tracker.last_ts
    listed: dict[str, Event] = {}
    entries: dict[str, Event] = {}
    bridged: dict[str, str] = {}
    members: list[Event] = []
    has_channel_list = False
    for item in items:
        kind = item.get("Event")
        uid = item.get("Uniqueid")
        if kind == "CoreShowChannel" and uid:
            has_channel_list = True
            listed[uid] = item
            if item.get("BridgeId"):
                bridged[uid] = item["BridgeId"]
        elif kind == "QueueEntry" and uid:
            entries[uid] = item
        elif kind == "BridgeInfoChannel" and uid and item.get("BridgeUniqueid"):
            bridged.setdefault(uid, item["BridgeUniqueid"])
        elif kind == "QueueMember":
            members.append(item)
    if not has_channel_list and (entries or bridged):
        # Queue or bridge items name channels but no channel list came: it was refused or
        # lost, so the absence of a channel proves nothing. Adopt nothing, end nothing.
        log.debug("tracker.resync_without_channel_list")
        listed = {}
    else:
        _hang_up_vanished(tracker, set(listed), now, out)

    for item in members:
        for state in tracker.members.update(item, "list"):  # only what changed
            tracker.emit_agent_state(out, state, now, "resync")

    adopted = _adopt(tracker, listed, entries, bridged, now, out)
    if has_channel_list:  # bridges are only known for sure with the channel list
        _rebridge(tracker, bridged, now, out)
    for call in adopted:
        tracker.refresh(call, now, out)
    for event in out:
        if event.event != "agent_state":
            event.data.setdefault("resynced", True)
    return out


def expire(tracker: CallTracker, uniqueids: Collection[str]) -> list[CallEvent]:
    """Hang up these channels as a resync finding them gone would (``hangup_by: "system"``,
    ``resynced: True``): Asterisk no longer has them and their Hangup never came."""
    out: list[CallEvent] = []
    gone = set(uniqueids)
    _hang_up_vanished(tracker, set(tracker.channels) - gone, tracker.last_ts, out)
    for event in out:
        if event.event != "agent_state":
            event.data.setdefault("resynced", True)
    return out


def _hang_up_vanished(
    tracker: CallTracker, alive: set[str], now: float | None, out: list[CallEvent]
) -> None:
    vanished = [chan for uid, chan in tracker.channels.items() if uid not in alive]
    for chan in vanished:
        for call_id in chan.calls:
            call = tracker.calls.get(call_id)
            if call is not None:
                call.resynced = True
                call.hangup_forced = "system"
    for chan in vanished:
        tracker.hang_up(chan, now, out, cause="resync")
    for call in tracker.calls.values():  # calls that lost only some channels go on
        call.hangup_forced = None


def _adopt(
    tracker: CallTracker,
    listed: dict[str, Event],
    entries: dict[str, Event],
    bridged: dict[str, str],
    now: float | None,
    out: list[CallEvent],
) -> list[Call]:
    new = [item for uid, item in listed.items() if uid not in tracker.channels]
    if not new:
        return []
    # The call's first channel (Uniqueid == Linkedid) first, so it becomes the caller.
    new.sort(
        key=lambda i: (i.get("Uniqueid") != i.get("Linkedid"), -_duration_s(i.get("Duration")))
    )
    adopted: list[Call] = []
    for item in new:
        started = now - _duration_s(item.get("Duration")) if now is not None else None
        chan = tracker.add_channel(item, started, out)
        if chan is None:
            continue
        call = tracker.calls.get(chan.linkedid)
        if call is not None and call.caller_uid == chan.uniqueid:
            call.resynced = True
            adopted.append(call)
        app = item.get("Application", "")
        if app == "AppQueue":  # the leg a queue placed to a member: name it from QueueStatus
            state = tracker.members.member_for_device(device_name(chan.name))
            if state is not None:
                chan.member, chan.interface, chan.queue = state.member, state.interface, state.queue
    for call in adopted:
        side = [tracker.channels[u] for u in tracker.caller_side(call) if u in tracker.channels]
        offering = next((c for c in side if c.uniqueid in entries), None)
        entry = entries.get(offering.uniqueid) if offering is not None else None
        source = entry or listed.get(
            next((c.uniqueid for c in side if c.uniqueid != call.caller_uid), call.caller_uid)
        )
        tracker.offer(call, now, out, source)
        if offering is not None and entry is not None:
            item = entry
            queue = item.get("Queue", "")
            call.queues.append(queue)
            tracker.emit(
                out,
                call,
                "queued",
                now,
                queue=queue,
                position=int(item.get("Position") or 0) or None,
                channel=offering.name,
                wait_s=float(item.get("Wait") or 0),
            )
    return adopted


def _rebridge(
    tracker: CallTracker, bridged: dict[str, str], now: float | None, out: list[CallEvent]
) -> None:
    for uid, chan in list(tracker.channels.items()):
        want = bridged.get(uid)
        if chan.bridge == want:
            continue
        if chan.bridge is not None:
            tracker.leave_bridge(chan, chan.bridge, now, out)
        if want is not None:
            _enter(tracker, chan, want)
    for call in list(tracker.calls.values()):
        tracker.refresh(call, now, out)


def _enter(tracker: CallTracker, chan: Channel, bridge_id: str) -> None:
    bridge = tracker.bridges.get(bridge_id)
    if bridge is None:
        bridge = tracker.bridges[bridge_id] = Bridge(bridge_id)
    bridge.members[chan.uniqueid] = None
    bridge.seen[chan.uniqueid] = None
    chan.bridge = bridge_id
