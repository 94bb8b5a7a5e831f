"""``/api/stats/live`` on every instance: the figures of the instances that ingest the PBXs.

Today's live figures are built from the call events, which only the ingester of a PBX sees
(``cti.stats.live``). Any instance answers ``/api/stats/live`` by asking each instance that
holds a PBX's lease now for its figures (``ActionRelay.ask``, answered from its memory at
that moment: no periodic publishing, nothing computed while nobody asks) and merging them.
One ingester (one PBX, or every PBX on one instance): its figures, exactly. PBXs spread over
several ingesters: counts are summed, the service level is recomputed from the summed counts
and the averages weighted by the answered calls (exact up to the rounding); the 90th
percentile of answer times cannot be rebuilt from the parts' and is the largest of them (an
upper bound). Outbound calls are summed; an agent in several parts gets their times summed
and occupancy recomputed. ``pbxs`` says which instance each PBX's figures came from; a PBX
nobody ingests (a takeover under way) or whose instance did not answer within
``ASK_TIMEOUT_S`` (all are asked together) is listed in ``missing``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from cti.ami.errors import AmiError
from cti.pbx_actions import PbxRefused
from cti.stats.figures import agent_figures
from cti.stats.live import GROUPS_LIVE

log = structlog.get_logger(__name__)

# Every instance is asked at once, each for this long: a silent one is listed in ``missing``
# without holding up the others' figures.
ASK_TIMEOUT_S = 2.0

_COUNTS = (
    "offered",
    "answered",
    "abandoned",
    "short_abandoned",
    "left",
    "answered_in_sl",
    "transfers_out",
    "escalations_out",
)


class Asker(Protocol):
    async def holders(self, pbx_ids: list[str]) -> dict[str, str | None]: ...

    async def ask(self, holder: str, name: str) -> Any: ...


def _weighted(parts: Sequence[Mapping[str, Any]], key: str) -> float | None:
    pairs = [(p[key], p["answered"]) for p in parts if p.get(key) is not None and p["answered"]]
    weight = sum(w for _, w in pairs)
    return round(sum(v * w for v, w in pairs) / weight, 3) if weight else None


def _largest(parts: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [p[key] for p in parts if p.get(key) is not None]
    return max(values) if values else None


def merge_figures(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One group's figures (``cti.stats.figures.Figures.to_dict``) from several instances'."""
    if len(parts) == 1:
        return dict(parts[0])
    out: dict[str, Any] = {k: sum(int(p.get(k) or 0) for p in parts) for k in _COUNTS}
    counted = out["offered"] - out["short_abandoned"]
    out["service_level"] = round(out["answered_in_sl"] / counted, 4) if counted > 0 else None
    out["asa_s"] = _weighted(parts, "asa_s")
    out["p90_answer_s"] = _largest(parts, "p90_answer_s")
    out["longest_wait_s"] = _largest(parts, "longest_wait_s")
    out["aht_s"] = _weighted(parts, "aht_s")
    return out


def merge_live(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several instances' ``LiveStats.to_dict`` as one (the parts of today only)."""
    if not parts:
        empty: dict[str, Any] = {"now": None, "day_start": None, **{by: {} for by in GROUPS_LIVE}}
        return {**empty, "outbound": merge_outbound([]), "agents": {}}
    day = max(float(p.get("day_start") or 0.0) for p in parts)
    today = [p for p in parts if float(p.get("day_start") or 0.0) == day]
    out: dict[str, Any] = {"now": max(p.get("now") or 0.0 for p in today), "day_start": day}
    for by in GROUPS_LIVE:
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for part in today:
            for key, figures in (part.get(by) or {}).items():
                groups.setdefault(key, []).append(figures)
        out[by] = {key: merge_figures(groups[key]) for key in sorted(groups)}
    out["outbound"] = merge_outbound([p["outbound"] for p in today if p.get("outbound")])
    out["agents"] = merge_agents([p.get("agents") or {} for p in today])
    return out


def merge_outbound(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Outbound calls: summed; the mean talk weighted by the answered calls."""
    if len(parts) == 1:
        return dict(parts[0])
    talk = round(sum(float(p.get("talk_s") or 0.0) for p in parts), 3)
    return {
        "calls": sum(int(p.get("calls") or 0) for p in parts),
        "answered": sum(int(p.get("answered") or 0) for p in parts),
        "talk_s": talk,
        "avg_talk_s": _weighted(parts, "avg_talk_s"),
    }


def merge_agents(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Agent time per agent: an agent in one part as it is; in several (queues on several
    PBXs), times summed and occupancy recomputed (``cti.stats.figures.agent_figures``)."""
    seen: dict[str, list[Mapping[str, Any]]] = {}
    for part in parts:
        for agent, figures in part.items():
            seen.setdefault(agent, []).append(figures)
    out: dict[str, Any] = {}
    for agent in sorted(seen):
        entries = seen[agent]
        if len(entries) == 1:
            out[agent] = dict(entries[0])
            continue
        spans = [(agent, "login", "", float(e.get("login_s") or 0.0)) for e in entries]
        reasons: dict[str, float] = {}
        for e in entries:
            for reason, seconds in (e.get("pause_by_reason") or {}).items():
                reasons[reason] = reasons.get(reason, 0.0) + float(seconds)
        spans += [(agent, "pause", r, s) for r, s in sorted(reasons.items())]
        calls = sum(int(e.get("calls") or 0) for e in entries)
        handle = sum(float(e.get("handle_s") or 0.0) for e in entries)
        out.update(agent_figures(spans, {agent: (calls, handle)}))
    return out


async def live_everywhere(
    asker: Asker,
    pbx_ids: list[str],
    own: Callable[[], dict[str, Any]],
    me: str,
    within_s: float = ASK_TIMEOUT_S,
) -> dict[str, Any]:
    """Today's live figures of every PBX, whichever instance is asked."""
    holders = await asker.holders(pbx_ids)
    missing = [pbx for pbx, holder in holders.items() if holder is None]

    async def one(holder: str) -> Mapping[str, Any] | None:
        if holder == me:
            return own()
        try:
            async with asyncio.timeout(within_s):
                figures: Mapping[str, Any] = await asker.ask(holder, "live_stats")
                return figures
        except (PbxRefused, AmiError, TimeoutError) as exc:
            log.warning("stats.live_unanswered", instance=holder, error=repr(exc))
            return None

    asked = sorted({h for h in holders.values() if h is not None})
    parts: list[Mapping[str, Any]] = []
    for holder, part in zip(asked, await asyncio.gather(*map(one, asked)), strict=True):
        if part is None:
            missing.extend(pbx for pbx, h in holders.items() if h == holder)
        else:
            parts.append(part)
    result = merge_live(parts)
    result["pbxs"] = holders
    if missing:
        result["missing"] = sorted(missing)
    return result
