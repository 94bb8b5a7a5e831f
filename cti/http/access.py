"""Who may see and act on what: agents their own calls, supervisors everything."""

from __future__ import annotations

from cti.calls import CallContext
from cti.config import AgentConfig
from cti.http.auth import is_supervisor
from cti.http.errors import ApiError
from cti.hub import alias_key


def aliases(agent: AgentConfig) -> set[str]:
    return {alias_key(a) for a in (agent.name, agent.member, agent.interface) if a}


def _named(names: set[str], *candidates: object) -> bool:
    return any(isinstance(c, str) and c and alias_key(c) in names for c in candidates)


def is_on_call(agent: AgentConfig, ctx: CallContext) -> bool:
    """The agent talks to the caller now (or their phone rings for it)."""
    names = aliases(agent)
    if _named(names, ctx.agent, ctx.agent_interface):
        return True
    return any(_named(names, r.get("member"), r.get("interface")) for r in ctx.ringing_agents)


def sees_call(agent: AgentConfig, ctx: CallContext) -> bool:
    """Supervisors see every call; an agent the calls they are on or took part in."""
    if is_supervisor(agent) or is_on_call(agent, ctx):
        return True
    return _named(aliases(agent), *ctx.agents, *ctx.previous_agents)


def require_sees(agent: AgentConfig, ctx: CallContext) -> None:
    if not sees_call(agent, ctx):
        raise ApiError(403, f"call_id: call {ctx.call_id} is not one of yours ({agent.name})")


def acting_agent(
    agent: AgentConfig, requested: str | None, by_name: dict[str, AgentConfig]
) -> AgentConfig:
    """The agent an action is for: oneself, or (supervisors only) the agent named in the body."""
    if requested is None or requested == agent.name:
        return agent
    if not is_supervisor(agent):
        raise ApiError(403, "agent: only a supervisor may act for another agent")
    target = by_name.get(requested)
    if target is None:
        raise ApiError(404, f"agent: no agent named {requested!r} in the config")
    return target
