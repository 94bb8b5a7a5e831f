"""Reconcile the tracker with Asterisk's own lists after a (re)connect.

The items are what ``CoreShowChannels`` (``CoreShowChannel``), ``QueueStatus`` (``QueueParams``,
``QueueMember``, ``QueueEntry``) and ``BridgeList``/``BridgeInfo`` (``BridgeListItem``,
``BridgeInfoChannel``) returned. Channels the tracker knows but Asterisk no longer has are hung
up (their calls end with ``hangup_by: "system"`` and ``resynced: True``); channels it does not
know are adopted, grouped into calls by ``Linkedid``; bridges are taken from the channels'
``BridgeId``. What is already known is not reported again.

Time: list items carry no ``Timestamp``. ``now`` is Asterisk's clock when the lists were taken
(the caller passes it; else the last event seen); an adopted call started ``Duration`` before
it, was queued ``Wait`` before it, was answered no earlier than its member leg (the
``AppQueue`` channel) appeared; these figures are marked ``estimated`` in the events. What
the caller knew of a call before (``known``: a restarted daemon's saved context) wins over
estimates. Vanished calls end at ``lost_at`` (when the link was lost: they were up until
then) with ``end_estimated: True``, never before anything known of them.

``adopt_midway``: a channel first seen in an event other than ``Newchannel`` (its call
started before the tracker, and no resync listed it) is adopted from that event, so that its
call is still tracked and ends; such a call says ``midway: True`` (its start is not known).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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


def reconcile(
    tracker: CallTracker,
    items: Sequence[Event],
    *,
    now: float | None = None,
    lost_at: float | None = None,
    known: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[CallEvent]:
    out: list[CallEvent] = []
    if now is None:
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
        end = now
        if lost_at is not None:
            # Not before anything seen of them: the last event, or the start of an adopted call.
            end = max(t for t in (lost_at, tracker.last_ts) if t is not None)
        _hang_up_vanished(tracker, set(listed), end, out)
        for event in out:
            if event.event in ("ended", "abandoned"):
                event.data["end_estimated"] = True

    for item in members:
        for state in tracker.members.update(item, "list"):  # only what changed
            tracker.emit_agent_state(out, state, now, "resync")

    adopted = _adopt(tracker, listed, entries, bridged, now, out)
    hints = {c.call_id: h for c in adopted if (h := (known or {}).get(c.call_id))}
    for call in adopted:
        hint = hints.get(call.call_id)
        if hint:  # what was known before: its queues and agents are not news
            for queue in hint.get("queues") or ():
                if queue not in call.queues:
                    call.queues.insert(len(call.queues) - (1 if call.queues else 0), queue)
            for agent in hint.get("agents") or ():
                if agent not in call.agents:
                    call.agents.append(agent)
    if has_channel_list:  # bridges are only known for sure with the channel list
        _rebridge(tracker, bridged, now, out)
    for call in adopted:
        tracker.refresh(call, now, out)
        _timeline(tracker, call, listed, hints.get(call.call_id), now, out)
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


def _timeline(
    tracker: CallTracker,
    call: Call,
    listed: Mapping[str, Event],
    hint: Mapping[str, Any] | None,
    now: float | None,
    out: list[CallEvent],
) -> None:
    """An adopted call's start, offer and answer times: known ones first, else estimated."""
    estimated: list[str] = []
    started = (hint or {}).get("started_at")
    if started is None:
        started = call.start_ts
        estimated.append("started_at")
    answered = (hint or {}).get("answered_at")
    if answered is None and call.agents and now is not None:
        # Answered no earlier than the queue dialled the member: the member leg's start.
        legs = [
            now - _duration_s(item.get("Duration"))
            for uid, item in listed.items()
            if item.get("Application") == "AppQueue" and item.get("Linkedid") == call.call_id
        ]
        answered = min(legs) if legs else now
        estimated.append("answered_at")
    offered = (hint or {}).get("offered_at") or started
    call.start_ts = started
    call.offered_ts = offered
    if call.agents:
        call.answered_ts = answered
        if answered is not None and not call.talk_total:
            # Bridged with its agent since the answer, not since this daemon first saw it.
            if call.talk_since is not None:
                call.talk_since = min(call.talk_since, answered)
            for name, since in call.talking.items():
                if since is not None:
                    call.talking[name] = min(since, answered)
    for i, event in enumerate(out):
        if event.call != call.call_id:
            continue
        if estimated:
            event.data["estimated"] = list(estimated)
        if event.event == "offered":
            out[i] = dataclasses.replace(event, ts=offered)
        elif event.event == "answered" and event.data.get("first"):
            if offered is not None and answered is not None:
                event.data["wait_s"] = round(max(0.0, answered - offered), 3)
            out[i] = dataclasses.replace(event, ts=answered)


def adopt_midway(
    tracker: CallTracker, event: Event, ts: float | None, out: list[CallEvent]
) -> None:
    """A channel first seen in this event (see the module docstring)."""
    linkedid = event.get("Linkedid")
    if not linkedid or not event.get("Channel") or tracker.has_ended(linkedid):
        return
    call = tracker.calls.get(linkedid)
    if call is not None and not call.midway:
        return  # a channel of a call followed from its start: gone, or not ours to add
    chan = tracker.add_channel(event, None, out)
    if chan is None or call is not None:
        return
    call = tracker.calls.get(linkedid)
    if call is None:
        return
    call.midway = True
    call.resynced = True
    log.info("tracker.adopted_midway", call_id=linkedid, ami_event=event.get("Event"))
    tracker.offer(call, ts, out, event if chan.uniqueid == linkedid else None)
    call.offered_ts = None  # not when it was offered: when it was first seen
    for ev in out:
        if ev.call == linkedid:
            ev.data.update(midway=True, resynced=True, estimated=["started_at"])


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
