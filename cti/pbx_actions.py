"""Which PBX an action goes to, and over which link.

An action on a call (escalation, spying, recording, the customer id on the caller's channel)
goes to the PBX the call is on: its id's ``<pbx>:`` prefix (``cti.cluster.pbxs``). An agent's
action with no call (pause, queue login/logout, click-to-dial, a callback's dial) goes to the
PBX the agent's phone is on: ``pbx`` of the agent in the config, or the only PBX when there
is one. With several PBXs, an agent whose phone names no PBX is refused (409), never sent to
the first PBX by default: the same ``PJSIP/1001`` may exist on both.

The link is the PBX's own AMI client when this process ingests the PBX. With several
instances (``[cluster]``) a PBX ingested by another instance is reached through it
(``cti.cluster.relay``): only the ingester is logged in to that PBX, and a desktop's request
may land on any instance behind the load balancer. Nothing ingests it (a takeover under
way): 503 naming the PBX. Choosing raises ``PbxRefused`` before any action is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cti.cluster.pbxs import pbx_of
from cti.config import AgentConfig


class PbxRefused(Exception):
    """An action that cannot go to its PBX: ``status`` and a message for the API."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ActionLink(Protocol):
    """One PBX's AMI actions (``cti.ami.client.AmiClient``, or a relay to the ingester)."""

    async def setvar(self, variable: str, value: str, *, channel: str | None = None) -> Any: ...

    async def redirect(
        self, channel: str, *, context: str, exten: str, priority: int = 1
    ) -> Any: ...

    async def blind_transfer(self, channel: str, *, exten: str, context: str) -> Any: ...

    async def originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int = 1,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> Any: ...

    async def queue_add(
        self, queue: str, interface: str, *, member_name: str | None = None
    ) -> Any: ...

    async def queue_remove(self, queue: str, interface: str) -> Any: ...

    async def queue_pause(
        self, interface: str, paused: bool, *, queue: str | None = None, reason: str | None = None
    ) -> Any: ...

    async def send_action(self, fields: Mapping[str, str]) -> Any: ...


def _everywhere(_pbx: str) -> bool:
    return True


class PbxLinks:
    """The link of each PBX, chosen by call or by agent.

    ``links``: this process's AMI client of each PBX (filled by the composition root);
    ``ingesting(pbx)``: does this instance ingest it now (one instance: always);
    ``remote(pbx)``: the link through the instance that does (None: no cluster)."""

    def __init__(
        self,
        pbx_ids: list[str],
        *,
        several: bool,
        ingesting: Callable[[str], bool] = _everywhere,
        remote: Callable[[str], ActionLink] | None = None,
    ) -> None:
        self.pbx_ids = list(pbx_ids)
        self.several = several
        self.links: dict[str, ActionLink] = {}
        self._ingesting = ingesting
        self._remote = remote

    def of_call(self, call_id: str) -> str:
        if not self.several:
            return self.pbx_ids[0]
        pbx = pbx_of(call_id)
        if pbx is None or pbx not in self.pbx_ids:
            raise PbxRefused(409, f"call_id: call {call_id} is on no configured PBX")
        return pbx

    def of_agent(self, agent: AgentConfig) -> str:
        if agent.pbx:
            if agent.pbx not in self.pbx_ids:
                known = ", ".join(self.pbx_ids)
                why = f"{agent.name}'s PBX {agent.pbx!r} is not one of {known}"
                raise PbxRefused(409, f"agent: {why}")
            return agent.pbx
        if not self.several:
            return self.pbx_ids[0]
        raise PbxRefused(
            409,
            f"agent: {agent.name}'s phone is on no PBX in the config: set pbx to one of "
            f"{', '.join(self.pbx_ids)} for this agent",
        )

    def link(self, pbx: str) -> ActionLink:
        local = self.links.get(pbx)
        if local is not None and self._ingesting(pbx):
            return local
        if self._remote is not None:
            return self._remote(pbx)
        if local is not None:
            return local
        raise PbxRefused(503, f"pbx: no AMI link to PBX {pbx} in this process")

    def standby_for(self, call_id: str) -> str | None:
        """The PBX of a call that another instance ingests (None: this one, or unknown):
        its live calls are that instance's, not in this one's memory."""
        if self._remote is None:
            return None
        try:
            pbx = self.of_call(call_id)
        except PbxRefused:
            return None
        return None if self._ingesting(pbx) else pbx

    def for_call(self, call_id: str) -> ActionLink:
        return self.link(self.of_call(call_id))

    def for_agent(self, agent: AgentConfig) -> ActionLink:
        return self.link(self.of_agent(agent))

    def same_pbx(self, agent: AgentConfig, call_id: str) -> ActionLink:
        """The link for an agent's phone acting on a call (spying): both on one PBX."""
        mine, theirs = self.of_agent(agent), self.of_call(call_id)
        if mine != theirs:
            raise PbxRefused(
                409,
                f"call_id: call {call_id} is on PBX {theirs}, {agent.name}'s phone on {mine}",
            )
        return self.link(theirs)
