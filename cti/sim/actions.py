"""AMI actions the simulator understands, answered with Asterisk 22's exact wording.

Wording, header order and list framing are those of
``../shared/ami-traces/asterisk22/protocol/`` (``actions_call_control``, ``actions_misc``,
``resync_mid_call``, ``permission_denied``). An action the simulator does not implement gets
Asterisk's answer to an unknown action.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from cti.sim.channels import RINGING, UNKNOWN, UP, Channel, local_pair
from cti.sim.pbx import Member, Pbx
from cti.sim.wire import Action, Headers

# Write class an action needs (any one of them). Absent: no class needed.
WRITE_CLASS: dict[str, frozenset[str]] = {
    "originate": frozenset({"originate"}),
    "redirect": frozenset({"call"}),
    "blindtransfer": frozenset({"call"}),
    "atxfer": frozenset({"call"}),
    "hangup": frozenset({"system", "call"}),
    "setvar": frozenset({"call"}),
    "getvar": frozenset({"call", "reporting"}),
    "queueadd": frozenset({"agent"}),
    "queueremove": frozenset({"agent"}),
    "queuepause": frozenset({"agent"}),
    "queuepenalty": frozenset({"agent"}),
    "coreshowchannels": frozenset({"system", "reporting"}),
    "status": frozenset({"system", "call", "reporting"}),
    "bridgelist": frozenset({"system", "reporting"}),
    "bridgeinfo": frozenset({"system", "reporting"}),
    "command": frozenset({"command"}),
}

Spawn = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]


@dataclass(frozen=True)
class AmiUser:
    secret: str
    read: frozenset[str] = frozenset({"all"})
    write: frozenset[str] = frozenset({"all"})

    def may_write(self, action: str) -> bool:
        needed = WRITE_CLASS.get(action)
        return needed is None or "all" in self.write or bool(needed & self.write)

    def may_read(self, cls: str) -> bool:
        return "all" in self.read or cls in self.read


def response(action: Action, status: str = "Success", *headers: tuple[str, str]) -> Headers:
    out: Headers = [("Response", status)]
    if action.action_id:
        out.append(("ActionID", action.action_id))
    out.extend(headers)
    return out


def error(action: Action, message: str) -> list[Headers]:
    return [response(action, "Error", ("Message", message))]


def success(action: Action, message: str) -> list[Headers]:
    return [response(action, "Success", ("Message", message))]


def _list(
    action: Action,
    message: str,
    items: list[Headers],
    complete: str,
    tail: Headers = (),  # type: ignore[assignment]
) -> list[Headers]:
    aid = [("ActionID", action.action_id)] if action.action_id else []
    start = response(action, "Success", ("EventList", "start"), ("Message", message))
    end: Headers = [
        ("Event", complete),
        *aid,
        ("EventList", "Complete"),
        ("ListItems", str(len(items))),
        *(tail or []),
    ]
    return [start, *items, end]


@dataclass
class Actions:
    """Answers actions against the PBX; ``spawn`` owns the tasks of originated calls."""

    pbx: Pbx
    spawn: Spawn
    rng: random.Random = field(default_factory=random.Random)
    originate_hold_s: float = 5.0  # how long an answered click-to-dial call talks
    originate_ring_s: float = 0.05  # the agent's phone rings this long before it answers
    number_ring_s: float = 0.05  # the dialled number rings this long before it answers
    # Dialled numbers that do not answer: "busy" or "noanswer" (the others answer).
    number_outcomes: dict[str, str] = field(default_factory=dict)
    # Originate Channels (agents' phones) that ring out without being answered.
    unanswered_phones: set[str] = field(default_factory=set)
    _handlers: dict[str, Callable[[Action], list[Headers]]] = field(init=False)

    def __post_init__(self) -> None:
        self._handlers = {
            "ping": self.ping,
            "originate": self.originate,
            "redirect": self.redirect,
            "blindtransfer": self.blind_transfer,
            "atxfer": self.atxfer,
            "hangup": self.hangup,
            "setvar": self.setvar,
            "getvar": self.getvar,
            "queueadd": self.queue_add,
            "queueremove": self.queue_remove,
            "queuepause": self.queue_pause,
            "queuestatus": self.queue_status,
            "queuesummary": self.queue_summary,
            "coreshowchannels": self.core_show_channels,
            "status": self.status,
            "bridgelist": self.bridge_list,
            "bridgeinfo": self.bridge_info,
        }

    def handle(self, action: Action, user: AmiUser) -> list[Headers]:
        name = action.name.lower()
        handler = self._handlers.get(name)
        if handler is None:
            return error(
                action,
                f"Invalid/unknown command: {action.name}. "
                "Use Action: ListCommands to show available commands.",
            )
        if not user.may_write(name):
            return error(action, "Permission denied")
        return handler(action)

    # -- simple -----------------------------------------------------------------------------
    def ping(self, action: Action) -> list[Headers]:
        stamp = ("Timestamp", f"{self.pbx.clock():.6f}")
        return [response(action, "Success", ("Ping", "Pong"), stamp)]

    def setvar(self, action: Action) -> list[Headers]:
        variable = action.get("Variable")
        if not variable:
            return error(action, "No variable specified")
        name = action.get("Channel")
        if not name:
            return success(action, "Variable Set")  # a global variable
        channel = self.pbx.channels.get(name)
        if channel is None:
            return error(action, "No such channel")
        self.pbx.set_var(channel, variable, action.get("Value"))
        return success(action, "Variable Set")

    def getvar(self, action: Action) -> list[Headers]:
        variable = action.get("Variable")
        channel = self.pbx.channels.get(action.get("Channel"))
        if action.get("Channel") and channel is None:
            return error(action, "No such channel")
        value = ""
        if channel is not None:
            builtins = {"CALLERID(num)": channel.caller_num, "CALLERID(name)": channel.caller_name}
            value = channel.variables.get(variable, builtins.get(variable, ""))
        return [response(action, "Success", ("Variable", variable), ("Value", value))]

    # -- call control -----------------------------------------------------------------------
    def redirect(self, action: Action) -> list[Headers]:
        name = action.get("Channel")
        channel = self.pbx.channels.get(name)
        if channel is None:
            return error(action, f"Channel does not exist: {name}")
        context = action.get("Context")
        if not context:
            return error(action, "Context not specified")
        owner = channel.owner
        if hasattr(owner, "post"):
            owner.post("redirect", context, action.get("Exten"))
        return success(action, "Redirect successful")

    def blind_transfer(self, action: Action) -> list[Headers]:
        channel = self.pbx.channels.get(action.get("Channel"))
        if channel is None:
            return error(action, "Channel specified does not exist")
        exten = action.get("Exten")
        if not exten:
            return error(action, "No extension specified")
        if channel.bridge is None or not hasattr(channel.owner, "post"):
            return error(action, "Transfer invalid")
        context = action.get("Context") or channel.context
        channel.owner.post("blind", context, exten)
        return success(action, "Transfer succeeded")

    def atxfer(self, action: Action) -> list[Headers]:
        channel = self.pbx.channels.get(action.get("Channel"))
        if channel is None:
            return error(action, "Channel specified does not exist")
        exten = action.get("Exten")
        if not exten:
            return error(action, "No extension specified")
        if channel.bridge is None or not hasattr(channel.owner, "post"):
            return error(action, "Atxfer failed")
        channel.owner.post("atxfer", action.get("Context") or "transfer", exten)
        return success(action, "Atxfer successfully queued")

    def hangup(self, action: Action) -> list[Headers]:
        name = action.get("Channel")
        if name.startswith("/") and name.endswith("/") and len(name) > 1:
            pattern = re.compile(name[1:-1])
            items = []
            for channel in list(self.pbx.channels.values()):
                if pattern.search(channel.name) and hasattr(channel.owner, "post"):
                    channel.owner.post("hangup", channel)
                    aid = [("ActionID", action.action_id)] if action.action_id else []
                    items.append([("Event", "ChannelHungup"), *aid, ("Channel", channel.name)])
            return _list(
                action, "Channels hung up will follow", items, "ChannelsHungupListComplete"
            )
        target = self.pbx.channels.get(name)
        if target is None:
            return error(action, "No such channel")
        if hasattr(target.owner, "post"):
            target.owner.post("hangup", target)
        return success(action, "Channel Hungup")

    def originate(self, action: Action) -> list[Headers]:
        target = action.get("Channel")
        if not target:
            return error(action, "Channel not specified")
        tech = target.split("/", 1)[0].lower()
        exten, context = action.get("Exten"), action.get("Context")
        ok = tech in {"local", "pjsip", "sip"} and "/" in target
        if action.get("Async").lower() not in {"true", "yes", "1"}:
            if not ok:
                return error(action, "Originate failed")
            self.spawn(self._originated(action, target, context, exten, success=True, sync=True))
            return success(action, "Originate successfully queued")
        self.spawn(self._originated(action, target, context, exten, success=ok, sync=False))
        return success(action, "Originate successfully queued")

    async def _originated(
        self, action: Action, target: str, context: str, exten: str, *, success: bool, sync: bool
    ) -> None:
        """A click-to-dial call as Asterisk 22 places it: the Originate rings the agent's phone
        with a Dial that has no calling channel (DialBegin/DialEnd carry only ``Dest*``, as in
        ``actions_call_control.events.ami``); once it answers, the channel runs
        ``Context``/``Exten``, whose ``Dial(PJSIP/${EXTEN}@trunk)`` calls the number."""
        pbx = self.pbx
        await asyncio.sleep(0.002)
        if not success:
            if not sync:
                pbx.emit(
                    "OriginateResponse",
                    "call",
                    _originate_response(
                        action, target, context, exten, "Failure", "0", "", UNKNOWN
                    ),
                )
            return
        owner = _Originated()
        tech, _, device = target.partition("/")
        if tech.lower() == "local":
            dial_exten, _, dial_context = device.partition("@")
            dial_context = dial_context.split("/", 1)[0]  # Local/1001@agents/n: "/n" is an option
            one, phone = local_pair(pbx.ids, dial_exten, dial_context or "agents")
            pbx.add_channel(one, owner)
            pbx.add_channel(phone, owner)
            pbx.emit(
                "LocalBridge",
                "call",
                [
                    *one.headers("LocalOne"),
                    *phone.headers("LocalTwo"),
                    ("Context", phone.context),
                    ("Exten", phone.exten),
                    ("LocalOptimization", "No" if device.endswith("/n") else "Yes"),
                ],
            )
        else:
            uid = pbx.ids.uniqueid()
            one = Channel(f"{target}-{pbx.ids.local_suffix()}", uid, uid, "from-internal", "s")
            phone = one
            pbx.add_channel(one, owner)
        pbx.emit("DialBegin", "call", [*one.headers("Dest"), ("DialString", device)])
        both = [phone] if phone is one else [phone, one]  # the phone's side first, as recorded
        for channel in both:
            pbx.new_state(channel, RINGING)
        await self._wait(owner, self.originate_ring_s)
        if owner.hung_up.is_set() or target in self.unanswered_phones:
            # refused, hung up, or rang out: the Originate fails and nothing is dialled
            status = "CANCEL" if owner.hung_up.is_set() else "NOANSWER"
            pbx.emit("DialEnd", "call", [*one.headers("Dest"), ("DialStatus", status)])
            self._hang_up_all(phone, one)
            if not sync:
                pbx.emit(
                    "OriginateResponse",
                    "call",
                    _originate_response(
                        action, target, context, exten, "Failure", "3", "", UNKNOWN
                    ),
                )
            return
        pbx.new_state(phone, UP)
        if not sync:  # as recorded: between the phone's answer and its Local half's
            pbx.emit(
                "OriginateResponse",
                "call",
                _originate_response(
                    action, one.name, context, exten, "Success", "4", one.uniqueid, one.caller_num
                ),
            )
        if phone is not one:
            pbx.new_state(one, UP)
        pbx.emit("DialEnd", "call", [*one.headers("Dest"), ("DialStatus", "ANSWER")])
        one.context, one.exten, one.priority = context or one.context, exten or one.exten, 1
        await self._dial_number(one, phone, owner, exten)

    async def _dial_number(
        self, one: Channel, phone: Channel, owner: _Originated, number: str
    ) -> None:
        pbx = self.pbx
        far = Channel(
            f"PJSIP/trunk-{pbx.ids.local_suffix()}",
            pbx.ids.uniqueid(),
            one.linkedid,
            "from-pstn",
            number,
            caller_num=number,
            connected_num=one.caller_num,
        )
        pbx.add_channel(far, owner)
        pbx.emit(
            "DialBegin",
            "call",
            [*one.headers(), *far.headers("Dest"), ("DialString", f"{number}@trunk")],
        )
        pbx.new_state(far, RINGING)
        pbx.emit(
            "DialState", "call", [*one.headers(), *far.headers("Dest"), ("DialStatus", "RINGING")]
        )
        await self._wait(owner, self.number_ring_s)
        outcome = self.number_outcomes.get(number, "answer")
        if owner.hung_up.is_set() or outcome != "answer":
            status, cause = "CANCEL", 16
            if not owner.hung_up.is_set():
                status, cause = ("BUSY", 17) if outcome == "busy" else ("NOANSWER", 19)
            pbx.emit(
                "DialEnd", "call", [*one.headers(), *far.headers("Dest"), ("DialStatus", status)]
            )
            pbx.hangup(far, cause, soft=False)
            self._hang_up_all(phone, one)
            return
        pbx.new_state(far, UP)
        pbx.emit(
            "DialEnd", "call", [*one.headers(), *far.headers("Dest"), ("DialStatus", "ANSWER")]
        )
        bridge = pbx.bridge(far, one)
        await self._wait(owner, self.originate_hold_s)
        pbx.leave_bridge(one, destroy=False)
        pbx.leave_bridge(far, destroy=False)
        pbx.destroy_bridge(bridge)
        pbx.hangup(far, 16)
        self._hang_up_all(phone, one)

    async def _wait(self, owner: _Originated, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(owner.hung_up.wait(), seconds)

    def _hang_up_all(self, phone: Channel, one: Channel) -> None:
        self.pbx.hangup(one, 16)
        if phone is not one:
            self.pbx.hangup(phone, 16)

    # -- queues -----------------------------------------------------------------------------
    def _member(self, queue: str, interface: str) -> Member | None:
        q = self.pbx.queues.get(queue)
        return q.member(interface) if q is not None else None

    def queue_add(self, action: Action) -> list[Headers]:
        queue, interface = action.get("Queue"), action.get("Interface")
        if not queue or not interface:
            return error(action, "'Queue' and 'Interface' not set.")
        if queue not in self.pbx.queues:
            return error(action, "Unable to add interface to queue: No such queue")
        if self._member(queue, interface) is not None:
            return error(action, "Unable to add interface: Already there")
        paused = action.get("Paused").lower() in {"1", "true", "yes"}
        penalty = int(action.get("Penalty") or 0)
        self.pbx.add_member(
            queue,
            action.get("MemberName") or interface,
            interface,
            dynamic=True,
            penalty=penalty,
            paused=paused,
            reason=action.get("Reason"),
        )
        return success(action, "Added interface to queue")

    def queue_remove(self, action: Action) -> list[Headers]:
        queue, interface = action.get("Queue"), action.get("Interface")
        if queue not in self.pbx.queues:
            return error(action, "Unable to remove interface from queue: No such queue")
        member = self._member(queue, interface)
        if member is None:
            return error(action, "Unable to remove interface: Not there")
        if member.membership != "dynamic":
            return error(action, "Member not dynamic")
        self.pbx.remove_member(member)
        return success(action, "Removed interface from queue")

    def queue_pause(self, action: Action) -> list[Headers]:
        interface, paused_text = action.get("Interface"), action.get("Paused")
        if not interface or not paused_text:
            return error(action, "Need 'Interface' and 'Paused' parameters.")
        paused = paused_text.lower() in {"1", "true", "yes"}
        queues = [action.get("Queue")] if action.get("Queue") else list(self.pbx.queues)
        members = [m for q in queues if (m := self._member(q, interface)) is not None]
        if not members:
            return error(action, "Interface not found")
        for member in members:
            self.pbx.set_paused(member, paused, action.get("Reason"))
        word = "paused" if paused else "unpaused"
        return success(action, f"Interface {word} successfully")

    def queue_status(self, action: Action) -> list[Headers]:
        wanted = action.get("Queue")
        aid = [("ActionID", action.action_id)] if action.action_id else []
        items: list[Headers] = []
        now = self.pbx.clock()
        for queue in self.pbx.queues.values():
            if wanted and queue.name != wanted:
                continue
            items.append([("Event", "QueueParams"), *queue.params(), *aid])
            for m in queue.members:
                headers = dict(m.headers())
                items.append(
                    [
                        ("Event", "QueueMember"),
                        ("Queue", queue.name),
                        ("Name", m.name),
                        ("Location", m.interface),
                        ("StateInterface", m.state_interface),
                        ("Membership", m.membership),
                        ("Penalty", str(m.penalty)),
                        ("CallsTaken", str(m.calls_taken)),
                        ("LastCall", str(m.last_call)),
                        ("LastPause", str(m.last_pause)),
                        ("LoginTime", str(m.login_time)),
                        ("InCall", headers["InCall"]),
                        ("Status", headers["Status"]),
                        ("Paused", headers["Paused"]),
                        ("PausedReason", m.paused_reason),
                        ("Wrapuptime", "0"),
                        *aid,
                    ]
                )
            for position, entry in enumerate(queue.entries, start=1):
                trunk = entry.channel or entry.call.trunk
                items.append(
                    [
                        ("Event", "QueueEntry"),
                        ("Queue", queue.name),
                        ("Position", str(position)),
                        ("Channel", trunk.name),
                        ("Uniqueid", trunk.uniqueid),
                        ("CallerIDNum", trunk.caller_num),
                        (
                            "CallerIDName",
                            "unknown" if trunk.caller_name == UNKNOWN else trunk.caller_name,
                        ),
                        ("ConnectedLineNum", trunk.connected_num),
                        (
                            "ConnectedLineName",
                            "unknown" if trunk.connected_name == UNKNOWN else trunk.connected_name,
                        ),
                        ("Wait", str(int(now - entry.joined))),
                        ("Priority", str(entry.priority)),
                        *aid,
                    ]
                )
        return _list(action, "Queue status will follow", items, "QueueStatusComplete")

    def queue_summary(self, action: Action) -> list[Headers]:
        wanted = action.get("Queue")
        aid = [("ActionID", action.action_id)] if action.action_id else []
        items: list[Headers] = []
        now = self.pbx.clock()
        for queue in self.pbx.queues.values():
            if wanted and queue.name != wanted:
                continue
            longest = max((int(now - e.joined) for e in queue.entries), default=0)
            params = dict(queue.params())
            items.append(
                [
                    ("Event", "QueueSummary"),
                    ("Queue", queue.name),
                    ("LoggedIn", str(len(queue.members))),
                    ("Available", str(sum(1 for m in queue.members if m.available))),
                    ("Callers", str(len(queue.entries))),
                    ("HoldTime", params["Holdtime"]),
                    ("TalkTime", params["TalkTime"]),
                    ("LongestHoldTime", str(longest)),
                    *aid,
                ]
            )
        return _list(action, "Queue summary will follow", items, "QueueSummaryComplete")

    def core_show_channels(self, action: Action) -> list[Headers]:
        aid = [("ActionID", action.action_id)] if action.action_id else []
        now = self.pbx.clock()
        items: list[Headers] = []
        for channel in self.pbx.channels.values():
            seconds = int(now - channel.created)
            items.append(
                [
                    ("Event", "CoreShowChannel"),
                    *aid,
                    *channel.headers(),
                    ("Application", channel.application),
                    ("ApplicationData", channel.app_data),
                    ("Duration", time.strftime("%H:%M:%S", time.gmtime(seconds))),
                    ("BridgeId", channel.bridge.uniqueid if channel.bridge else ""),
                ]
            )
        return _list(action, "Channels will follow", items, "CoreShowChannelsComplete")

    def status(self, action: Action) -> list[Headers]:
        """Channel status (one channel, or all), with ``Variables`` as repeated headers."""
        name = action.get("Channel")
        channels = [c for c in self.pbx.channels.values() if not name or c.name == name]
        if name and not channels:
            return error(action, "No such channel")
        wanted = [v for v in action.get("Variables").split(",") if v]
        aid = [("ActionID", action.action_id)] if action.action_id else []
        now = self.pbx.clock()
        items: list[Headers] = []
        for channel in channels:
            headers = channel.headers()
            items.append(
                [
                    ("Event", "Status"),
                    ("Privilege", "Call"),
                    *headers,
                    ("Type", channel.name.split("/", 1)[0]),
                    ("DNID", ""),
                    ("EffectiveConnectedLineNum", channel.connected_num),
                    ("EffectiveConnectedLineName", channel.connected_name),
                    ("TimeToHangup", "0"),
                    ("BridgeID", channel.bridge.uniqueid if channel.bridge else ""),
                    ("Application", channel.application),
                    ("Data", channel.app_data),
                    ("Nativeformats", "(slin)"),
                    ("Readformat", "slin"),
                    ("Readtrans", ""),
                    ("Writeformat", "slin"),
                    ("Writetrans", ""),
                    ("Callgroup", "0"),
                    ("Pickupgroup", "0"),
                    ("Seconds", str(int(now - channel.created))),
                    *[("Variable", f"{v}={channel.variables.get(v, '')}") for v in wanted],
                    *aid,
                ]
            )
        tail: Headers = [("Items", str(len(items)))]
        return _list(action, "Channel status will follow", items, "StatusComplete", tail)

    def bridge_list(self, action: Action) -> list[Headers]:
        aid = [("ActionID", action.action_id)] if action.action_id else []
        items = [
            [("Event", "BridgeListItem"), *aid, *b.headers()] for b in self.pbx.bridges.values()
        ]
        return _list(action, "Bridge listing will follow", items, "BridgeListComplete")

    def bridge_info(self, action: Action) -> list[Headers]:
        bridge = self.pbx.bridges.get(action.get("BridgeUniqueid"))
        if bridge is None:
            return error(action, "Specified BridgeUniqueid not found")
        aid = [("ActionID", action.action_id)] if action.action_id else []
        items = [[("Event", "BridgeInfoChannel"), *aid, *c.headers()] for c in bridge.channels]
        return _list(
            action,
            "Bridge channel listing will follow",
            items,
            "BridgeInfoComplete",
            bridge.headers(),
        )


class _Originated:
    def __init__(self) -> None:
        self.hung_up = asyncio.Event()

    def post(self, kind: str, *args: object) -> None:
        if kind in {"hangup", "redirect"}:
            self.hung_up.set()


def _originate_response(
    action: Action,
    channel: str,
    context: str,
    exten: str,
    status: str,
    reason: str,
    uniqueid: str,
    cid: str,
) -> Headers:
    aid = [("ActionID", action.action_id)] if action.action_id else []
    return [
        *aid,
        ("Response", status),
        ("Channel", channel),
        ("Context", context),
        ("Exten", exten),
        ("Reason", reason),
        ("Uniqueid", uniqueid or UNKNOWN),
        ("CallerIDNum", cid),
        ("CallerIDName", UNKNOWN),
    ]
