"""What the HTTP API needs from the rest of the daemon, passed in by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from crm_core.callbacks import CallbackBook
from crm_core.cases import CaseBook
from crm_core.merge import CustomerMaintenance
from crm_core.types import CustomerView, Resolution
from cti.callback_feed import CallbackNews
from cti.calls import LiveCalls
from cti.config import Config
from cti.hub import PopHub
from cti.pbx_actions import ActionLink, PbxLinks

if TYPE_CHECKING:
    from cti.http.forward import Forwarder
from cti.supervisor.api import SupervisionApi

# The AMI actions the API sends, each raising on failure: one PBX's link (the same protocol).
CallActions = ActionLink


class CustomerStore(Protocol):
    """What the API needs from the CRM (``crm_core`` store or a connector)."""

    async def resolve(self, caller_id: str | None) -> Resolution: ...

    async def view(self, customer_id: int) -> CustomerView | None: ...

    async def search(self, query: str, limit: int = 20) -> Sequence[Any]: ...


def _never_connected() -> bool:
    return False


@dataclass(frozen=True)
class ApiDeps:
    """The collaborators of the HTTP API. ``ami_errors`` are the exceptions that mean 502."""

    config: Config
    hub: PopHub
    calls: LiveCalls
    crm: CustomerStore
    ami: CallActions
    ami_errors: tuple[type[BaseException], ...] = ()
    ami_connected: Callable[[], bool] = _never_connected
    db_ok: Callable[[], Awaitable[bool]] | None = None
    registry: CollectorRegistry | None = None
    # The interaction log's state for /healthz (``InteractionRecorder.status``).
    interactions: Callable[[], Mapping[str, Any]] | None = None
    # The last AMI resync: {"ok": bool, "refused": {action: message}, ...} (GET /healthz).
    resync_status: Callable[[], Mapping[str, Any]] | None = None
    # POST /api/route (cti.routing.http.route_handler), mounted when given.
    route_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
    # Statistics and the supervisor console (cti.supervisor.service.Supervision), when wired.
    supervision: SupervisionApi | None = None
    # Cases from the pop and callback tasks (cti.http.cases), on the CRM's database.
    cases: CaseBook | None = None
    callbacks: CallbackBook | None = None
    # Tells a task's queue's desktops at once that it changed (dialling, open again).
    callback_news: CallbackNews | None = None
    # Merge, divide and duplicates of the CRM store's customers (supervisors), when wired.
    customers_admin: CustomerMaintenance | None = None
    # The link of each PBX, chosen by call or by agent (cti.pbx_actions); None: ``ami`` alone.
    pbx: PbxLinks | None = None
    # Each PBX's link, resync and lease state for /healthz (PbxStatus.status), when wired.
    pbx_status: Callable[[], Sequence[Mapping[str, Any]]] | None = None
    # GET /api/stats/live with several instances: every ingester's figures (cti.cluster.livestats).
    live_stats: Callable[[], Awaitable[Mapping[str, Any]]] | None = None
    # Several instances: call-scoped requests to the ingester of the call's PBX (cti.http.forward).
    forward: Forwarder | None = None
