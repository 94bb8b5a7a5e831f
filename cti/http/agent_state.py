"""The agent's own state: log in/out of queues and pause, through AMI queue actions."""

from __future__ import annotations

from aiohttp import web

from cti.config import AgentConfig, Config
from cti.http.access import acting_agent
from cti.http.auth import AGENT, agent_info, is_supervisor
from cti.http.calls import agent_link, ami_action
from cti.http.errors import ApiError, parse_body
from cti.http.models import PauseBody, QueueBody
from cti.http.state import DEPS


def _who(request: web.Request, requested: str | None) -> AgentConfig:
    agents = {a.name: a for a in request.app[DEPS].config.agents}
    who = acting_agent(request[AGENT], requested, agents)
    if not who.interface:
        raise ApiError(409, f"agent: {who.name} has no phone interface in the config")
    return who


def allowed_queues(config: Config, agent: AgentConfig) -> set[str] | None:
    """The queues an agent may join (their tiers'), or None for no restriction."""
    if is_supervisor(agent) or not agent.tiers:
        return None
    return {config.tiers[t].queue if t in config.tiers else t for t in agent.tiers}


async def me(request: web.Request) -> web.Response:
    return web.json_response({"agent": agent_info(request[AGENT])})


async def queues(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    body = await parse_body(request, QueueBody)
    who = _who(request, body.agent)
    allowed = allowed_queues(deps.config, request[AGENT])
    if body.action == "login" and allowed is not None and body.queue not in allowed:
        raise ApiError(403, f"queue: {who.name} may not log in to {body.queue!r}")
    ami = agent_link(deps, who)
    if body.action == "login":
        async with ami_action(deps, "QueueAdd"):
            await ami.queue_add(body.queue, who.interface, member_name=who.member or who.name)
    else:
        async with ami_action(deps, "QueueRemove"):
            await ami.queue_remove(body.queue, who.interface)
    return web.json_response({"agent": who.name, "queue": body.queue, "action": body.action})


async def pause(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    body = await parse_body(request, PauseBody)
    who = _who(request, body.agent)
    ami = agent_link(deps, who)
    async with ami_action(deps, "QueuePause"):
        await ami.queue_pause(
            who.interface, body.paused, queue=body.queue, reason=body.reason or None
        )
    return web.json_response({"agent": who.name, "paused": body.paused, "reason": body.reason})
