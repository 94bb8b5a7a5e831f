"""GET /healthz (AMI connected, database reachable) and GET /metrics (Prometheus)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class PbxCollector(Collector):
    """Each PBX, labelled ``pbx``: ``cti_pbx_ami_connected``, ``cti_pbx_ingested`` (this
    instance holds its lease; 1 with one instance) and ``cti_pbx_resync_refused{action}``."""

    def __init__(self, status: Callable[[], Sequence[Mapping[str, Any]]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Any]:
        pbxs = list(self._status())
        connected = GaugeMetricFamily(
            "cti_pbx_ami_connected",
            "1 while this instance is logged in to the PBX's AMI",
            labels=["pbx"],
        )
        ingested = GaugeMetricFamily(
            "cti_pbx_ingested",
            "1 while this instance ingests the PBX (holds its lease)",
            labels=["pbx"],
        )
        refused = GaugeMetricFamily(
            "cti_pbx_resync_refused",
            "Resync lists the PBX refused at the last (re)connect (1 = refused)",
            labels=["pbx", "action"],
        )
        for pbx in pbxs:
            connected.add_metric([pbx["pbx"]], int(bool(pbx["ami"])))
            ingested.add_metric([pbx["pbx"]], int(bool(pbx["ingested"])))
            for action in sorted(pbx["resync"].get("refused") or {}):
                refused.add_metric([pbx["pbx"], action], 1)
        yield connected
        yield ingested
        yield refused


def setup_metrics(
    app: web.Application,
    registry: CollectorRegistry,
    hub: PopHub,
    resync_status: Callable[[], Mapping[str, Any]] | None = None,
    pbx_status: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
) -> None:
    registry.register(HubCollector(hub))
    if resync_status is not None:
        registry.register(ResyncCollector(resync_status))
    if pbx_status is not None:
        registry.register(PbxCollector(pbx_status))
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


def _pbx_health(pbxs: Sequence[Mapping[str, Any]]) -> tuple[bool, list[str]]:
    """Every PBX (``[[pbx]]``, several instances): down when none this instance ingests has
    its AMI link up (a standby ingesting none is serving: its actions go to the ingester);
    the problems of the others make it degraded."""
    ingested = [p for p in pbxs if p.get("ingested")]
    down = [p for p in ingested if not p.get("ami")]
    problems = [f"AMI link to PBX {p['pbx']} is down" for p in down]
    return (not ingested or len(down) < len(ingested)), problems


async def healthz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    ami = bool(deps.ami_connected())
    links_ok = ami
    pbxs = [dict(p) for p in deps.pbx_status()] if deps.pbx_status is not None else []
    pbx_problems: list[str] = []
    if pbxs:
        links_ok, pbx_problems = _pbx_health(pbxs)
        ingested = [p for p in pbxs if p["ingested"]]
        ami = bool(ingested) and all(p["ami"] for p in ingested)  # this instance's links
    db: bool | None = None
    if deps.db_ok is not None:
        try:
            db = bool(await deps.db_ok())
        except Exception:
            db = False
    ok = links_ok and db is not False
    body: dict[str, Any] = {
        "ok": ok,
        "status": "ok" if ok else "down",
        "ami": ami,
        "db": db,
        "desktops": deps.hub.connected(),
        "time": time.time(),
    }
    if pbxs:
        body["pbxs"] = pbxs
    if deps.resync_status is not None:
        # A refused resync list means calls can be lost at a restart: not healthy, and why.
        resync = dict(deps.resync_status())
        body["resync"] = resync
        if not resync.get("ok", True) and not pbxs:
            ok = False
            body.update(ok=False, status="down", reason=resync.get("reason"))
    for pbx in pbxs:  # any PBX's refused resync, with its id
        resync = pbx["resync"]
        if pbx["ingested"] and not resync.get("ok", True) and "reason" not in body:
            ok = False
            body.update(ok=False, status="down", reason=f"PBX {pbx['pbx']}: {resync.get('reason')}")
    if pbx_problems:
        body["problems"] = list(pbx_problems)
        if ok:
            body["status"] = "degraded"
    if deps.interactions is not None:
        log_state = dict(deps.interactions())
        body["interactions"] = log_state
        # Serving, but something the CRM refused waits for a person: degraded, not down (a
        # restart would not fix it, so the orchestrator must not be told to do one).
        dead = int(log_state.get("dead_letters") or 0)
        if dead:
            body.setdefault("problems", []).append(
                f"{dead} interaction record(s) refused by the CRM, set aside in "
                f"{log_state.get('dead_letter_path') or 'memory (no dead-letter file)'}"
            )
            if ok:
                body["status"] = "degraded"
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[REGISTRY])
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
