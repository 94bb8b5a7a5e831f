"""What the HTTP API needs from supervision (``cti.supervisor.service.Supervision``)."""

from __future__ import annotations

from typing import Any, Protocol

from cti.hub import HubMessage
from cti.supervisor.listen import Supervise


class SupervisionApi(Protocol):
    @property
    def supervise(self) -> Supervise | None: ...

    async def took_call(self, call_id: str, member: str) -> bool: ...

    def live_stats(self) -> dict[str, Any]: ...

    async def period_stats(self, start: float, end: float, group_by: str) -> dict[str, Any]: ...

    def board(self) -> dict[str, Any]: ...

    def snapshot(self) -> HubMessage: ...

    def view(self) -> dict[str, Any]: ...

    def console_snapshot(self) -> HubMessage: ...
