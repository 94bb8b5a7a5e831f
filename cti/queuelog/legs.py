"""A queue_log call as statistics legs: the call events it stands for, through ``LegBook``.

The legs of a call recovered from queue_log follow the rules of a call the tracker saw
(``cti.stats.legs``): its queue_log rows are turned into the call events the tracker would
have emitted (offered, queued, answered, transferred, abandoned, left_queue, ended) and fed to
a ``LegBook`` of their own. The spans are Asterisk's: a leg is answered (or given up) its
hold time after it joined, its talk lasts the talk time queue_log gives. What queue_log does
not say is left unknown on the legs: hold and wrap-up (None, not 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from cti.queuelog.model import QueueLogCall
from cti.stats.legs import Leg, LegBook
from cti.tracker.events import CallEvent, CallEventName

# queue_log's way out of a queue unanswered → the tracker's left_queue reason
_LEFT = {"timeout": "timeout", "empty": "empty", "key": "key", "withdraw": "withdraw"}


def _at(since: float | None, span: float | None, row: float | None) -> float:
    """When a span Asterisk reports ended: ``since`` + ``span``, else the row's time."""
    if since is not None and span is not None:
        return since + span
    assert row is not None
    return row


def call_events(call: QueueLogCall) -> list[CallEvent]:
    """The call events of a finished queue_log call, in the order its rows were logged."""
    cid = call.call_id
    timed: list[tuple[float, int, CallEvent]] = []

    def emit(row_time: float, name: CallEventName, ts: float, **data: object) -> None:
        timed.append((row_time, len(timed), CallEvent(cid, name, ts, dict(data))))

    emit(call.entered, "offered", call.entered, caller=call.caller)
    legs = call.legs
    for i, leg in enumerate(legs):
        emit(leg.entered, "queued", leg.entered, queue=leg.queue)
        later = next((n for n in legs[i + 1 :] if n.entered >= leg.entered), None)
        if leg.answered is not None:
            answered = _at(leg.entered, leg.wait_s, leg.answered)
            emit(leg.answered, "answered", answered, queue=leg.queue, agent=leg.agent)
            if leg.ended is not None and (leg.transfer is not None or later is not None):
                # Transferred, or taken on to another queue while talking (a Redirect).
                ended = _at(answered, leg.talk_s, leg.ended)
                kind = (leg.transfer or {}).get("kind")
                to_queue = later.queue if later is not None else None
                emit(
                    leg.ended,
                    "transferred",
                    ended,
                    kind=kind,
                    from_agent=leg.agent,
                    to_queue=to_queue,
                )
        elif leg.left is not None and leg.result is not None:
            left = _at(leg.entered, leg.wait_s, leg.left)
            if leg.result == "abandon":
                emit(leg.left, "abandoned", left, queue=leg.queue)
            else:  # redirect (an escalation), timeout, ...
                reason = _LEFT.get(leg.result, leg.result)
                emit(leg.left, "left_queue", left, queue=leg.queue, reason=reason)
    last = legs[-1]
    if last.answered is not None and last.ended is not None and last.transfer is None:
        end = _at(_at(last.entered, last.wait_s, last.answered), last.talk_s, last.ended)
        emit(last.ended, "ended", end, hangup_by=call.hangup_by)
    else:  # every leg is finished by now: the end only closes the call
        end = max(e.ts or 0.0 for _, _, e in timed)
        emit(call.last_row, "ended", end, hangup_by=call.hangup_by)
    return [event for _, _, event in sorted(timed, key=lambda t: (t[0], t[1]))]


def queue_log_legs(call: QueueLogCall, tiers_by_queue: Mapping[str, str]) -> list[Leg]:
    """The legs of a finished queue_log call, as ``LegBook`` makes them of its events; hold
    and wrap-up not known."""
    book = LegBook(tiers_by_queue)
    legs: list[Leg] = []
    for event in call_events(call):
        legs.extend(book.feed(event))
    for leg in legs:
        leg.hold_s = None
        leg.wrap_s = None
    return legs


def answers_as_logged(legs: Sequence[Leg], call: QueueLogCall, *, joined: bool) -> list[Leg]:
    """The legs a live daemon wrote of a call it followed in part, with Asterisk's answers:
    each answered leg is answered the hold time of the queue_log leg that answered it (the
    same queue and agent, in order) after it joined (``joined``: at queue_log's time, when
    the daemon did not see it join). All the call's legs if any changed, else []; the rest of
    each leg (its end, hold, wrap-up) is kept."""
    logged = [
        leg
        for leg in call.legs
        if leg.agent is not None and leg.answered is not None and leg.wait_s is not None
    ]
    fixed: list[Leg] = []
    changed = False
    for leg in legs:
        was, match = leg.answered_at, None
        if leg.agent is not None and was is not None:
            match = next((q for q in logged if (q.queue, q.agent) == (leg.queue, leg.agent)), None)
        if match is None or was is None:
            fixed.append(leg)
            continue
        logged.remove(match)
        assert match.wait_s is not None
        start = match.entered if joined else leg.joined_at
        answered = start + match.wait_s
        if leg.ended_at is not None:
            answered = min(answered, leg.ended_at)
        new = dataclasses.replace(leg, joined_at=start, answered_at=round(answered, 3))
        changed = changed or abs(answered - was) > 0.001 or start != leg.joined_at
        fixed.append(new)
    return fixed if changed else []
