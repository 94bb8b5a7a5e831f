"""Asterisk's queue_log as calls: rows in, one ``QueueLogCall`` per call out (no I/O, no clock).

What app_queue writes (``apps/app_queue.c`` of Asterisk 22, every ``ast_queue_log`` call;
``main/logger.c`` writes a row as ``epoch|callid|queuename|agent|event|data`` to the file, or
``time, callid, queuename, agent, event, data1..data5`` to a realtime table, the data split on
``|``). ``callid`` is the Uniqueid of the channel waiting in the queue; the times in ``data``
are whole seconds (``time(NULL)`` differences), ``RINGNOANSWER`` is in milliseconds:

============== ======================================== =========================================
event          agent                                    data
============== ======================================== =========================================
ENTERQUEUE     NONE                                     url | caller ID number | position
                                                        [| caller ID name]
RINGNOANSWER   member                                   ring time (ms)
RINGCANCELED   member                                   ring time (ms): the caller hung up
CONNECT        member                                   hold time | member's Uniqueid | ring time
COMPLETECALLER member                                   hold time | talk time | original position
COMPLETEAGENT  member                                   hold time | talk time | original position
BLINDTRANSFER  member                                   exten | context | hold | talk | position
ATTENDEDTRANSFER member                                 BRIDGE|id (APP|app, LINK|a|b) | hold |
                                                        talk | position
ABANDON        NONE                                     position | original position | wait
EXITWITHTIMEOUT, EXITEMPTY  NONE                        position | original position | wait
EXITWITHKEY    NONE                                     key | position | original position | wait
WITHDRAW       NONE                                     position | original position | wait | info
============== ======================================== =========================================

A call's id in the interaction log is its Linkedid, not the Uniqueid of the channel that waits
in a queue (a call that comes in through a Local channel, a consultation of an attended
transfer, have other Uniqueids). The shipped dialplan writes before each ``Queue()``
``QueueLog(${queue},${UNIQUEID},NONE,CTI_LINKEDID,${CHANNEL(linkedid)})``: the rows of every
queue entry of one call are grouped under its Linkedid. Without that row the queue entry's
callid stands for the call (right when the waiting channel began the call, as a SIP trunk's
does) and ``linked`` is False.

Figures are Asterisk's own: wait from CONNECT's hold time (ABANDON's, EXIT*'s wait), talk from
COMPLETE*/…TRANSFER's talk time. When the rows carry sub-second times (a realtime table), the
same spans are measured between the rows' times instead (Asterisk's whole seconds lose up to
1 s). An ABANDON followed by another ENTERQUEUE of the same caller is not an abandon: a
``Redirect`` out of a queue (an escalation) is logged so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

LINK_EVENT = "CTI_LINKEDID"
EXITS = frozenset({"ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY", "WITHDRAW"})
TALK_ENDS = frozenset({"COMPLETECALLER", "COMPLETEAGENT", "BLINDTRANSFER", "ATTENDEDTRANSFER"})
CALL_EVENTS = EXITS | TALK_ENDS | {"ENTERQUEUE", "CONNECT", "RINGNOANSWER", "RINGCANCELED"}


@dataclass(frozen=True, slots=True)
class QueueLogRow:
    """One queue_log row; ``time`` in epoch seconds, ``data`` the fields after the event."""

    time: float
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()

    def field(self, i: int) -> str:
        return self.data[i] if i < len(self.data) else ""

    def fields(self) -> list[str]:
        """The data as Asterisk formatted it (a realtime table splits it over data1..data5,
        the last taking the rest), without the empty columns at the end."""
        parts = "|".join(self.data).split("|")
        while parts and parts[-1] == "":
            parts.pop()
        return parts


def parse_line(line: str) -> QueueLogRow | None:
    """A line of the queue_log file (``epoch|callid|queue|agent|event|data...``); None if not."""
    parts = line.rstrip("\r\n").split("|")
    if len(parts) < 5:
        return None
    try:
        at = float(parts[0])
    except ValueError:
        return None
    return QueueLogRow(at, parts[1], parts[2], parts[3], parts[4], tuple(parts[5:]))


def format_line(row: QueueLogRow) -> str:
    """The file's line for a row, as ``main/logger.c`` writes it (whole seconds)."""
    head = f"{int(row.time)}|{row.callid}|{row.queue}|{row.agent}|{row.event}|"
    return head + "|".join(row.data)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


@dataclass(slots=True)
class QueueLeg:
    """One stay of a caller's channel in one queue, and what followed it there."""

    queue: str
    callid: str
    entered: float
    caller: str | None
    result: str | None = None  # answered / abandon / redirect / timeout / empty / key / ...
    left: float | None = None  # when it left the queue (answered or gave up)
    wait_s: float | None = None
    agent: str | None = None
    answered: float | None = None
    talk_s: float | None = None
    ended: float | None = None  # the talk ended (COMPLETE*, a transfer)
    end_event: str | None = None
    transfer: dict[str, Any] | None = None
    rung: list[str] = field(default_factory=list)  # members rung who did not answer


@dataclass(slots=True)
class QueueLogCall:
    """One call as queue_log tells it: its queue legs in order."""

    call_id: str  # the Linkedid (``linked``) or the first queue entry's callid
    linked: bool
    legs: list[QueueLeg] = field(default_factory=list)
    last_row: float = 0.0

    @property
    def callids(self) -> list[str]:
        return list(dict.fromkeys(leg.callid for leg in self.legs))

    @property
    def entered(self) -> float:
        return self.legs[0].entered

    @property
    def caller(self) -> str | None:
        return next((leg.caller for leg in self.legs if leg.caller), None)

    @property
    def open(self) -> bool:
        """Some leg has not finished yet (waiting, or talking)."""
        return any(
            leg.result is None or (leg.result == "answered" and leg.ended is None)
            for leg in self.legs
        )

    @property
    def agents(self) -> list[str]:
        return list(dict.fromkeys(leg.agent for leg in self.legs if leg.agent))

    @property
    def queues(self) -> list[str]:
        return list(dict.fromkeys(leg.queue for leg in self.legs))

    @property
    def outcome(self) -> str:
        if self.agents:
            return "answered"
        last = self.legs[-1].result
        return "abandoned" if last == "abandon" else "unanswered"

    @property
    def wait_s(self) -> float | None:
        """Time the caller waited in queues: the legs of the channel that entered first (a
        consultation's own wait, while the caller was on hold with an agent, is not one)."""
        first = self.legs[0].callid
        waits = [leg.wait_s for leg in self.legs if leg.wait_s is not None and leg.callid == first]
        return round(sum(waits), 3) if waits else None

    @property
    def talk_s(self) -> float | None:
        talks = [leg.talk_s for leg in self.legs if leg.talk_s is not None]
        return round(sum(talks), 3) if talks else None

    @property
    def answered_at(self) -> float | None:
        return next((leg.answered for leg in self.legs if leg.answered is not None), None)

    @property
    def ended_at(self) -> float | None:
        """When the caller's call ended, when queue_log says it: the end of the last talk
        or the caller's abandon; None after a timeout or a transfer out of the queues (the
        call went on in the dialplan, queue_log does not say until when)."""
        last = self.legs[-1]
        if last.end_event in ("COMPLETECALLER", "COMPLETEAGENT"):
            return last.ended
        if last.result == "abandon":
            return last.left
        return None

    @property
    def hangup_by(self) -> str | None:
        last = self.legs[-1]
        if last.end_event == "COMPLETECALLER" or last.result == "abandon":
            return "caller"
        if last.end_event == "COMPLETEAGENT":
            return "agent"
        return None

    @property
    def transfers(self) -> list[dict[str, Any]]:
        return [leg.transfer for leg in self.legs if leg.transfer is not None]

    def queue_legs(self) -> list[dict[str, Any]]:
        return [
            {"queue": leg.queue, "wait_s": leg.wait_s, "result": leg.result, "uniqueid": leg.callid}
            for leg in self.legs
        ]

    def talk_legs(self) -> list[dict[str, Any]]:
        return [
            {"agent": leg.agent, "queue": leg.queue, "talk_s": leg.talk_s}
            for leg in self.legs
            if leg.agent is not None
        ]


def _span(row: QueueLogRow, since: float | None, told: int | None, fine: bool) -> float | None:
    """A span Asterisk reports in whole seconds (``told``), or measured between the rows'
    times when they are finer than a second and agree with it."""
    if fine and since is not None:
        measured = row.time - since
        if told is None or abs(measured - told) < 1.5:
            return round(max(0.0, measured), 3)
    return float(told) if told is not None else None


def calls_from_rows(rows: Iterable[QueueLogRow], *, fine: bool = False) -> list[QueueLogCall]:
    """Group the rows into calls, in the order their first queue entry was logged.

    ``fine``: the rows' times are finer than a second (a realtime table)."""
    ordered = sorted(rows, key=lambda r: r.time)
    linked: dict[str, str] = {}
    for row in ordered:
        if row.event == LINK_EVENT and row.field(0):
            linked[row.callid] = row.field(0)
    calls: dict[str, QueueLogCall] = {}
    open_leg: dict[tuple[str, str], QueueLeg] = {}  # (callid, queue) -> its current leg
    for row in ordered:
        if row.event not in CALL_EVENTS:
            continue
        key = linked.get(row.callid, row.callid)
        call = calls.get(key)
        if row.event == "ENTERQUEUE":
            if call is None:
                call = calls[key] = QueueLogCall(key, row.callid in linked)
            leg = QueueLeg(row.queue, row.callid, row.time, row.field(1) or None)
            previous = call.legs[-1] if call.legs else None
            if previous is not None and previous.result == "abandon":
                previous.result = "redirect"  # it left for another queue: not an abandon
            call.legs.append(leg)
            open_leg[(row.callid, row.queue)] = leg
            call.last_row = row.time
            continue
        leg_or_none = open_leg.get((row.callid, row.queue))
        if call is None or leg_or_none is None:
            continue  # its ENTERQUEUE is before what was read
        leg = leg_or_none
        call.last_row = max(call.last_row, row.time)
        _apply(leg, row, fine)
    return list(calls.values())


def _apply(leg: QueueLeg, row: QueueLogRow, fine: bool) -> None:
    event = row.event
    parts = row.fields()
    if event == "RINGNOANSWER":
        leg.rung.append(row.agent)
    elif event == "CONNECT":
        leg.result, leg.agent, leg.answered, leg.left = "answered", row.agent, row.time, row.time
        leg.wait_s = _span(row, leg.entered, _int(parts[0]) if parts else None, fine)
    elif event in TALK_ENDS:
        # The hold and talk times come last but one and two (an attended transfer's
        # destination has one to three fields of its own before them).
        talk = _int(parts[-2]) if len(parts) >= 3 else None
        leg.talk_s = _span(row, leg.answered, talk, fine)
        leg.ended, leg.end_event = row.time, event
        if leg.agent is None:  # the CONNECT was not read
            leg.agent = row.agent
        if event == "BLINDTRANSFER":
            leg.transfer = {"kind": "blind", "from": row.agent, "extension": row.field(0) or None}
        elif event == "ATTENDEDTRANSFER":
            leg.transfer = {"kind": "attended", "from": row.agent}
    elif event in EXITS and leg.result is None:
        results = {
            "ABANDON": "abandon",
            "EXITWITHTIMEOUT": "timeout",
            "EXITEMPTY": "empty",
            "EXITWITHKEY": "key",
            "WITHDRAW": "withdraw",
        }
        leg.result, leg.left = results[event], row.time
        wait_at = {"EXITWITHKEY": 3}.get(event, 2)
        told = _int(parts[wait_at]) if len(parts) > wait_at else None
        leg.wait_s = _span(row, leg.entered, told, fine)


def settled(call: QueueLogCall, now: float, settle_s: float) -> bool:
    """Finished, and nothing logged for ``settle_s``: an abandon that is a Redirect, a talk
    that ends in a Redirect to another queue, would have been followed by an ENTERQUEUE."""
    return not call.open and now - call.last_row >= settle_s


def missing_facts(call: QueueLogCall) -> list[str]:
    """What queue_log does not say about a call (the record lists it as not known)."""
    facts = ["routing", "notes"]
    if call.ended_at is None:
        facts.append("ended_at")
    if call.hangup_by is None:
        facts.append("hangup_by")
    if not call.linked and len(call.legs) > 0:
        facts.append("linkedid")
    return facts


def tiers_of(queues: Sequence[str], tiers_by_queue: dict[str, str]) -> list[str]:
    return list(dict.fromkeys(tiers_by_queue.get(q, q) for q in queues))
