"""One simulated inbound call, driven through the PBX the way the Asterisk dialplan drives it.

A ``SimCall`` is an actor: timers, queue offers and AMI actions (Redirect, BlindTransfer, Hangup)
arrive as messages in its inbox and it emits the events Asterisk 22 sends for each step, in the
order recorded in ``../shared/ami-traces/asterisk22`` (arrival of the Local pair from the trunk,
FastAGI, ``Queue()``, agent Local pairs ringing, bridge, transfers, hang-up cascades).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from cti.sim.agi import AgiRequest, AgiResult
from cti.sim.channels import RINGING, UP, Bridge, Channel, local_pair
from cti.sim.pbx import Entry, Member, Pbx, SimQueue
from cti.sim.scenarios import AgentBehaviour, CallerProfile, Dialplan, TalkEnd
from cti.sim.wire import Headers

log = structlog.get_logger(__name__)

AgiRunner = Callable[[AgiRequest, dict[str, str], Callable[[str, str], None]], Awaitable[AgiResult]]
_PRIO = re.compile(r"^[0-9]{1,4}$")
_ALLOWED = "0 (Presentation Allowed, Not Screened)"
_PROHIBITED = "35 (Presentation Prohibited, Network Number)"


@dataclass(eq=False)
class Leg:
    """An agent's phone being rung for this call: ``one`` dials from the queue, ``two`` rings."""

    member: Member
    queue: SimQueue
    one: Channel
    two: Channel
    started: float
    waiting: Channel  # the channel in the queue that dials: the caller's, or a consultation
    entry: Entry  # its stay in the queue (queue_log's hold time and position)
    timer: asyncio.Task[None] | None = None
    connected: float | None = None  # when it was answered


@dataclass
class CallSummary:
    """What happened, as the simulator knows it (the ground truth for a tracker)."""

    call_id: str
    caller: str | None
    kind: str
    queues: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    transfers: list[dict[str, str]] = field(default_factory=list)
    abandoned: bool = False
    hangup_by: str | None = None
    wait_s: float | None = None
    agi_status: str = ""
    # Time the caller's channel spent in queues, and bridged with agents (the truth for the
    # figures of the record, as the tracker and Asterisk's queue_log measure them).
    queued_s: float = 0.0
    talk_s: float = 0.0


class SimCall:
    def __init__(
        self,
        pbx: Pbx,
        dialplan: Dialplan,
        behaviour: AgentBehaviour,
        rng: random.Random,
        profile: CallerProfile,
        number: str | None,
        *,
        agi: AgiRunner | None,
        time_scale: float = 1.0,
        label: str = "",
    ) -> None:
        self.pbx = pbx
        self.dialplan = dialplan
        self.behaviour = behaviour
        self.rng = rng
        self.profile = profile
        self.number = number
        self.agi = agi
        self.scale = time_scale
        self.label = label
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.legs: list[Leg] = []
        self._channels: list[Channel] = []  # every channel this call created
        self._timers: set[asyncio.Task[None]] = set()
        self._patience: asyncio.Task[None] | None = None
        self._started = pbx.clock()
        self.caller, self.trunk = local_pair(pbx.ids, dialplan.did, "from-pstn")
        self.summary = CallSummary(self.caller.linkedid, number, profile.kind)

    # -- inbox ------------------------------------------------------------------------------
    def post(self, *message: Any) -> None:
        self.inbox.put_nowait(message)

    def _later(self, delay: float, *message: Any) -> asyncio.Task[None]:
        async def fire() -> None:
            await asyncio.sleep(max(0.0, delay * self.scale))
            self.post(*message)

        task = asyncio.create_task(fire())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)
        return task

    def _add(self, channel: Channel) -> None:
        self._channels.append(channel)
        self.pbx.add_channel(channel, self)

    def _uniform(self, bounds: tuple[float, float]) -> float:
        return self.rng.uniform(*bounds)

    # -- the dialplan -----------------------------------------------------------------------
    async def run(self) -> CallSummary:
        try:
            self._arrive()
            target: str | None = await self._route()
            while target is not None:
                # QUEUE_PRIO from CTI_PRIORITY, as [from-pstn] and [transfer] compute it: the
                # router sets it, an escalation (Setvar before Redirect) raises it.
                target = await self._queue_phase(target, self._queue_prio())
        finally:
            for task in list(self._timers):
                task.cancel()
            self._release_everything()
        return self.summary

    def _arrive(self) -> None:
        """The trunk delivers the call: a Local pair whose ``;2`` runs ``[from-pstn]``."""
        pbx, caller, trunk = self.pbx, self.caller, self.trunk
        self._add(caller)
        self._add(trunk)
        if self.number is not None:
            for channel in (caller, trunk):
                channel.caller_num = channel.connected_num = self.number
                channel.caller_name = channel.connected_name = self.profile.name
                pbx.channel_event("NewCallerid", channel, ("CID-CallingPres", _ALLOWED))
                pbx.channel_event("NewConnectedLine", channel)
        pbx.emit(
            "LocalBridge",
            "call",
            [
                *caller.headers("LocalOne"),
                *trunk.headers("LocalTwo"),
                ("Context", "from-pstn"),
                ("Exten", self.dialplan.did),
                ("LocalOptimization", "Yes"),
            ],
        )
        pbx.emit(
            "DialBegin",
            "call",
            [*caller.headers("Dest"), ("DialString", f"{self.dialplan.did}@from-pstn")],
        )
        trunk.priority = 5
        pbx.new_state(trunk, UP)
        pbx.new_state(caller, UP)
        pbx.emit(
            "OriginateResponse",
            "call",
            [
                ("ActionID", f"sim-call-{self.label or caller.uniqueid}"),
                ("Response", "Success"),
                ("Channel", caller.name),
                ("Context", "caller-sim"),
                ("Exten", "talk"),
                ("Reason", "4"),
                ("Uniqueid", caller.uniqueid),
                ("CallerIDNum", caller.caller_num),
                ("CallerIDName", caller.caller_name),
            ],
        )
        pbx.emit("DialEnd", "call", [*caller.headers("Dest"), ("DialStatus", "ANSWER")])
        caller.context, caller.exten, caller.priority = "caller-sim", "talk", 1
        caller.application, caller.app_data = "Wait", "7200"
        if self.number is None:  # the trunk presents a withheld number: presentation, then number
            trunk.priority = 2
            trunk.caller_num, trunk.caller_name = "anonymous", "Anonymous"
            pbx.channel_event("NewCallerid", trunk, ("CID-CallingPres", _PROHIBITED))

    def _queue_prio(self) -> int:
        text = self.trunk.variables.get("CTI_PRIORITY", "")
        return int(text) if _PRIO.match(text) else 0

    async def _route(self) -> str:
        """``AGI(agi://cti:4573/route,${EXTEN})``, then the fallback rules of ``[from-pstn]``."""
        trunk, dialplan = self.trunk, self.dialplan
        trunk.priority = 6
        self.pbx.set_var(trunk, "__CTI_DID", dialplan.did)
        status, variables = "FAILURE", {}
        if self.agi is not None:
            request = AgiRequest(
                channel=trunk.name,
                uniqueid=trunk.uniqueid,
                callerid=self.number if self.number is not None else "anonymous",
                calleridname=self.profile.name if self.number is not None else "Anonymous",
                callingpres=0 if self.number is not None else 35,
                context="from-pstn",
                extension=dialplan.did,
                priority=6,
                args=(dialplan.did,),
            )
            builtins = {
                "CALLERID(num)": request.callerid,
                "CALLERID(name)": request.calleridname,
                "CTI_DID": dialplan.did,
                "UNIQUEID": trunk.uniqueid,
            }
            result = await self.agi(request, builtins, lambda k, v: self.pbx.set_var(trunk, k, v))
            status, variables = result.status, result.variables
            if result.error:
                log.warning("sim.agi_failed", error=result.error, linkedid=self.caller.linkedid)
        self.summary.agi_status = status
        self.pbx.set_var(trunk, "AGISTATUS", status)
        queue = variables.get("CTI_QUEUE", "")
        if queue not in self.pbx.queues:
            queue = dialplan.default_queue
        trunk.variables.update(variables)
        self.pbx.set_var(trunk, "QUEUE_PRIO", str(self._queue_prio()))
        return queue

    # -- waiting in a queue -----------------------------------------------------------------
    async def _queue_phase(self, name: str, priority: int) -> str | None:
        pbx, trunk = self.pbx, self.trunk
        queue = pbx.queues[name]
        self.summary.queues.append(name)
        trunk.priority = 11 if trunk.context == "from-pstn" else 4
        trunk.application, trunk.app_data = "Queue", f"{name},t,,,300"
        entry = pbx.join(queue, self, priority)
        self._enter_queue_log(queue, entry, trunk)
        pbx.channel_event(
            "QueueCallerJoin",
            trunk,
            ("Queue", name),
            ("Position", str(queue.position(entry))),
            ("Count", str(len(queue.entries))),
        )
        pbx.channel_event("MusicOnHoldStart", trunk, ("Class", "default"))
        self._patience = self._later(self._uniform(self.profile.patience_s), "patience", entry)
        pbx.dispatch(queue)
        while True:
            message = await self.inbox.get()
            kind = message[0]
            if kind == "ring_end":
                leg, answered = message[1], message[2]
                if leg not in self.legs:
                    continue
                if answered:
                    return await self._connect(queue, entry, leg)
                self._ring_no_answer(leg)
                if not self.legs:
                    entry.ringing, entry.ready = False, False
                    self._later(queue.retry_s, "retry", entry)
            elif kind == "retry" and message[1] is entry:
                entry.ready = True
                pbx.dispatch(queue)
            elif kind == "patience" and message[1] is entry:
                self._abandon(queue, entry)
                return None
            elif kind == "hangup":
                channel = message[1]
                if channel in (self.caller, self.trunk):
                    self._abandon(queue, entry)
                    return None
                leg = next((leg for leg in self.legs if channel in (leg.one, leg.two)), None)
                if leg is not None:
                    self._ring_no_answer(leg, reject=True)
                    if not self.legs:
                        entry.ringing, entry.ready = False, False
                        self._later(queue.retry_s, "retry", entry)
            elif kind == "redirect":
                context, exten = message[1], message[2]
                return self._redirect_from_queue(queue, entry, context, exten)

    def _enter_queue_log(self, queue: SimQueue, entry: Entry, channel: Channel) -> None:
        """The shipped dialplan's ``QueueLog(...,CTI_LINKEDID,${CHANNEL(linkedid)})`` before
        ``Queue()``, then app_queue's ENTERQUEUE (url|caller ID|position; the number only
        when its presentation is allowed)."""
        pbx = self.pbx
        pbx.queue_log_row(queue.name, channel.uniqueid, "NONE", "CTI_LINKEDID", channel.linkedid)
        number = "" if self.number is None else channel.caller_num
        pbx.queue_log_row(
            queue.name, channel.uniqueid, "NONE", "ENTERQUEUE", "", number, entry.original_position
        )

    def _exit_queue_log(self, queue: SimQueue, entry: Entry, channel: Channel) -> None:
        """ABANDON: the caller hung up, or was redirected out (Asterisk logs it so)."""
        pbx = self.pbx
        wait = int(pbx.clock()) - int(entry.joined)
        position = queue.position(entry)
        pbx.queue_log_row(
            queue.name, channel.uniqueid, "NONE", "ABANDON", position, entry.original_position, wait
        )

    def offer(self, queue: SimQueue, entry: Entry, members: list[Member]) -> None:
        """Called by the queue dispatcher: ring these members' phones now."""
        for member in members:
            self._ring(queue, member, entry.channel or self.trunk, entry)

    def _ring(self, queue: SimQueue, member: Member, trunk: Channel, entry: Entry) -> None:
        pbx = self.pbx
        exten = member.phone.exten
        one, two = local_pair(pbx.ids, exten, "agents", self.caller.linkedid)
        self._add(one)
        self._add(two)
        one.application, one.app_data = "AppQueue", "(Outgoing Line)"  # as Asterisk 22 lists it
        two.application, two.app_data = "Wait", "7200"
        one.caller_num, one.caller_name = trunk.caller_num, trunk.caller_name
        pbx.channel_event("NewCallerid", one, ("CID-CallingPres", _ALLOWED))
        two.caller_num, two.caller_name = trunk.caller_num, trunk.caller_name
        two.connected_num, two.connected_name = trunk.caller_num, trunk.caller_name
        pbx.channel_event("NewCallerid", two, ("CID-CallingPres", _ALLOWED))
        pbx.channel_event("NewConnectedLine", two)
        pbx.emit(
            "LocalBridge",
            "call",
            [
                *one.headers("LocalOne"),
                *two.headers("LocalTwo"),
                ("Context", "agents"),
                ("Exten", exten),
                ("LocalOptimization", "No"),
            ],
        )
        dialled = replace(
            one,
            exten=self.dialplan.did,
            connected_num=trunk.caller_num,
            connected_name=trunk.caller_name,
        )
        member_headers = [("Queue", queue.name), ("Interface", member.interface)]
        pbx.emit(
            "AgentCalled",
            "agent",
            [
                *trunk.headers(),
                *dialled.headers("Dest"),
                *member_headers,
                ("MemberName", member.name),
            ],
        )
        pbx.emit(
            "DialBegin",
            "call",
            [*trunk.headers(), *one.headers("Dest"), ("DialString", member.interface)],
        )
        pbx.set_phone(member.phone, "ringing")
        one.exten, one.connected_num, one.connected_name = (
            self.dialplan.did,
            trunk.caller_num,
            trunk.caller_name,
        )
        pbx.new_state(one, RINGING)
        pbx.channel_event("NewConnectedLine", one)
        pbx.emit(
            "DialState", "call", [*trunk.headers(), *one.headers("Dest"), ("DialStatus", "RINGING")]
        )
        leg = Leg(member, queue, one, two, pbx.clock(), trunk, entry)
        answers = self.rng.random() >= self.behaviour.miss_rate
        delay = self._uniform(self.behaviour.ring_s)
        if not answers or delay >= queue.timeout_s:
            answers, delay = False, queue.timeout_s
        leg.timer = self._later(delay, "ring_end", leg, answers)
        self.legs.append(leg)

    def _drop_leg(self, leg: Leg, status: str, cause: int) -> None:
        """A ringing phone stops ringing: DialEnd, then both halves of its Local pair go."""
        pbx = self.pbx
        if leg.timer is not None:
            leg.timer.cancel()
        self.legs.remove(leg)
        pbx.emit(
            "DialEnd",
            "call",
            [*leg.waiting.headers(), *leg.one.headers("Dest"), ("DialStatus", status)],
        )
        pbx.channel_event("HangupRequest", leg.two, ("Cause", str(cause)))
        pbx.hangup(leg.one, cause, soft=False)
        pbx.hangup(leg.two, cause)
        pbx.set_phone(leg.member.phone, "idle")

    def _ring_no_answer(self, leg: Leg, reject: bool = False) -> None:
        ring_ms = int((self.pbx.clock() - leg.started) * 1000)
        self.pbx.queue_log_row(
            leg.queue.name, leg.waiting.uniqueid, leg.member.name, "RINGNOANSWER", ring_ms
        )
        if not reject:
            self.pbx.emit(
                "AgentRingNoAnswer",
                "agent",
                [
                    *leg.waiting.headers(),
                    *leg.one.headers("Dest"),
                    ("Queue", leg.queue.name),
                    ("Interface", leg.member.interface),
                    ("MemberName", leg.member.name),
                    ("RingTime", str(ring_ms)),
                ],
            )
        self._drop_leg(leg, "BUSY" if reject else "NOANSWER", 17 if reject else 0)

    def _cancel_legs(self, cause: int = 26) -> None:
        for leg in list(self.legs):
            self._drop_leg(leg, "CANCEL", cause)

    def _leave_queue(self, queue: SimQueue, entry: Entry) -> int:
        if self._patience is not None:
            self._patience.cancel()
        position = self.pbx.leave(queue, entry)
        self.pbx.channel_event(
            "QueueCallerLeave",
            self.trunk,
            ("Queue", queue.name),
            ("Position", str(position)),
            ("Count", str(len(queue.entries))),
        )
        return position

    def _abandon(self, queue: SimQueue, entry: Entry) -> None:
        pbx, caller, trunk = self.pbx, self.caller, self.trunk
        pbx.channel_event("SoftHangupRequest", caller, ("Cause", "16"))
        pbx.channel_event("HangupRequest", trunk, ("Cause", "16"))
        pbx.hangup(caller, 16, soft=False)
        for leg in self.legs:
            ring_ms = int((pbx.clock() - leg.started) * 1000)
            pbx.queue_log_row(queue.name, trunk.uniqueid, leg.member.name, "RINGCANCELED", ring_ms)
        self._cancel_legs(cause=0)
        self._exit_queue_log(queue, entry, trunk)
        self.summary.queued_s += pbx.clock() - entry.joined
        hold = int(pbx.clock() - entry.joined)
        pbx.channel_event(
            "QueueCallerAbandon",
            trunk,
            ("Queue", queue.name),
            ("Position", str(queue.position(entry))),
            ("OriginalPosition", str(entry.original_position)),
            ("HoldTime", str(hold)),
        )
        queue.abandoned += 1
        self._leave_queue(queue, entry)
        pbx.hangup(trunk, 16)
        if not self.summary.agents:
            self.summary.abandoned = True
        self.summary.hangup_by = "caller"

    def _redirect_from_queue(
        self, queue: SimQueue, entry: Entry, context: str, exten: str
    ) -> str | None:
        """AMI Redirect of a waiting caller: Asterisk reports an abandon, then a leave."""
        pbx, trunk = self.pbx, self.trunk
        self._cancel_legs(cause=0)
        self._exit_queue_log(queue, entry, trunk)
        self.summary.queued_s += pbx.clock() - entry.joined
        trunk.context, trunk.exten, trunk.priority = context, exten, 1
        pbx.channel_event(
            "QueueCallerAbandon",
            trunk,
            ("Queue", queue.name),
            ("Position", str(queue.position(entry))),
            ("OriginalPosition", str(entry.original_position)),
            ("HoldTime", str(int(pbx.clock() - entry.joined))),
        )
        self._leave_queue(queue, entry)
        return self._goto(context, exten)

    def _goto(self, context: str, exten: str) -> str | None:
        """Where the dialplan sends the caller next; an unknown extension hangs the call up."""
        target = self.dialplan.queue_for(context, exten)
        self.trunk.context, self.trunk.exten, self.trunk.priority = context, exten, 1
        if target is None or target not in self.pbx.queues:
            self.pbx.channel_event("HangupRequest", self.caller, ("Cause", "16"))
            self.pbx.hangup(self.trunk, 16)
            self.pbx.hangup(self.caller, 16)
            self.summary.hangup_by = self.summary.hangup_by or "system"
            return None
        self.pbx.set_var(self.trunk, "CTI_QUEUE", target)
        return target

    # -- talking ----------------------------------------------------------------------------
    async def _connect(self, queue: SimQueue, entry: Entry, leg: Leg) -> str | None:
        pbx, trunk = self.pbx, self.trunk
        if leg.timer is not None:
            leg.timer.cancel()
        self.legs.remove(leg)
        pbx.new_state(leg.one, UP)
        leg.two.priority = 14
        pbx.new_state(leg.two, UP)
        pbx.emit(
            "DialEnd",
            "call",
            [*trunk.headers(), *leg.one.headers("Dest"), ("DialStatus", "ANSWER")],
        )
        self._cancel_legs(cause=26)
        pbx.channel_event("MusicOnHoldStop", trunk)
        self._leave_queue(queue, entry)
        now = pbx.clock()
        hold = int(now - entry.joined)
        self._connect_queue_log(leg, now)
        self.summary.queued_s += now - entry.joined
        pbx.emit(
            "AgentConnect",
            "agent",
            [
                *trunk.headers(),
                *leg.one.headers("Dest"),
                ("Queue", queue.name),
                ("Interface", leg.member.interface),
                ("MemberName", leg.member.name),
                ("HoldTime", str(hold)),
                ("RingTime", str(int(now - leg.started))),
            ],
        )
        pbx.bridge(leg.one, trunk)
        pbx.set_phone(leg.member.phone, "busy")
        if self.summary.wait_s is None:
            self.summary.wait_s = round(now - self._started, 3)
        if leg.member.name not in self.summary.agents:
            self.summary.agents.append(leg.member.name)
        queue.completed += 1
        queue.holdtime_total += hold
        return await self._talk(queue, leg, now)

    def _connect_queue_log(self, leg: Leg, now: float) -> None:
        """CONNECT: hold time | the member channel's Uniqueid | ring time (seconds)."""
        leg.connected = now
        self.pbx.queue_log_row(
            leg.queue.name,
            leg.waiting.uniqueid,
            leg.member.name,
            "CONNECT",
            int(now) - int(leg.entry.joined),
            leg.one.uniqueid,
            int(now - leg.started),
        )

    def _complete_queue_log(self, leg: Leg, reason: str, transfer: tuple[str, ...] = ()) -> None:
        """COMPLETECALLER/COMPLETEAGENT (hold | talk | position), or a transfer's row with
        its destination first (BLINDTRANSFER exten|context, ATTENDEDTRANSFER BRIDGE|id)."""
        now = self.pbx.clock()
        connected = leg.connected if leg.connected is not None else now
        event = {"caller": "COMPLETECALLER", "agent": "COMPLETEAGENT"}.get(reason)
        if event is None:
            event = "BLINDTRANSFER" if transfer and transfer[0] != "BRIDGE" else "ATTENDEDTRANSFER"
        self.pbx.queue_log_row(
            leg.queue.name,
            leg.waiting.uniqueid,
            leg.member.name,
            event,
            *transfer,
            int(connected) - int(leg.entry.joined),
            int(now) - int(connected),
            leg.entry.original_position,
        )

    def _ending(self, queue: SimQueue, transfers: bool = True) -> TalkEnd:
        endings = dict(self.behaviour.endings)
        target = self.dialplan.queue_for(
            self.dialplan.transfer_context, self.dialplan.escalation.get(queue.name, "")
        )
        if not transfers or target not in self.pbx.queues:
            endings.pop("blind", None)
            endings.pop("attended", None)
        if not endings:
            endings = {"caller": 1.0}
        kinds = list(endings)
        return self.rng.choices(kinds, weights=[endings[k] for k in kinds])[0]

    async def _talk(
        self, queue: SimQueue, leg: Leg, answered_at: float, transfers: bool = True
    ) -> str | None:
        timer = self._later(
            self._uniform(self.behaviour.talk_s), "talk_end", leg, self._ending(queue, transfers)
        )
        try:
            return await self._talk_until_end(queue, leg, answered_at)
        finally:
            timer.cancel()

    async def _talk_until_end(self, queue: SimQueue, leg: Leg, answered_at: float) -> str | None:
        while True:
            message = await self.inbox.get()
            kind = message[0]
            if kind == "talk_end" and message[1] is leg:
                ending = message[2]
                if ending == "caller":
                    self._caller_hangs_up(leg, answered_at)
                    return None
                if ending == "agent":
                    self._agent_hangs_up(leg, answered_at)
                    return None
                exten = self.dialplan.escalation[queue.name]
                if ending == "attended":
                    return await self._attended(queue, leg, answered_at, exten)
                return self._blind(leg, answered_at, self.dialplan.transfer_context, exten)
            if kind == "blind":
                return self._blind(leg, answered_at, message[1], message[2])
            if kind == "atxfer":
                context, exten = message[1], message[2]
                target = self.dialplan.queue_for(context, exten)
                if target in self.pbx.queues and context == self.dialplan.transfer_context:
                    return await self._attended(queue, leg, answered_at, exten)
            if kind == "redirect":
                return self._redirect_from_bridge(leg, answered_at, message[1], message[2])
            if kind == "hangup":
                channel = message[1]
                if channel in (self.caller, self.trunk):
                    self._caller_hangs_up(leg, answered_at)
                    return None
                if channel in (leg.one, leg.two):
                    self._agent_hangs_up(leg, answered_at)
                    return None

    def _agent_complete(
        self, leg: Leg, answered_at: float, reason: str, transfer: tuple[str, ...] = ()
    ) -> None:
        self._complete_queue_log(leg, reason, transfer)
        self.summary.talk_s += self.pbx.clock() - answered_at
        talk = self._emit_agent_complete(
            leg, answered_at, reason, [*leg.waiting.headers(), *leg.one.headers("Dest")]
        )
        leg.queue.talktime_total += talk

    def _emit_agent_complete(
        self,
        leg: Leg,
        answered_at: float,
        reason: str,
        channels: Headers,
    ) -> int:
        """Emit AgentComplete for ``leg`` after ``channels``' headers; returns the talk time."""
        talk = int(self.pbx.clock() - answered_at)
        self.pbx.emit(
            "AgentComplete",
            "agent",
            [
                *channels,
                ("Queue", leg.queue.name),
                ("Interface", leg.member.interface),
                ("MemberName", leg.member.name),
                ("HoldTime", str(int(answered_at - self._started))),
                ("TalkTime", str(talk)),
                ("Reason", reason),
            ],
        )
        return talk

    def _agent_done(self, leg: Leg) -> None:
        member = leg.member
        for m in self.pbx.members_of(member.phone):
            if m.queue == leg.queue.name:
                m.calls_taken += 1
                m.last_call = int(self.pbx.clock())
        self.pbx.set_phone(member.phone, "idle")

    def _caller_hangs_up(self, leg: Leg, answered_at: float) -> None:
        pbx, caller, trunk = self.pbx, self.caller, self.trunk
        pbx.channel_event("SoftHangupRequest", caller, ("Cause", "16"))
        pbx.channel_event("HangupRequest", trunk, ("Cause", "16"))
        pbx.hangup(caller, 16, soft=False)
        self._agent_complete(leg, answered_at, "caller")
        pbx.leave_bridge(trunk)
        pbx.hangup(trunk, 16)
        bridge = pbx.leave_bridge(leg.one, destroy=False)
        pbx.channel_event("HangupRequest", leg.two, ("Cause", "16"))
        pbx.hangup(leg.one, 16, soft=False)
        pbx.destroy_bridge(bridge)
        leg.two.exten, leg.two.priority = "h", 2
        pbx.hangup(leg.two, 16)
        self._agent_done(leg)
        self.summary.hangup_by = "caller"

    def _agent_hangs_up(self, leg: Leg, answered_at: float) -> None:
        pbx, caller, trunk = self.pbx, self.caller, self.trunk
        pbx.channel_event("SoftHangupRequest", leg.two, ("Cause", "16"))
        pbx.channel_event("HangupRequest", leg.one, ("Cause", "16"))
        self._agent_complete(leg, answered_at, "agent")
        pbx.hangup(leg.two, 16, soft=False)
        pbx.leave_bridge(leg.one)
        pbx.hangup(leg.one, 16, soft=False)
        pbx.leave_bridge(trunk)
        pbx.channel_event("SoftHangupRequest", trunk, ("Cause", "16"))
        pbx.channel_event("HangupRequest", caller, ("Cause", "16"))
        pbx.hangup(trunk, 16, soft=False)
        pbx.hangup(caller, 16)
        self._agent_done(leg)
        self.summary.hangup_by = "agent"

    def _release_agent(self, leg: Leg) -> None:
        """The agent's legs leave the bridge and hang up after the caller was moved on."""
        pbx = self.pbx
        bridge = pbx.leave_bridge(leg.one, destroy=False)
        pbx.channel_event("HangupRequest", leg.two, ("Cause", "16"))
        pbx.hangup(leg.one, 16, soft=False)
        pbx.destroy_bridge(bridge)
        pbx.hangup(leg.two, 16)
        self._agent_done(leg)

    def _blind(self, leg: Leg, answered_at: float, context: str, exten: str) -> str | None:
        pbx, trunk = self.pbx, self.trunk
        bridge = trunk.bridge
        pbx.channel_event("Unhold", leg.one)
        pbx.emit(
            "BlindTransfer",
            "call",
            [
                ("Result", "Success"),
                *leg.one.headers("Transferer"),
                *trunk.headers("Transferee"),
                *(bridge.headers() if bridge is not None else []),
                ("IsExternal", "Yes"),
                ("Context", context),
                ("Extension", exten),
            ],
        )
        self.summary.transfers.append({"kind": "blind", "from": leg.member.name, "to": exten})
        trunk.context, trunk.exten, trunk.priority = context, exten, 1
        self._agent_complete(leg, answered_at, "transfer", (exten, context))
        pbx.leave_bridge(trunk)
        self._release_agent(leg)
        return self._goto(context, exten)

    def _redirect_from_bridge(
        self, leg: Leg, answered_at: float, context: str, exten: str
    ) -> str | None:
        pbx, trunk = self.pbx, self.trunk
        trunk.context, trunk.exten, trunk.priority = context, exten, 1
        self._agent_complete(leg, answered_at, "caller")
        pbx.leave_bridge(trunk)
        self._release_agent(leg)
        return self._goto(context, exten)

    # -- attended transfer ------------------------------------------------------------------
    async def _attended(
        self, queue: SimQueue, leg: Leg, answered_at: float, exten: str
    ) -> str | None:
        """The agent consults the next tier (Atxfer to its [transfer] extension), then hands
        the caller over; if nobody there answers in time the agent takes the caller back.

        Shape as recorded in ``attended_transfer_tier1_to_tier2``: the consultation is a Local
        pair ``Local/<exten>@transfer-XXXXXXXX;1/;2`` whose ``;2`` waits in the target queue;
        completing merges the consultation bridge into the caller's, and the Local pair stays.
        """
        pbx, trunk = self.pbx, self.trunk
        context = self.dialplan.transfer_context
        target = pbx.queues[self.dialplan.queue_for(context, exten) or ""]
        caller_bridge = trunk.bridge
        pbx.channel_event("Hold", leg.one)
        pbx.channel_event("MusicOnHoldStart", trunk, ("Class", "default"))
        near, far = local_pair(pbx.ids, exten, context, self.caller.linkedid)
        self._add(near)
        self._add(far)
        consult_bridge = pbx.new_bridge()
        far.caller_num, far.caller_name = trunk.caller_num, trunk.caller_name
        pbx.channel_event("NewCallerid", far, ("CID-CallingPres", _ALLOWED))
        pbx.emit(
            "LocalBridge",
            "call",
            [
                *near.headers("LocalOne"),
                *far.headers("LocalTwo"),
                ("Context", context),
                ("Exten", exten),
                ("LocalOptimization", "Yes"),
            ],
        )
        near.connected_num, near.connected_name = trunk.caller_num, trunk.caller_name
        pbx.channel_event("NewConnectedLine", near)
        pbx.enter(consult_bridge, near)
        pbx.leave_bridge(leg.one, destroy=False)
        pbx.enter(consult_bridge, leg.one)
        far.priority = 4
        entry = pbx.join(target, self, 0, channel=far)
        self._enter_queue_log(target, entry, far)
        pbx.channel_event(
            "QueueCallerJoin",
            far,
            ("Queue", target.name),
            ("Position", str(target.position(entry))),
            ("Count", str(len(target.entries))),
        )
        pbx.channel_event("MusicOnHoldStart", far, ("Class", "default"))
        giveup = self._later(self._uniform(self.profile.patience_s) / 2, "consult_giveup", entry)
        pbx.dispatch(target)
        try:
            while True:
                message = await self.inbox.get()
                kind = message[0]
                if kind == "ring_end" and message[1] in self.legs:
                    specialist, answered = message[1], message[2]
                    if not answered:
                        self._ring_no_answer(specialist)
                        if not self.legs:
                            entry.ringing, entry.ready = False, False
                            self._later(target.retry_s, "retry", entry)
                        continue
                    self._consult_answered(target, entry, specialist, near, far)
                    giveup.cancel()
                    await asyncio.sleep(self._uniform((1.0, 3.0)) * self.scale)
                    self._complete_attended(leg, answered_at, caller_bridge, consult_bridge, near)
                    await self._talk_after_attended(target, specialist, near, far)
                    return None
                if kind == "retry" and message[1] is entry:
                    entry.ready = True
                    pbx.dispatch(target)
                elif (kind == "consult_giveup" and message[1] is entry) or (
                    kind == "hangup" and message[1] in (self.caller, self.trunk)
                ):
                    self._cancel_consult(target, entry, leg, near, far, caller_bridge)
                    if kind == "hangup":
                        self._caller_hangs_up(leg, answered_at)
                        return None
                    return await self._talk(queue, leg, answered_at, transfers=False)
        finally:
            giveup.cancel()

    def _consult_answered(
        self, target: SimQueue, entry: Entry, specialist: Leg, near: Channel, far: Channel
    ) -> None:
        pbx = self.pbx
        if specialist.timer is not None:
            specialist.timer.cancel()
        self.legs.remove(specialist)
        specialist.two.priority = 14
        pbx.new_state(specialist.two, UP)
        pbx.new_state(specialist.one, UP)
        pbx.emit(
            "DialEnd",
            "call",
            [*far.headers(), *specialist.one.headers("Dest"), ("DialStatus", "ANSWER")],
        )
        self._cancel_legs(cause=26)
        pbx.channel_event("MusicOnHoldStop", far)
        self._leave_queue_channel(target, entry, far)
        now = pbx.clock()
        self._connect_queue_log(specialist, now)
        pbx.emit(
            "AgentConnect",
            "agent",
            [
                *far.headers(),
                *specialist.one.headers("Dest"),
                ("Queue", target.name),
                ("Interface", specialist.member.interface),
                ("MemberName", specialist.member.name),
                ("HoldTime", str(int(now - entry.joined))),
                ("RingTime", str(int(now - specialist.started))),
            ],
        )
        pbx.new_state(far, UP)
        pbx.bridge(specialist.one, far)
        pbx.new_state(near, UP)
        pbx.emit("DialEnd", "call", [*near.headers("Dest"), ("DialStatus", "ANSWER")])
        pbx.set_phone(specialist.member.phone, "busy")
        target.completed += 1
        self.summary.queues.append(target.name)

    def _complete_attended(
        self,
        leg: Leg,
        answered_at: float,
        caller_bridge: Bridge | None,
        consult_bridge: Bridge,
        near: Channel,
    ) -> None:
        """The first agent hangs up: the consultation bridge merges into the caller's."""
        pbx, trunk = self.pbx, self.trunk
        pbx.channel_event("SoftHangupRequest", leg.two, ("Cause", "16"))
        pbx.channel_event("HangupRequest", leg.one, ("Cause", "16"))
        pbx.leave_bridge(leg.one, destroy=False)
        if caller_bridge is not None:
            pbx.emit(
                "BridgeMerge",
                "call",
                [*caller_bridge.headers("To"), *consult_bridge.headers("From")],
            )
        pbx.leave_bridge(near, destroy=False)
        if caller_bridge is not None:
            pbx.enter(caller_bridge, near)
        pbx.channel_event("MusicOnHoldStop", trunk)
        pbx.emit(
            "AttendedTransfer",
            "call",
            [
                ("Result", "Success"),
                *leg.one.headers("OrigTransferer"),
                *(caller_bridge.headers("Orig") if caller_bridge is not None else []),
                *leg.one.headers("SecondTransferer"),
                *consult_bridge.headers("Second"),
                *trunk.headers("Transferee"),
                ("IsExternal", "No"),
                ("DestType", "Bridge"),
                ("DestBridgeUniqueid", caller_bridge.uniqueid if caller_bridge else ""),
            ],
        )
        pbx.destroy_bridge(consult_bridge)
        pbx.hangup(leg.one, 16, soft=False)
        bridge_id = caller_bridge.uniqueid if caller_bridge is not None else ""
        self._complete_queue_log(leg, "transfer", ("BRIDGE", bridge_id))
        self.summary.talk_s += pbx.clock() - answered_at
        self._emit_agent_complete(leg, answered_at, "transfer", trunk.headers())
        leg.two.exten, leg.two.priority = "h", 2
        pbx.hangup(leg.two, 16, soft=False)
        self._agent_done(leg)
        self.summary.transfers.append(
            {"kind": "attended", "from": leg.member.name, "to": near.exten}
        )

    async def _talk_after_attended(
        self, target: SimQueue, specialist: Leg, near: Channel, far: Channel
    ) -> None:
        """Caller ~ Local pair ~ specialist until one side hangs up."""
        pbx, caller, trunk = self.pbx, self.caller, self.trunk
        answered_at = pbx.clock()
        if specialist.member.name not in self.summary.agents:
            self.summary.agents.append(specialist.member.name)
        ending = self._ending(target, transfers=False)
        timer = self._later(self._uniform(self.behaviour.talk_s), "talk_end", specialist, ending)
        try:
            while True:
                message = await self.inbox.get()
                kind = message[0]
                by_caller = (
                    kind == "talk_end" and message[1] is specialist and message[2] != "agent"
                ) or (kind == "hangup" and message[1] in (caller, trunk))
                by_agent = (
                    kind == "talk_end" and message[1] is specialist and message[2] == "agent"
                ) or (kind == "hangup" and message[1] in (specialist.one, specialist.two))
                if by_caller:
                    pbx.channel_event("SoftHangupRequest", caller, ("Cause", "16"))
                    pbx.channel_event("HangupRequest", trunk, ("Cause", "16"))
                    pbx.hangup(caller, 16, soft=False)
                    pbx.leave_bridge(trunk)
                    pbx.hangup(trunk, 16)
                    pbx.leave_bridge(near)
                    pbx.hangup(near, 16)
                    self._agent_complete(specialist, answered_at, "caller")
                    pbx.leave_bridge(far)
                    pbx.hangup(far, 16)
                    self._release_agent(specialist)
                    self.summary.hangup_by = "caller"
                    return
                if by_agent:
                    pbx.channel_event("SoftHangupRequest", specialist.two, ("Cause", "16"))
                    pbx.channel_event("HangupRequest", specialist.one, ("Cause", "16"))
                    self._agent_complete(specialist, answered_at, "agent")
                    pbx.hangup(specialist.two, 16, soft=False)
                    pbx.leave_bridge(specialist.one)
                    pbx.hangup(specialist.one, 16, soft=False)
                    pbx.leave_bridge(far)
                    pbx.hangup(far, 16)
                    pbx.leave_bridge(near)
                    pbx.hangup(near, 16)
                    pbx.leave_bridge(trunk)
                    pbx.channel_event("HangupRequest", caller, ("Cause", "16"))
                    pbx.hangup(trunk, 16)
                    pbx.hangup(caller, 16)
                    self._agent_done(specialist)
                    self.summary.hangup_by = "agent"
                    return
        finally:
            timer.cancel()

    def _cancel_consult(
        self,
        target: SimQueue,
        entry: Entry,
        leg: Leg,
        near: Channel,
        far: Channel,
        caller_bridge: Bridge | None,
    ) -> None:
        """Nobody answered the consultation: the agent drops it and takes the caller back."""
        pbx = self.pbx
        self._cancel_legs(cause=0)
        pbx.channel_event("HangupRequest", far, ("Cause", "16"))
        pbx.leave_bridge(near, destroy=False)
        pbx.hangup(near, 16, soft=False)
        self._exit_queue_log(target, entry, far)
        pbx.channel_event(
            "QueueCallerAbandon",
            far,
            ("Queue", target.name),
            ("Position", str(target.position(entry))),
            ("OriginalPosition", str(entry.original_position)),
            ("HoldTime", str(int(pbx.clock() - entry.joined))),
        )
        self._leave_queue_channel(target, entry, far)
        pbx.hangup(far, 16)
        pbx.leave_bridge(leg.one)  # the consultation bridge is now empty and goes
        if caller_bridge is not None:
            pbx.enter(caller_bridge, leg.one)
        pbx.channel_event("Unhold", leg.one)
        pbx.channel_event("MusicOnHoldStop", self.trunk)

    def _leave_queue_channel(self, queue: SimQueue, entry: Entry, channel: Channel) -> None:
        position = self.pbx.leave(queue, entry)
        self.pbx.channel_event(
            "QueueCallerLeave",
            channel,
            ("Queue", queue.name),
            ("Position", str(position)),
            ("Count", str(len(queue.entries))),
        )

    # -- teardown ---------------------------------------------------------------------------
    def _release_everything(self) -> None:
        """On shutdown or error: free phones and forget channels, without further events."""
        for leg in self.legs:
            leg.member.phone.state = "idle"
        self.legs.clear()
        for queue in self.pbx.queues.values():
            for entry in [e for e in queue.entries if e.call is self]:
                queue.entries.remove(entry)
        for channel in self._channels:
            name = channel.name
            if self.pbx.channels.get(name) is channel:
                if channel.bridge is not None:
                    channel.bridge.channels.remove(channel)
                    if not channel.bridge.channels:
                        self.pbx.bridges.pop(channel.bridge.uniqueid, None)
                del self.pbx.channels[name]
                if name.startswith("Local/") and "@agents-" in name:
                    exten = name.split("/", 1)[1].split("@", 1)[0]
                    phone = self.pbx.phones.get(exten)
                    if phone is not None:
                        phone.state = "idle"
