"""What the supervisor console shows: one row per live call, agent and queue, and the day by
hour. Pure: built from the live call contexts, today's statistics and ``now`` passed in.

Rows (JSON objects; the console's contract, see ``cti.supervisor.console``):

- call: ``call_id``, ``caller``, ``customer``, ``status`` (CRM resolution), ``flags``,
  ``state`` (arriving, waiting, ringing, talking, on hold, transferred), ``detail`` (whom it
  rings, talks to or who holds it), ``queue``, ``tier``, ``agent``, ``ringing``,
  ``offered_at``, ``waiting_since``, ``answered_at``, ``wait_s`` and ``talk_s`` so far (talk
  includes hold: the caller stays bridged), ``on_hold_since``, ``hold_s`` (held so far by
  the agent on the call), ``reason`` (routing or escalation);
- agent: ``name``, ``member``, ``state`` (logged_out, available, ringing, on_call, paused),
  ``reason``, ``paused_since``, ``paused_s``, ``call_id``, ``queues``, ``calls_today``,
  ``occupancy`` and ``pause_today_s`` (as ``/api/stats/live``'s ``agents``);
- queue: ``queue``, ``tier``, ``waiting``, ``longest_wait_s`` (of the callers waiting now),
  ``agents_available``, ``agents_logged_in``, today's ``offered``, ``answered``,
  ``abandoned``, ``service_level`` and ``target``, ``breached``;
- hour: ``hour``, ``offered``, ``answered``, ``abandoned``, ``service_level``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from cti.config import AgentConfig, Config
from cti.stats.figures import Figures
from cti.stats.legs import Leg
from cti.stats.live import LiveStats


class CallView(Protocol):
    """What the board reads of a live call (``cti.calls.CallContext``)."""

    call_id: str
    caller: str | None
    status: str | None
    view: dict[str, Any] | None
    routing: dict[str, Any] | None
    queue: str | None
    tier: str | None
    state: str
    agent: str | None
    agent_channel: str | None
    caller_channel: str | None
    agents: list[str]
    ringing_agents: list[dict[str, Any]]
    transfers: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    offered_at: float | None
    answered_at: float | None


_STATES = {"offered": "arriving", "queued": "waiting", "ringing": "ringing", "answered": "talking"}


def _secs(now: float, since: float | None) -> float | None:
    return None if since is None else round(max(0.0, now - since), 1)


def call_row(ctx: CallView, legs: Sequence[Leg], now: float) -> dict[str, Any]:
    view = ctx.view or {}
    routing = ctx.routing or {}
    state = _STATES.get(ctx.state, ctx.state)
    if state in ("waiting", "arriving") and ctx.transfers:
        state = "transferred"
    ringing = [str(r.get("member") or r.get("interface")) for r in ctx.ringing_agents]
    detail = ""
    if state == "ringing":
        detail = "ringing " + ", ".join(ringing)
    elif state == "talking" and ctx.agent:
        detail = f"talking with {ctx.agent}"
    talking = next(
        (leg for leg in reversed(legs) if leg.answered_at is not None and leg.ended_at is None),
        None,
    )
    held = state == "talking" and talking is not None and talking.hold_since is not None
    if held:
        state, detail = "on hold", f"on hold by {ctx.agent}"
    waiting = next((leg for leg in reversed(legs) if leg.answered_at is None), None)
    bridged = state in ("talking", "on hold")
    waiting_since = waiting.joined_at if waiting is not None and not bridged else None
    escalation = ctx.escalations[-1] if ctx.escalations else None
    return {
        "call_id": ctx.call_id,
        "caller": ctx.caller,
        "customer": view.get("name"),
        "status": ctx.status,
        "flags": list(view.get("highlights") or ()),
        "state": state,
        "detail": detail,
        "queue": ctx.queue,
        "tier": ctx.tier,
        "agent": ctx.agent if bridged else None,
        "ringing": ringing,
        "offered_at": ctx.offered_at,
        "waiting_since": waiting_since,
        "answered_at": ctx.answered_at,
        "wait_s": _secs(now, waiting_since if waiting_since else ctx.offered_at)
        if not bridged
        else None,
        "talk_s": _secs(now, ctx.answered_at) if bridged else None,
        "on_hold_since": talking.hold_since if held and talking is not None else None,
        # time on hold on this agent's part of the call so far (within talk_s)
        "hold_s": round(talking.hold_so_far(now), 1) if talking is not None else None,
        "reason": (escalation or {}).get("reason") or routing.get("reason"),
    }


def agent_key(agent: AgentConfig) -> str:
    """How the statistics name an agent: their queue member name."""
    return agent.member or agent.name


def agents_on(ctx: CallView) -> set[str]:
    """The agents (queue member names) a call is ringing or talking to."""
    found = {str(r["member"]) for r in ctx.ringing_agents if r.get("member")}
    if ctx.agent:
        found.add(ctx.agent)
    return found


def calls_by_agent(calls: Iterable[CallView]) -> dict[str, list[CallView]]:
    """Each agent's calls (ringing or talking to them), in one pass over the calls."""
    out: dict[str, list[CallView]] = {}
    for ctx in calls:
        for agent in agents_on(ctx):
            out.setdefault(agent, []).append(ctx)
    return out


def agent_row(
    agent: AgentConfig,
    stats: LiveStats,
    calls: Iterable[CallView],
    calls_today: dict[str, int],
    now: float,
) -> dict[str, Any]:
    key = agent_key(agent)
    queues = stats.agents.queue_states(key)
    pause = stats.agents.paused(key)
    today = stats.agent_today(key, now)
    on_call = ringing = None
    for ctx in calls:
        if ctx.state == "answered" and ctx.agent == key:
            on_call = ctx.call_id
        elif any(r.get("member") == key for r in ctx.ringing_agents):
            ringing = ctx.call_id
    if not queues:
        state = "logged_out"
    elif on_call:
        state = "on_call"
    elif ringing:
        state = "ringing"
    elif pause is not None:
        state = "paused"
    else:
        state = "available"
    return {
        "name": agent.name,
        "member": key,
        "state": state,
        "reason": pause.reason if pause is not None else "",
        "paused_since": pause.started_at if pause is not None else None,
        "paused_s": _secs(now, pause.started_at) if pause is not None else None,
        "call_id": on_call or ringing,
        "queues": sorted(queues),
        "calls_today": calls_today.get(key, 0),
        # Today as /api/stats/live's ``agents`` (from this agent's running totals alone).
        "occupancy": today["occupancy"] if today is not None else None,
        "pause_today_s": today["pause_s"] if today is not None else 0.0,
    }


def queue_row(
    queue: str,
    tier: str | None,
    today: Figures | None,
    waiting: Sequence[Leg],
    agents: Sequence[dict[str, Any]],
    target: float,
    now: float,
) -> dict[str, Any]:
    fig = today or Figures()
    waits = [leg.wait_so_far(now) for leg in waiting]
    in_queue = [a for a in agents if queue in a["queues"]]
    level = fig.service_level
    return {
        "queue": queue,
        "tier": tier,
        "waiting": len(waiting),
        "longest_wait_s": round(max(waits), 1) if waits else 0.0,
        "agents_available": sum(1 for a in in_queue if a["state"] == "available"),
        "agents_logged_in": len(in_queue),
        "offered": fig.offered,
        "answered": fig.answered,
        "abandoned": fig.abandoned,
        "short_abandoned": fig.short_abandoned,
        "service_level": level,
        "target": target,
        "breached": level is not None and level < target,
    }


def hour_rows(by_hour: dict[str, Figures]) -> list[dict[str, Any]]:
    return [
        {
            "hour": hour,
            "offered": f.offered,
            "answered": f.answered,
            "abandoned": f.abandoned + f.short_abandoned,
            "service_level": f.service_level,
        }
        for hour, f in by_hour.items()
    ]


def board(
    config: Config, stats: LiveStats, calls: Sequence[CallView], now: float
) -> dict[str, Any]:
    """Everything on the console now."""
    legs_by_call: dict[str, list[Leg]] = {}
    for leg in stats.legs.live_legs():
        legs_by_call.setdefault(leg.call_id, []).append(leg)
    calls_today = stats.calls_today()
    people = [a for a in config.agents if a.role == "agent"]
    theirs = calls_by_agent(calls)
    agents = [agent_row(a, stats, theirs.get(agent_key(a), []), calls_today, now) for a in people]
    by_queue = stats.figures("queue", now)
    queues = {t.queue: name for name, t in config.tiers.items()}
    for queue in by_queue:
        queues.setdefault(queue, stats.legs.tier_of(queue))
    waiting: dict[str, list[Leg]] = {}
    for leg in stats.legs.live_legs():
        if leg.answered_at is None and leg.left_at is None:
            waiting.setdefault(leg.queue, []).append(leg)
    thresholds = stats.thresholds
    return {
        "at": now,
        "calls": [call_row(c, legs_by_call.get(c.call_id, []), now) for c in calls],
        "agents": agents,
        "queues": [
            queue_row(
                q,
                tier,
                by_queue.get(q),
                waiting.get(q, []),
                agents,
                thresholds.target_of(q),
                now,
            )
            for q, tier in queues.items()
        ],
        "hours": hour_rows(stats.figures("hour", now)),
    }
