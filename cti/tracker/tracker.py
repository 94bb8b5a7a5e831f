"""The call tracker: AMI events in, call events out. No I/O, no clock.

Calls are grouped by ``Linkedid`` (the ``Uniqueid`` of the channel that started them). Who
talks to the caller is read from the bridges: a party is an endpoint channel (or a channel a
queue rang for a named member) that is bridged with the caller's channel, directly or through
Local channel pipes (``;1`` <-> ``;2``). ``hangup_by`` follows ``BridgeLeave`` order, never
``Hangup`` order. Time comes only from the events' ``Timestamp`` header.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import structlog

from cti.tracker.events import CallEvent, CallEventName
from cti.tracker.members import MemberBook, MemberState
from cti.tracker.model import Bridge, Call, Channel, device_name
from cti.tracker.outbound import CAUSE_OUTCOMES, Outbound, dial_outcome, dialled_number
from cti.tracker.resync import adopt_midway, reconcile

log = structlog.get_logger(__name__)

Event = Mapping[str, str]
Normaliser = Callable[[str], str | None]

NO_NUMBER = frozenset({"", "<unknown>", "unknown"})
# Header names of the channels an event names besides its own.
OWN = ("Uniqueid", "Channel", "Linkedid")
DEST = ("DestUniqueid", "DestChannel", "DestLinkedid")
TRANSFERER = ("TransfererUniqueid", "TransfererChannel", "TransfererLinkedid")
TRANSFEREE = ("TransfereeUniqueid", "TransfereeChannel", "TransfereeLinkedid")
ORIG_TRANSFERER = ("OrigTransfererUniqueid", "OrigTransfererChannel", "OrigTransfererLinkedid")
SECOND_TRANSFERER = (
    "SecondTransfererUniqueid",
    "SecondTransfererChannel",
    "SecondTransfererLinkedid",
)
TRANSFER_TARGET = ("TransferTargetUniqueid", "TransferTargetChannel", "TransferTargetLinkedid")
RECENTLY_ENDED = 4096  # ids of ended calls remembered, so late events do not resurrect them

SUMMARY_KEYS = (
    "call_id",
    "caller",
    "caller_e164",
    "queues",
    "agents",
    "answered_by",
    "wait_s",
    "abandoned",
    "transfers",
    "hangup_by",
    "duration_s",
)


def _secs(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 3)


class CallTracker:
    """Feed it AMI events (``feed``) and reconnect snapshots (``resync``); it returns call events.

    ``normalise`` turns a caller ID into E.164 (or ``None``); ``region`` builds one from
    ``crm_core.phone`` when ``normalise`` is not given.
    """

    def __init__(
        self,
        *,
        normalise: Normaliser | None = None,
        region: str | None = None,
        remember_ended: int = RECENTLY_ENDED,
    ) -> None:
        self._remember_ended = remember_ended
        if normalise is None and region:
            normalise = _phone_normaliser(region)
        self._normalise = normalise
        self._channels: dict[str, Channel] = {}  # uniqueid -> channel
        self._by_name: dict[str, str] = {}  # channel name -> uniqueid
        self._bridges: dict[str, Bridge] = {}
        self._calls: dict[str, Call] = {}  # call id -> call
        self._callers: dict[str, Call] = {}  # caller channel uniqueid -> call
        self._ended: OrderedDict[str, None] = OrderedDict()
        # transferee uniqueid -> its blind transfer, until the dial that names the target
        self._blind_pending: dict[str, dict[str, Any]] = {}
        # uniqueid of a ringing phone's channel -> (the call it rings for, what was reported)
        self._ringing: dict[str, tuple[Call, dict[str, Any]]] = {}
        self.members = MemberBook()
        self.last_ts: float | None = None  # the newest event Timestamp seen (resync estimates)
        self._handlers: dict[str, Callable[[Event, float | None, list[CallEvent]], None]] = {
            "Newchannel": self._on_newchannel,
            "NewCallerid": self._on_channel_update,  # Newstate repeats the ID: not needed
            "Rename": self._on_rename,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "BridgeEnter": self._on_bridge_enter,
            "BridgeLeave": self._on_bridge_leave,
            "BridgeDestroy": self._on_bridge_destroy,
            "Hangup": self._on_hangup,
            "HangupRequest": self._on_hangup_request,
            "SoftHangupRequest": self._on_hangup_request,
            "QueueCallerJoin": self._on_queue_join,
            "QueueCallerLeave": self._on_queue_leave,
            "QueueCallerAbandon": self._on_queue_abandon,
            "AgentCalled": self._on_agent_called,
            "AgentConnect": self._on_agent_connect,
            "AgentComplete": self._on_agent_complete,
            "AgentRingNoAnswer": self._on_ring_no_answer,
            "BlindTransfer": self._on_blind_transfer,
            "AttendedTransfer": self._on_attended_transfer,
            "Hold": self._on_hold,
            "Unhold": self._on_hold,
            "QueueMemberAdded": self._member_event("added"),
            "QueueMemberRemoved": self._member_event("removed"),
            "QueueMemberPause": self._member_event("pause"),
            "QueueMemberPaused": self._member_event("pause"),
            "QueueMemberStatus": self._member_event("status"),
            "QueueMemberPenalty": self._member_event("penalty"),
        }

    # ----------------------------------------------------------------- public API

    @property
    def wanted_events(self) -> frozenset[str]:
        """The AMI events this tracker uses: an AMI ``Filter`` can drop the rest at the source."""
        return frozenset(self._handlers)

    def feed(self, event: Event) -> list[CallEvent]:
        # One lookup drops what is not handled (VarSet and Newexten first of all).
        name = event.get("Event")
        handler = self._handlers.get(name)  # type: ignore[arg-type]
        if handler is None:
            return []
        out: list[CallEvent] = []
        raw = event.get("Timestamp")
        ts: float | None = None
        if raw:
            try:
                ts = float(raw)
            except ValueError:
                pass
            else:
                self.last_ts = ts
        try:
            uid = event.get("Uniqueid")
            if uid is not None and uid not in self._channels and name != "Newchannel":
                adopt_midway(self, event, ts, out)
            handler(event, ts, out)
        except Exception as exc:  # a bug here must not stop the flow of events
            log.warning("tracker.event_failed", ami_event=event.get("Event"), error=repr(exc))
        return out

    def call_id_for_uniqueid(self, uniqueid: str) -> str | None:
        chan = self._channels.get(uniqueid)
        call = self._call_of(chan) if chan is not None else None
        return call.call_id if call is not None else None

    def call_id_for_channel(self, name: str) -> str | None:
        uid = self._by_name.get(name)
        return self.call_id_for_uniqueid(uid) if uid else None

    def live_calls(self) -> list[str]:
        return list(self._calls)

    def summary(self, call_id: str) -> dict[str, Any] | None:
        call = self._calls.get(call_id)
        return self._summary(call) if call else None

    def open_summaries(self) -> list[dict[str, Any]]:
        """Summaries of the calls not ended yet (e.g. at the end of a recorded trace)."""
        return [self._summary(call) for call in self._calls.values()]

    def agent_states(self) -> list[MemberState]:
        return self.members.all()

    # Views for cti.tracker.resync, which works on the same state.
    @property
    def channels(self) -> dict[str, Channel]:
        return self._channels

    @property
    def calls(self) -> dict[str, Call]:
        return self._calls

    @property
    def bridges(self) -> dict[str, Bridge]:
        return self._bridges

    def emit_agent_state(
        self, out: list[CallEvent], state: MemberState, ts: float | None, change: str
    ) -> None:
        data = state.as_data()
        data["change"] = change
        out.append(CallEvent("", "agent_state", ts, data))

    @property
    def sizes(self) -> dict[str, int]:
        """How much state is held (bounded memory is part of the contract)."""
        return {
            "channels": len(self._channels),
            "bridges": len(self._bridges),
            "calls": len(self._calls),
            "ended_ids": len(self._ended),
        }

    # ------------------------------------------------------------------ helpers

    def emit(
        self, out: list[CallEvent], call: Call, name: CallEventName, ts: float | None, **data: Any
    ) -> None:
        out.append(CallEvent(call.call_id, name, ts, data))

    def _call_of(self, chan: Channel) -> Call | None:
        call = self._calls.get(chan.linkedid)
        if call is None and chan.calls:
            call = self._calls.get(chan.calls[0])
        return call

    def _chan(
        self, event: Event, keys: tuple[str, str, str] = ("Uniqueid", "Channel", "Linkedid")
    ) -> Channel | None:
        """The channel an event names (by ``keys``: its Uniqueid, Channel, Linkedid headers)."""
        chan = self._channels.get(event.get(keys[0], ""))
        if chan is None:
            name = event.get(keys[1])
            if name:
                found = self._by_name.get(name)
                chan = self._channels.get(found) if found else None
            if chan is None:
                return None
        linkedid = event.get(keys[2])
        if linkedid and linkedid != chan.linkedid:
            self._relink(chan, linkedid)
        return chan

    def _relink(self, chan: Channel, linkedid: str) -> None:
        """A channel joined another call (attended transfer, pickup): it counts for both."""
        chan.linkedid = linkedid
        call = self._calls.get(linkedid)
        if call is not None and call.call_id not in chan.calls:
            chan.calls.append(call.call_id)
            call.live.add(chan.uniqueid)

    def _partner(self, chan: Channel) -> Channel | None:
        pname = chan.partner_name
        if pname is None:
            return None
        uid = self._by_name.get(pname)
        return self._channels.get(uid) if uid else None

    def caller_side(self, call: Call) -> set[str]:
        side = {call.caller_uid}
        chan = self._channels.get(call.caller_uid)
        if chan is not None:
            partner = self._partner(chan)
            if partner is not None:
                side.add(partner.uniqueid)
        return side

    def _call_for_caller_side(self, chan: Channel) -> Call | None:
        call = self._callers.get(chan.uniqueid)
        if call is None:
            partner = self._partner(chan)
            if partner is not None:
                call = self._callers.get(partner.uniqueid)
        return call

    def _party_name(self, chan: Channel) -> str:
        return chan.member or device_name(chan.name)

    def _neighbours(self, chan: Channel, skip_bridge: str | None = None) -> list[Channel]:
        out: list[Channel] = []
        if chan.partner_name is not None:
            uid = self._by_name.get(chan.partner_name)
            partner = self._channels.get(uid) if uid else None
            if partner is not None:
                out.append(partner)
        if chan.bridge and chan.bridge != skip_bridge:
            bridge = self._bridges.get(chan.bridge)
            if bridge is not None:
                channels = self._channels
                for uid in bridge.members:
                    other = channels.get(uid)
                    if other is not None and other is not chan:
                        out.append(other)
        return out

    def _walk(
        self, start: Channel, skip_bridge: str | None = None, avoid: set[str] | None = None
    ) -> tuple[list[Channel], list[Channel]]:
        """Breadth-first from ``start`` through Local pipes and bridges, stopping at parties.

        Returns (parties reached, Local channels passed through)."""
        channels, by_name, bridges = self._channels, self._by_name, self._bridges
        seen = {start.uniqueid}
        if avoid:
            seen |= avoid
        parties: list[Channel] = []
        passed: list[Channel] = []
        chan: Channel | None = start
        skip = skip_bridge
        i = 0
        # ``passed`` doubles as the queue: every Local channel passed is visited in turn
        while chan is not None:
            # the neighbours, in order: the Local pipe's other end, then the bridge's members
            pname = chan.partner_name
            if pname is not None:
                other = channels.get(by_name.get(pname, ""))
                if other is not None:
                    uid = other.uniqueid
                    if uid not in seen:
                        seen.add(uid)
                        if other.member or not other.is_local:
                            parties.append(other)
                        else:
                            passed.append(other)
            bridge_id = chan.bridge
            if bridge_id and bridge_id != skip:
                bridge = bridges.get(bridge_id)
                if bridge is not None:
                    for uid in bridge.members:
                        if uid in seen:
                            continue
                        other = channels.get(uid)
                        if other is None or other is chan:
                            continue
                        seen.add(uid)
                        if other.member or not other.is_local:
                            parties.append(other)
                        else:
                            passed.append(other)
            skip = None
            chan = passed[i] if i < len(passed) else None
            i += 1
        return parties, passed

    def _component_calls(self, chan: Channel) -> list[Call]:
        """Live calls whose caller is connected to ``chan`` through pipes and bridges."""
        channels, by_name, bridges, callers = (
            self._channels,
            self._by_name,
            self._bridges,
            self._callers,
        )
        seen = {chan.uniqueid}
        stack = [chan]
        found: list[Call] = []
        while stack:
            cur = stack.pop()
            call = callers.get(cur.uniqueid)
            if call is not None and call not in found:
                found.append(call)
            if cur.partner_name is not None:
                uid = by_name.get(cur.partner_name)
                if uid is not None and uid not in seen:
                    seen.add(uid)
                    other = channels.get(uid)
                    if other is not None:
                        stack.append(other)
            if cur.bridge is not None:
                bridge = bridges.get(cur.bridge)
                if bridge is not None:
                    for uid in bridge.members:
                        if uid not in seen:
                            seen.add(uid)
                            other = channels.get(uid)
                            if other is not None:
                                stack.append(other)
        return found

    def _resolve_party(self, chan: Channel, avoid: set[str]) -> Channel | None:
        if chan.member or not chan.is_local:
            return chan
        parties, _ = self._walk(chan, avoid=avoid)
        return parties[0] if parties else None

    # --------------------------------------------------------------- call life

    def _new_call(self, chan: Channel, ts: float | None, out: list[CallEvent]) -> Call | None:
        if chan.linkedid in self._ended:
            return None
        call = Call(
            call_id=chan.linkedid, caller_uid=chan.uniqueid, caller_channel=chan.name, start_ts=ts
        )
        call.caller = None if chan.caller_num in NO_NUMBER else chan.caller_num
        call.caller_name = None if chan.caller_name in NO_NUMBER else chan.caller_name
        self._calls[call.call_id] = call
        self._callers[chan.uniqueid] = call
        return call

    def offer(
        self, call: Call, ts: float | None, out: list[CallEvent], event: Event | None = None
    ) -> None:
        if call.offered:
            return
        if event is not None and "CallerIDNum" in event:
            # the caller ID as presented to the called party, by the channel that offers it
            num, name = event["CallerIDNum"], event.get("CallerIDName", "")
            call.caller = None if num in NO_NUMBER else num
            call.caller_name = None if name in NO_NUMBER else name
        call.offered = True
        call.caller_frozen = True
        call.offered_ts = ts if ts is not None else call.start_ts
        self.emit(
            out,
            call,
            "offered",
            ts,
            caller=call.caller,
            caller_name=call.caller_name,
            caller_e164=self._e164(call.caller),
            channel=call.caller_channel,
            uniqueid=call.caller_uid,
        )

    def _e164(self, number: str | None) -> str | None:
        if not number or self._normalise is None:
            return None
        try:
            return self._normalise(number)
        except Exception:  # a normaliser that raises means "not normalisable"
            return None

    def _update_caller_id(self, chan: Channel, event: Event) -> None:
        num = event.get("CallerIDNum")
        if num is not None:
            chan.caller_num = num
        name = event.get("CallerIDName")
        if name is not None:
            chan.caller_name = name
        call = self._callers.get(chan.uniqueid)
        if call is not None and not call.caller_frozen:
            call.caller = None if chan.caller_num in NO_NUMBER else chan.caller_num
            call.caller_name = None if chan.caller_name in NO_NUMBER else chan.caller_name

    def add_channel(self, event: Event, ts: float | None, out: list[CallEvent]) -> Channel | None:
        uid = event.get("Uniqueid")
        name = event.get("Channel")
        if not uid or not name:
            log.debug("tracker.channel_without_id", channel=name)
            return None
        linkedid = event.get("Linkedid") or uid
        chan = Channel(name, uid, linkedid)
        chan.caller_num = event.get("CallerIDNum", "")
        chan.caller_name = event.get("CallerIDName", "")
        self._channels[uid] = chan
        self._by_name[name] = uid
        call = self._calls.get(linkedid)
        if call is None:
            call = self._new_call(chan, ts, out)
        if call is not None:
            call.live.add(uid)
            chan.calls.append(call.call_id)
        return chan

    def _end_call(self, call: Call, ts: float | None, out: list[CallEvent]) -> None:
        call.end_ts = ts
        self.offer(call, ts, out)
        summary = self._summary(call)
        for name in list(call.talking):
            self._close_talk(call, name, ts)
        if call.talk_since is not None and ts is not None:
            call.talk_total += max(0.0, ts - call.talk_since)
        call.talk_since = None
        for leg in call.queue_legs:
            if leg["result"] is None:
                self._close_queue_leg(call, leg["queue"], ts, "hangup")
        waits = [leg["wait_s"] for leg in call.queue_legs if leg["wait_s"] is not None]
        wait_s = round(sum(waits), 3) if waits else None
        if summary["abandoned"]:
            self.emit(
                out,
                call,
                "abandoned",
                ts,
                queue=call.queues[-1] if call.queues else call.abandon_queue,
                wait_s=wait_s if wait_s is not None else _secs(call.offered_ts, ts),
            )
        answered = call.answered_ts is not None and ts is not None
        self.emit(
            out,
            call,
            "ended",
            ts,
            hangup_by=summary["hangup_by"],
            cause=call.cause,
            duration_s=summary["duration_s"],
            wait_s=wait_s,
            talk_s=round(call.talk_total, 3) if answered else None,
            queue_legs=call.queue_legs,
            talk_legs=call.talk_legs,
            direction="outbound" if call.outbound is not None else "inbound",
            **({"outbound": self._outbound_result(call.outbound)} if call.outbound else {}),
            summary=summary,
            **({"resynced": True} if call.resynced else {}),
            **({"midway": True} if call.midway else {}),
        )
        del self._calls[call.call_id]
        for bridge_id in call.via:
            bridge = self._bridges.get(bridge_id)
            if bridge is not None:
                bridge.calls.pop(call.call_id, None)
        if self._callers.get(call.caller_uid) is call:
            del self._callers[call.caller_uid]
        self._ended[call.call_id] = None
        if len(self._ended) > self._remember_ended:
            self._ended.popitem(last=False)

    def _outbound_result(self, ob: Outbound) -> dict[str, Any]:
        return {
            **ob.as_data(self._e164(ob.number)),
            "outcome": ob.outcome(),
            "ring_s": ob.ring_s,
        }

    def _summary(self, call: Call) -> dict[str, Any]:
        answered = bool(call.agents)
        hangup_by = call.hangup_forced or call.hangup_by or ("caller" if not answered else "system")
        wait_from = call.offered_ts if call.offered_ts is not None else call.start_ts
        if call.originated and not call.queues:
            # Placed by an Originate and never queued: nobody waited for an agent, so nobody
            # abandoned. For an outbound call the side that dialled is the agent's.
            if call.outbound is not None and not call.hangup_forced:
                hangup_by = {"caller": "agent", "agent": "customer"}.get(hangup_by, hangup_by)
            return {
                "call_id": call.call_id,
                "caller": call.caller,
                "caller_e164": self._e164(call.caller),
                "queues": [],
                "agents": list(call.agents),
                "answered_by": call.agents[0] if call.agents else None,
                "wait_s": None,
                "abandoned": False,
                "transfers": [
                    {"kind": t["kind"], "from": t["from"], "to": t["to"]} for t in call.transfers
                ],
                "hangup_by": hangup_by,
                "duration_s": _secs(call.start_ts, call.end_ts),
            }
        return {
            "call_id": call.call_id,
            "caller": call.caller,
            "caller_e164": self._e164(call.caller),
            "queues": list(call.queues),
            "agents": list(call.agents),
            "answered_by": call.agents[0] if call.agents else None,
            "wait_s": _secs(wait_from, call.answered_ts) if answered else None,
            "abandoned": (not answered) and hangup_by == "caller",
            "transfers": [
                {"kind": t["kind"], "from": t["from"], "to": t["to"]} for t in call.transfers
            ],
            "hangup_by": hangup_by,
            "duration_s": _secs(call.start_ts, call.end_ts),
        }

    def refresh(self, call: Call, ts: float | None, out: list[CallEvent]) -> None:
        """Recompute who talks to the caller; report newcomers as answered."""
        caller = self._channels.get(call.caller_uid)
        if caller is None:
            return
        parties, passed = self._walk(caller)
        via: set[str] = set()
        if caller.bridge is not None:
            via.add(caller.bridge)
        for chan in passed:
            if chan.bridge is not None:
                via.add(chan.bridge)
            if chan.queues_pending:
                for queue in chan.queues_pending:
                    call.queues.append(queue)
                chan.queues_pending.clear()
        if via != call.via:  # index the bridges the call's connection runs through
            bridges = self._bridges
            for bridge_id in call.via - via:
                bridge = bridges.get(bridge_id)
                if bridge is not None:
                    bridge.calls.pop(call.call_id, None)
            for bridge_id in via - call.via:
                bridge = bridges.get(bridge_id)
                if bridge is not None:
                    bridge.calls[call.call_id] = None
            call.via = via
        ob = call.outbound
        if ob is not None:
            parties = self._outbound_parties(
                call, ob, parties + self._far_ends(ob, passed), ts, out
            )
        if parties or call.talking:
            self._track_talk(call, parties, ts)
        for party in parties:
            name = party.member or device_name(party.name)  # _party_name, inline
            if ob is not None and party.uniqueid in ob.chain:
                continue
            if name in call.agents:
                continue
            first = not call.agents
            call.agents.append(name)
            if first:
                call.answered_ts = ts
                self.offer(call, ts, out)
            call.abandon_queue = None
            entry = self._ringing.pop(party.uniqueid, None)
            ring = entry[1] if entry is not None else {}
            self.emit(
                out,
                call,
                "answered",
                ts,
                agent=name,
                member=party.member,
                interface=party.interface or ring.get("interface") or device_name(party.name),
                agent_channel=party.name,
                queue=party.queue or ring.get("queue"),
                wait_s=_secs(call.offered_ts, ts) if first else None,
                first=first,
            )
            for transfer in call.transfers:
                if transfer.get("to") is None:
                    transfer["to"] = name
        call.connected = bool(parties)

    def _far_ends(self, ob: Outbound, passed: list[Channel]) -> list[Channel]:
        """The number's end when it is a Local pipe whose far half answers in the dialplan
        (no bridge behind it: ``Dial(Local/<number>@outside)``): the pipe is the party."""
        ends = []
        for chan in passed:
            if chan.uniqueid in ob.chain:
                partner = self._partner(chan)
                if partner is None or partner.bridge is None:
                    ends.append(chan)
        return ends

    def _outbound_parties(
        self,
        call: Call,
        ob: Outbound,
        parties: list[Channel],
        ts: float | None,
        out: list[CallEvent],
    ) -> list[Channel]:
        """An outbound call's parties without the agent's own phone; the number answering is
        reported as ``answered`` by the agent who dialled."""
        parties = [p for p in parties if p.uniqueid != ob.agent_uid]
        customer = next((p for p in parties if p.uniqueid in ob.chain), None)
        if customer is not None and not ob.answered:
            ob.answered = True
            call.answered_ts = ts
            if ob.agent not in call.agents:
                call.agents.append(ob.agent)
            self.emit(
                out,
                call,
                "answered",
                ts,
                agent=ob.agent,
                member=ob.member,
                interface=ob.interface,
                agent_channel=ob.agent_channel,
                customer_channel=customer.name,
                queue=None,
                direction="outbound",
                ring_s=_secs(ob.dial_ts, ts),
                wait_s=None,
                first=True,
            )
        return parties

    def _track_talk(self, call: Call, parties: list[Channel], ts: float | None) -> None:
        """Open and close the talk legs: time bridged with each agent, and with any at all."""
        talking = call.talking
        ob = call.outbound
        now = {
            (ob.agent if ob is not None and p.uniqueid in ob.chain else self._party_name(p)): p
            for p in parties
        }
        for name in [n for n in talking if n not in now]:
            self._close_talk(call, name, ts)
        if now and call.talk_since is None:
            call.talk_since = ts
        for name, party in now.items():
            if name not in talking:
                talking[name] = ts
                call.talk_legs.append({"agent": name, "queue": party.queue, "talk_s": None})
        if not now and call.talk_since is not None:
            if ts is not None:
                call.talk_total += max(0.0, ts - call.talk_since)
            call.talk_since = None

    def _close_talk(self, call: Call, name: str, ts: float | None) -> None:
        since = call.talking.pop(name)
        for leg in reversed(call.talk_legs):
            if leg["agent"] == name and leg["talk_s"] is None:
                leg["talk_s"] = _secs(since, ts)
                break

    def _open_queue_leg(self, call: Call, queue: str) -> dict[str, Any] | None:
        for leg in reversed(call.queue_legs):
            if leg["queue"] == queue and leg["result"] is None:
                return leg
        return None

    def _close_queue_leg(
        self, call: Call, queue: str | None, ts: float | None, result: str
    ) -> None:
        leg = self._open_queue_leg(call, queue) if queue else None
        if leg is None:
            return
        if leg["wait_s"] is None:  # unknown without Timestamps: "_joined" may be gone
            leg["wait_s"] = _secs(leg.get("_joined"), ts)
        leg.pop("_joined", None)
        leg["result"] = result

    # ------------------------------------------------------------ channel events

    def _on_newchannel(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        uid = event.get("Uniqueid")
        if uid and uid in self._channels:
            self._update_caller_id(self._channels[uid], event)
            return
        self.add_channel(event, ts, out)

    def _on_channel_update(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        # Newstate/NewCallerid: only the caller's ID matters, and only until it is offered.
        call = self._callers.get(event.get("Uniqueid", ""))
        if call is None or call.caller_frozen:
            return
        chan = self._channels.get(call.caller_uid)
        if chan is not None:
            self._update_caller_id(chan, event)

    def _on_rename(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        chan = self._chan(event)
        new = event.get("Newname")
        if chan is None or not new:
            return
        if self._by_name.get(chan.name) == chan.uniqueid:
            del self._by_name[chan.name]
        chan.renamed(new)
        self._by_name[new] = chan.uniqueid

    def _on_hangup(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        chan = self._chan(event)
        if chan is None:
            log.debug("tracker.hangup_unknown_channel", channel=event.get("Channel"))
            return
        self.hang_up(chan, ts, out, event.get("Cause", ""))

    def _on_hangup_request(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        chan = self._channels.get(event.get("Uniqueid", ""))
        if chan is not None:
            chan.hangup_requested = True

    def hang_up(self, chan: Channel, ts: float | None, out: list[CallEvent], cause: str) -> None:
        """The channel is gone: out of its bridge, out of its calls; a call with none left ends."""
        chan.cause = cause
        if chan.bridge:  # a missing BridgeLeave: leave now so the picture stays right
            self.leave_bridge(chan, chan.bridge, ts, out)
        uid = chan.uniqueid
        self._channels.pop(uid, None)
        if self._blind_pending:
            self._blind_pending.pop(uid, None)
        by_name = self._by_name
        if by_name.get(chan.name) == uid:
            del by_name[chan.name]
        caller_call = self._callers.pop(uid, None)
        if caller_call is not None:
            caller_call.cause = chan.cause
            partner = self._partner(chan)
            if partner is not None and partner.uniqueid not in self._callers:
                # the caller was a Local pipe: its other end now stands for the caller
                caller_call.caller_uid = partner.uniqueid
                self._callers[partner.uniqueid] = caller_call
        calls = self._calls
        if self._ringing:
            entry = self._ringing.pop(uid, None)
            if entry is not None and entry[0].call_id in calls:
                self.emit(out, entry[0], "ring_stopped", ts, reason="hangup", **entry[1])
        for call_id in chan.calls:
            call = calls.get(call_id)
            if call is None:
                continue
            ob = call.outbound
            if ob is not None and ob.status is None and uid in ob.chain:
                ob.status = CAUSE_OUTCOMES.get(cause, "failed")
            call.live.discard(uid)
            if not call.live:
                self._end_call(call, ts, out)

    # --------------------------------------------------------------- dialling

    def _on_dial_begin(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        dest = self._chan(event, DEST)
        src = self._chan(event)
        if src is None and dest is not None and "Channel" not in event:
            # An Originate rings its first channel: a Dial with no calling channel.
            originated = self._callers.get(dest.uniqueid)
            if originated is not None and not originated.queues:
                originated.originated = True
                return  # the agent's own phone, for its own call: not an offer to pop
        if src is not None:
            if dest is not None:
                src.dialed.append(dest.uniqueid)
                if self._dial_outbound(src, dest, event, ts, out):
                    return
            src.dial_answered = None  # a new round of ringing
            call = self._call_for_caller_side(src)
            if call is not None and not call.offered:
                self.offer(call, ts, out, event)
            if self._blind_pending:
                self._follow_blind(src, dest)
        if dest is None:
            return
        if src is not None and src.is_local and dest.member is None:
            # A queue member reached through a Local channel (Local/1001@agents -> PJSIP/1001):
            # the phone is the member too, so it keeps the member's name once Local channel
            # optimisation moves it into the caller's bridge.
            leg = self._partner(src)
            if leg is not None and leg.member is not None:
                dest.member, dest.interface, dest.queue = leg.member, leg.interface, leg.queue
        owner = self._call_of(src) if src is not None else self._call_of(dest)
        if owner is None or dest.is_local or dest.member:
            return  # Local legs ring nobody themselves; queue members ring via AgentCalled
        ring = {
            "member": None,
            "interface": device_name(dest.name),
            "agent_channel": dest.name,
            "queue": None,
        }
        self._ringing[dest.uniqueid] = (owner, ring)
        self.emit(out, owner, "ringing", ts, **ring)

    def _dial_outbound(
        self, src: Channel, dest: Channel, event: Event, ts: float | None, out: list[CallEvent]
    ) -> bool:
        """A dial towards the number of an outbound call (True: nothing else to report)."""
        call = self._callers.get(src.uniqueid)
        if call is not None and call.originated and call.outbound is None and not call.queues:
            self._go_outbound(call, src, dest, event, ts, out)
            return True
        call = self._call_of(src)
        ob = call.outbound if call is not None else None
        if ob is None:
            return False
        partner = self._partner(src)
        if src.uniqueid in ob.chain or (partner is not None and partner.uniqueid in ob.chain):
            ob.chain.add(dest.uniqueid)  # one more hop (Local channels) towards the number
            return True
        return False

    def _outbound_of(
        self, chan: Channel, number: str | None, ts: float | None, dest_uid: str
    ) -> Outbound:
        """The agent whose phone ``chan`` is (an Originate rang it), dialling ``number``."""
        agent_chan, agent_uid = chan, None
        if chan.is_local and not chan.member:
            parties, _ = self._walk(chan)  # the phone behind the Local pipe, if it is bridged
            if parties:
                agent_chan, agent_uid = parties[0], parties[0].uniqueid
        device = device_name(agent_chan.name)
        state = self.members.member_for_device(device)
        member = agent_chan.member or (state.member if state is not None else None)
        return Outbound(
            agent=member or device,
            member=member,
            interface=agent_chan.interface or (state.interface if state is not None else device),
            agent_channel=agent_chan.name,
            number=number,
            dial_ts=ts,
            first_dest=dest_uid,
            agent_uid=agent_uid,
            chain={dest_uid} if dest_uid else set(),
        )

    def _go_outbound(
        self,
        call: Call,
        src: Channel,
        dest: Channel,
        event: Event,
        ts: float | None,
        out: list[CallEvent],
    ) -> None:
        """The channel an Originate rang dials out: an outbound call by the agent it rang."""
        ob = self._outbound_of(src, dialled_number(event), ts, dest.uniqueid)
        call.outbound = ob
        if ob.agent in call.agents:
            # A dialplan that rings the agent's phone from a Local pipe (cacofonisk's
            # recordings) reported that phone as answering: it is the side that dials.
            call.agents.remove(ob.agent)
            call.answered_ts = None
            call.talking.pop(ob.agent, None)
            call.talk_legs = [leg for leg in call.talk_legs if leg["agent"] != ob.agent]
            if not call.talking:
                call.talk_since = None
        call.offered = call.caller_frozen = True
        call.offered_ts = ts if ts is not None else call.start_ts
        self.emit(
            out,
            call,
            "outbound",
            ts,
            **ob.as_data(self._e164(ob.number)),
            customer_channel=dest.name,
        )

    def _follow_blind(self, src: Channel, dest: Channel | None) -> None:
        """After a blind transfer the transferee dials the target: name it, through Locals."""
        transfer = self._blind_pending.pop(src.uniqueid, None)
        if transfer is None or dest is None:
            return
        if dest.is_local and not dest.member:
            partner = self._partner(dest)
            if partner is not None:
                self._blind_pending[partner.uniqueid] = transfer
                return
        transfer["to"] = self._party_name(dest)

    def _calls_of(self, chan: Channel) -> list[Call]:
        calls = [self._calls[c] for c in chan.calls if c in self._calls]
        current = self._calls.get(chan.linkedid)
        if current is not None and current not in calls:
            calls.append(current)
        return calls

    def _on_dial_end(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        dest = self._chan(event, DEST)
        src = self._chan(event)
        status = event.get("DialStatus", "")
        # Ring-all: the phone that answers gets DialEnd ANSWER, then every other phone of the
        # same Dial gets DialEnd CANCEL, before AgentConnect. That CANCEL is no hang-up.
        elsewhere = src.dial_answered if src is not None and status == "CANCEL" else None
        if src is None and dest is not None and status != "ANSWER" and "Channel" not in event:
            # The phone an Originate rang did not answer: a click-to-dial that never dialled.
            call = self._callers.get(dest.uniqueid)
            if call is not None and call.originated and call.outbound is None:
                call.outbound = self._outbound_of(dest, None, ts, "")
                call.outbound.status = "agent_" + dial_outcome(status)
                call.offered = call.caller_frozen = True  # nobody to offer it to
                return
        if src is not None and dest is not None:
            call = self._call_of(src)
            ob = call.outbound if call is not None else None
            if ob is not None and dest.uniqueid == ob.first_dest:
                ob.status = dial_outcome(status)
                ob.ring_s = _secs(ob.dial_ts, ts)
                if call is not None and status != "ANSWER":
                    # sides as for an inbound call: the dialling side is the "caller" one
                    far = "agent" if status == "BUSY" else "system"
                    call.hangup_by = "caller" if status == "CANCEL" else far
                return
        if src is not None:
            call = self._call_for_caller_side(src)
            if (
                call is not None
                and status
                and status != "ANSWER"
                and elsewhere is None
                and not call.connected
            ):
                call.hangup_by = "caller" if status == "CANCEL" else "system"
            if status == "ANSWER":
                src.answered_dial = True
                if dest is not None:
                    src.dial_answered = self._party_name(dest)
        if dest is None:
            return
        entry = self._ringing.pop(dest.uniqueid, None)
        if status == "ANSWER":
            return  # not "stopped": it is reported as answered once bridged with the caller
        if entry is not None and entry[0].call_id in self._calls:
            if elsewhere is not None:
                self.emit(
                    out,
                    entry[0],
                    "ring_stopped",
                    ts,
                    reason="answered_elsewhere",
                    answered_by=elsewhere,
                    **entry[1],
                )
            else:
                self.emit(out, entry[0], "ring_stopped", ts, reason=status.lower(), **entry[1])

    # ---------------------------------------------------------------- bridges

    def _on_bridge_enter(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        chan = self._chan(event)
        bridge_id = event.get("BridgeUniqueid")
        if chan is None or not bridge_id:
            log.debug("tracker.bridge_enter_unknown", channel=event.get("Channel"))
            return
        if chan.bridge and chan.bridge != bridge_id:
            self.leave_bridge(chan, chan.bridge, ts, out)
        bridge = self._bridges.get(bridge_id)
        if bridge is None:
            bridge = self._bridges[bridge_id] = Bridge(bridge_id)
        bridge.members[chan.uniqueid] = None
        bridge.seen[chan.uniqueid] = None
        chan.bridge = bridge_id
        if len(bridge.members) < 2:
            return  # alone in a bridge: connected to nobody new
        for call in self._component_calls(chan):
            self.refresh(call, ts, out)

    def _on_bridge_leave(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        chan = self._chan(event)
        bridge_id = event.get("BridgeUniqueid")
        if chan is None or not bridge_id or chan.bridge != bridge_id:
            log.debug("tracker.bridge_leave_unknown", channel=event.get("Channel"))
            return
        self.leave_bridge(chan, bridge_id, ts, out)

    def leave_bridge(
        self, chan: Channel, bridge_id: str, ts: float | None, out: list[CallEvent]
    ) -> None:
        bridge = self._bridges.get(bridge_id)
        # Leaving adds nobody: only calls talking to someone can change, and only when the
        # channel was not alone in the bridge.
        affected = []
        if bridge is not None and len(bridge.members) > 1:
            calls = self._calls
            for call_id in bridge.calls:
                call = calls.get(call_id)
                if call is not None and call.connected:
                    affected.append(call)
        elif bridge is None:
            affected = [call for call in self._component_calls(chan) if call.connected]
        if bridge is not None:
            bridge.members.pop(chan.uniqueid, None)
        chan.bridge = None
        for call in affected:
            self.refresh(call, ts, out)
            if not call.connected:
                call.hangup_by = self._side(call, chan, bridge_id)

    def _side(self, call: Call, chan: Channel, bridge_id: str) -> str:
        """Which side ``chan`` (just out of ``bridge_id``) was on: the caller's or the agent's."""
        if chan.uniqueid == call.caller_uid:
            return "caller"
        seen = {chan.uniqueid}
        queue = deque([chan])
        while queue:
            cur = queue.popleft()
            for other in self._neighbours(cur, bridge_id):
                if other.uniqueid == call.caller_uid:
                    return "caller"
                if other.uniqueid not in seen and (other.is_local and not other.member):
                    seen.add(other.uniqueid)
                    queue.append(other)
        return "agent"

    def _on_bridge_destroy(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        bridge = self._bridges.pop(event.get("BridgeUniqueid", ""), None)
        if bridge is None:
            return
        for uid in bridge.members:
            chan = self._channels.get(uid)
            if chan is not None and chan.bridge == bridge.uniqueid:
                chan.bridge = None

    # ----------------------------------------------------------------- queues

    def _on_queue_join(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        chan = self._chan(event)
        queue = event.get("Queue")
        if chan is None or not queue:
            return
        chan.answered_dial = False
        call = self._call_for_caller_side(chan)
        if call is not None:
            call.queues.append(queue)
            # The waiting channel's Uniqueid: Asterisk's queue_log names the entry by it.
            call.queue_legs.append(
                {
                    "queue": queue,
                    "wait_s": None,
                    "result": None,
                    "uniqueid": chan.uniqueid,
                    "_joined": ts,
                }
            )
            call.abandon_queue = None
            for transfer in call.transfers:
                if transfer["kind"] == "blind" and transfer.get("to_queue") is None:
                    transfer["to_queue"] = queue
            self.offer(call, ts, out, event)
        else:
            chan.queues_pending.append(queue)
            call = self._call_of(chan)
        if call is not None:
            self.emit(
                out,
                call,
                "queued",
                ts,
                queue=queue,
                position=_int(event.get("Position")),
                priority=_int(event.get("Priority")),
                channel=chan.name,
            )

    def _hangup_requested(self, call: Call) -> bool:
        """Is the caller going (hang-up requested or done)? Tells an abandon from a Redirect."""
        side = self.caller_side(call)
        if call.caller_uid not in self._channels:
            return True
        return any(self._channels[uid].hangup_requested for uid in side if uid in self._channels)

    def _on_queue_leave(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        chan = self._chan(event)
        if chan is None:
            return
        caller_call = self._call_for_caller_side(chan)
        call = caller_call or self._call_of(chan)
        if call is None:
            return
        if chan.answered_dial:
            if caller_call is not None:
                self._close_queue_leg(caller_call, event.get("Queue"), ts, "answered")
            return
        if call.abandon_queue is not None:
            reason = "abandon" if self._hangup_requested(call) else "redirect"
        else:
            reason = "hangup" if self._hangup_requested(call) else "exit"
            if caller_call is call and not call.connected:
                call.hangup_by = "caller" if reason == "hangup" else "system"
        if caller_call is not None:
            self._close_queue_leg(caller_call, event.get("Queue"), ts, reason)
        self.emit(out, call, "left_queue", ts, queue=event.get("Queue"), reason=reason)

    def _on_queue_abandon(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        # Not always an abandon: a Redirect out of the queue produces the same event (Asterisk
        # 22); only a caller whose hang-up was requested has abandoned.
        chan = self._chan(event)
        queue = event.get("Queue")
        if chan is None:
            return
        call = self._call_for_caller_side(chan)
        if call is None:
            return
        if queue and queue not in call.queues:
            call.queues.append(queue)
        call.abandon_queue = queue or ""
        leg = self._open_queue_leg(call, queue) if queue else None
        if leg is not None and leg["wait_s"] is None:
            leg["wait_s"] = _secs(leg.pop("_joined", None), ts)  # its result: with the leave
        if not call.connected and self._hangup_requested(call):
            call.hangup_by = "caller"

    def _member_channel(self, event: Event) -> Channel | None:
        dest = self._chan(event, DEST)
        if dest is None:
            return None
        member = event.get("MemberName")
        if member:
            dest.member = member
        dest.interface = event.get("Interface") or dest.interface
        dest.queue = event.get("Queue") or dest.queue
        return dest

    def _on_agent_called(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        dest = self._member_channel(event)
        src = self._chan(event)
        call = (self._call_of(src) if src is not None else None) or (
            self._call_of(dest) if dest is not None else None
        )
        if call is None or dest is None:
            return
        ring = {
            "member": dest.member,
            "interface": event.get("Interface"),
            "agent_channel": dest.name,
            "queue": event.get("Queue"),
        }
        self._ringing[dest.uniqueid] = (call, ring)
        self.emit(out, call, "ringing", ts, **ring)

    def _on_agent_connect(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        dest = self._member_channel(event)
        state = self._member_update(event, "connect")
        if state is not None:
            state.in_call = True
            self._emit_agent(out, state, ts, event, "connect")
        if dest is not None:
            for call in self._component_calls(dest):
                self.refresh(call, ts, out)

    def _on_agent_complete(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        state = self._member_update(event, "complete")  # may lack channel fields under load
        if state is not None:
            state.in_call = False
            self._emit_agent(out, state, ts, event, "complete")

    def _on_hold(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        """Hold / Unhold (Asterisk 22: Channel, Uniqueid, Linkedid; Hold adds MusicClass): the
        channel that put its bridge on hold, as the phone asked. Reported once per change.
        Asterisk sends no Unhold when an attended transfer completes a held call: a hold
        still open ends with the holding agent's part of the call (``cti.stats.legs``)."""
        chan = self._chan(event)
        call = self._call_of(chan) if chan is not None else None
        if chan is None or call is None or call.end_ts is not None:
            return
        held = event.get("Event") == "Hold"
        if chan.on_hold == held:
            return
        chan.on_hold = held
        data: dict[str, Any] = {
            "channel": chan.name,
            "uniqueid": chan.uniqueid,
            "by": self._party_name(chan),
        }
        if held and event.get("MusicClass"):
            data["music_class"] = event.get("MusicClass")
        self.emit(out, call, "hold" if held else "unhold", ts, **data)

    def _on_ring_no_answer(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        dest = self._member_channel(event)
        state = self._member_update(event, "ring_no_answer")
        if dest is not None:
            entry = self._ringing.pop(dest.uniqueid, None)
            if entry is not None:
                ring_ms = _int(event.get("RingTime"))  # milliseconds in this event
                self.emit(
                    out,
                    entry[0],
                    "ring_stopped",
                    ts,
                    reason="ring_no_answer",
                    ring_s=ring_ms / 1000 if ring_ms is not None else None,
                    **entry[1],
                )
        if state is not None:
            self._emit_agent(out, state, ts, event, "ring_no_answer")

    def _member_update(self, event: Event, kind: str) -> MemberState | None:
        self.members.update(event, kind)
        queue, interface = event.get("Queue"), event.get("Interface")
        return self.members.get(queue, interface) if queue and interface else None

    def _emit_agent(
        self, out: list[CallEvent], state: MemberState, ts: float | None, event: Event, kind: str
    ) -> None:
        linkedid = event.get("Linkedid", "")
        data = state.as_data()
        data["change"] = kind
        out.append(CallEvent(linkedid, "agent_state", ts, data))

    def _member_event(self, kind: str) -> Callable[[Event, float | None, list[CallEvent]], None]:
        def handle(event: Event, ts: float | None, out: list[CallEvent]) -> None:
            for state in self.members.update(event, kind):  # only real changes
                self._emit_agent(out, state, ts, event, kind)

        return handle

    # -------------------------------------------------------------- transfers

    def _on_blind_transfer(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        if event.get("Result") != "Success":
            return
        transferer = self._chan(event, TRANSFERER)
        transferee = self._chan(event, TRANSFEREE)
        if transferer is None:
            return
        call = self._call_of(transferer)
        if call is None:
            return
        ext = event.get("Extension") or None
        transfer: dict[str, Any] = {
            "kind": "blind",
            "from": self._party_name(transferer),
            "to": None,
            "to_queue": None,
            "extension": ext,
        }
        call.transfers.append(transfer)
        if transferee is not None:
            self._blind_pending[transferee.uniqueid] = transfer
        self.emit(
            out,
            call,
            "transferred",
            ts,
            kind="blind",
            from_agent=transfer["from"],
            to=ext,
            to_queue=None,
            extension=ext,
            context=event.get("Context"),
            **{"from": transfer["from"]},
        )

    def _on_attended_transfer(self, event: Event, ts: float | None, out: list[CallEvent]) -> None:
        if event.get("Result") != "Success":
            return
        orig = self._chan(event, ORIG_TRANSFERER)
        second = self._chan(event, SECOND_TRANSFERER)
        if orig is None:
            return
        call = self._call_of(orig)
        if call is None:
            return
        avoid = self.caller_side(call) | {orig.uniqueid}
        if second is not None:
            avoid.add(second.uniqueid)
        transferee = self._chan(event, TRANSFEREE)
        if transferee is not None:
            avoid.add(transferee.uniqueid)
        target = self._transfer_target(event, second, avoid)
        to = self._party_name(target) if target is not None else None
        to_queue = None
        if target is None and second is not None:
            to_queue = self._consult_queue(second, avoid)
        transfer: dict[str, Any] = {
            "kind": "attended",
            "from": self._party_name(orig),
            "to": to,
            "to_queue": to_queue or (target.queue if target is not None else None),
        }
        call.transfers.append(transfer)
        self.emit(
            out,
            call,
            "transferred",
            ts,
            kind="attended",
            from_agent=transfer["from"],
            to=to,
            to_queue=transfer["to_queue"],
            dest_type=event.get("DestType"),
            **{"from": transfer["from"]},
        )

    def _transfer_target(
        self, event: Event, second: Channel | None, avoid: set[str]
    ) -> Channel | None:
        target = self._chan(event, TRANSFER_TARGET)
        if target is not None and target.uniqueid not in avoid:
            found = self._resolve_party(target, avoid)
            if found is not None:
                return found
        bridge = self._bridges.get(event.get("SecondBridgeUniqueid", ""))
        if bridge is not None:
            for uid in bridge.seen:
                chan = self._channels.get(uid)
                if chan is None or uid in avoid:
                    continue
                found = self._resolve_party(chan, avoid | {uid})
                if found is not None and found.uniqueid not in avoid:
                    return found
        if second is not None:  # blonde: the device the consultation leg was dialling
            for uid in reversed(second.dialed):
                chan = self._channels.get(uid)
                if chan is None:
                    continue
                if chan.member or not chan.is_local:
                    return chan
                partner = self._partner(chan)
                if partner is not None:
                    for inner in reversed(partner.dialed):
                        inner_chan = self._channels.get(inner)
                        if inner_chan is not None:
                            return inner_chan
        return None

    def _consult_queue(self, second: Channel, avoid: set[str]) -> str | None:
        for uid in second.dialed:
            chan = self._channels.get(uid)
            partner = self._partner(chan) if chan is not None else None
            if partner is not None and partner.queues_pending:
                return partner.queues_pending[-1]
        return None

    # ----------------------------------------------------------------- resync

    def resync(
        self,
        items: Sequence[Event],
        *,
        now: float | None = None,
        lost_at: float | None = None,
        known: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[CallEvent]:
        """Reconcile with Asterisk's own lists after a reconnect (see ``cti.tracker.resync``)."""
        return reconcile(self, items, now=now, lost_at=lost_at, known=known)

    def has_ended(self, call_id: str) -> bool:
        return call_id in self._ended

    def expire(self, uniqueids: Collection[str]) -> list[CallEvent]:
        """End these channels, which Asterisk no longer reports (their Hangup was lost)."""
        from cti.tracker.resync import expire

        return expire(self, uniqueids)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _phone_normaliser(region: str) -> Normaliser:
    try:
        from crm_core.phone import to_e164
    except ImportError:  # pragma: no cover - crm_core.phone is part of this repo
        import phonenumbers

        def fallback(raw: str) -> str | None:
            try:
                num = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                return None
            if not phonenumbers.is_possible_number(num):
                return None
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)

        return fallback

    def normalise(raw: str) -> str | None:
        return to_e164(raw, region)

    return normalise
