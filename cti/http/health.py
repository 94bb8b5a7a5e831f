"""GET /healthz (AMI connected, database reachable) and GET /metrics (Prometheus)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cti.http.auth import Handler
from cti.http.state import DEPS
from cti.hub import PopHub

REGISTRY = web.AppKey("registry", CollectorRegistry)
REQUESTS = web.AppKey("requests", Counter)


class HubCollector(Collector):
    """Exports the hub's counters at scrape time (the hub itself knows nothing of Prometheus)."""

    def __init__(self, hub: PopHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Any]:
        stats = self._hub.stats
        clients = GaugeMetricFamily("cti_desktops_connected", "Desktops connected to /ws")
        clients.add_metric([], self._hub.connected())
        yield clients
        messages = CounterMetricFamily(
            "cti_hub_messages", "Messages built by the pop hub", labels=["type"]
        )
        for kind, count in sorted(stats.by_type.items()):
            messages.add_metric([kind], count)
        yield messages
        delivered = CounterMetricFamily("cti_hub_delivered", "Messages queued to desktops")
        delivered.add_metric([], stats.delivered)
        yield delivered
        dropped = CounterMetricFamily(
            "cti_hub_dropped_desktops", "Desktops dropped for not keeping up"
        )
        dropped.add_metric([], stats.dropped_clients)
        yield dropped


class ResyncCollector(Collector):
    """``cti_ami_resync_refused{action}``: 1 for each resync list Asterisk refused last time."""

    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Any]:
        status = self._status()
        refused = GaugeMetricFamily(
            "cti_ami_resync_refused",
            "Resync lists Asterisk refused at the last (re)connect (1 = refused)",
            labels=["action"],
        )
        for action in sorted(status.get("refused") or {}):
            refused.add_metric([action], 1)
        yield refused
        retries = CounterMetricFamily(
            "cti_ami_resync_retries", "Resyncs asked again while Asterisk was starting"
        )
        retries.add_metric([], float(status.get("retries") or 0))
        yield retries


def setup_metrics(
    app: web.Application,
    registry: CollectorRegistry,
    hub: PopHub,
    resync_status: Callable[[], Mapping[str, Any]] | None = None,
) -> None:
    registry.register(HubCollector(hub))
    if resync_status is not None:
        registry.register(ResyncCollector(resync_status))
    app[REGISTRY] = registry
    app[REQUESTS] = Counter(
        "cti_http_requests",
        "HTTP requests by route and status",
        ["method", "route", "status"],
        registry=registry,
    )


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[REQUESTS].labels(request.method, route, str(status)).inc()


async def healthz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    ami = bool(deps.ami_connected())
    db: bool | None = None
    if deps.db_ok is not None:
        try:
            db = bool(await deps.db_ok())
        except Exception:
            db = False
    ok = ami and db is not False
    body: dict[str, Any] = {
        "ok": ok,
        "status": "ok" if ok else "down",
        "ami": ami,
        "db": db,
        "desktops": deps.hub.connected(),
        "time": time.time(),
    }
    if deps.resync_status is not None:
        # A refused resync list means calls can be lost at a restart: not healthy, and why.
        resync = dict(deps.resync_status())
        body["resync"] = resync
        if not resync.get("ok", True):
            ok = False
            body.update(ok=False, status="down", reason=resync.get("reason"))
    if deps.interactions is not None:
        log_state = dict(deps.interactions())
        body["interactions"] = log_state
        # Serving, but something the CRM refused waits for a person: degraded, not down (a
        # restart would not fix it, so the orchestrator must not be told to do one).
        dead = int(log_state.get("dead_letters") or 0)
        if dead:
            body["problems"] = [
                f"{dead} interaction record(s) refused by the CRM, set aside in "
                f"{log_state.get('dead_letter_path') or 'memory (no dead-letter file)'}"
            ]
            if ok:
                body["status"] = "degraded"
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[REGISTRY])
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
