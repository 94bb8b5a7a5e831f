"""What the daemon refused, lost or worked around, for ``/metrics`` (read at scrape time).

Each part keeps plain counters and knows nothing of Prometheus; ``DaemonCollector`` reads them:

==============================================  ======  ==========================================
``cti_ami_connected``                           gauge   1 while logged in to AMI
``cti_ami_reconnects_total``                    count   logins after the first
``cti_ami_malformed_total{kind}``               count   ``malformed_line`` (no ``Key: value``),
                                                        ``line_cut`` (over-long line, cut),
                                                        ``block_dropped`` (over-long block),
                                                        ``unroutable`` (no Event/Response)
``cti_ami_channels_expired_total``              count   channels Asterisk no longer reported,
                                                        dropped by the periodic check
``cti_interactions_written_total``              count   interaction records written
``cti_interactions_pending``                    gauge   waiting to be written (CRM down)
``cti_interactions_write_failures_total``       count   write attempts failed (CRM down, slow)
``cti_interactions_refused_total``              count   records the CRM refused, set aside
``cti_interactions_dead_letters``               gauge   records set aside now
``cti_stats_refused_total``                     count   a call's legs or an agent's activity the
                                                        database refused (dropped, logged)
``cti_call_state_refused_total``                count   calls the database refused to keep for a
                                                        restart (logged)
``cti_route_decisions_total``                   count   FastAGI routing decisions
``cti_route_fallbacks_total{why}``              count   default route for want of the CRM:
                                                        ``timeout``, ``error``, ``circuit_open``
``cti_route_deadline_overruns_total``           count   decisions later than the deadline
``cti_route_circuit_open``                      gauge   1 while the CRM is not asked
``cti_route_circuit_opened_total``              count   times the breaker opened
``cti_ivr_sessions_total{outcome}``             count   callers asked by the IVR: ``identified``,
                                                        ``not_identified``, ``no_input``,
                                                        ``ended``, ``crm_unavailable``
``cti_ivr_told_total``                          count   callers told their order's state
``cti_ivr_deflected_total``                     count   ... who then ended the call there
``cti_log_suppressed_total``                    count   repeated warnings not written
==============================================  ======  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cti.ami.wire import WireStats
from cti.routing.ivr import IvrStats
from cti.routing.router import CircuitBreaker, RouterStats


class RecorderCounts(Protocol):
    written: int
    failures: int
    refused: int

    @property
    def pending(self) -> int: ...

    @property
    def dead_letters(self) -> int: ...


@runtime_checkable
class AmiLinkCounts(Protocol):
    """``cti.ami.client.AmiClient`` as far as metrics go."""

    connects: int

    @property
    def connected(self) -> bool: ...

    def wire_stats(self) -> WireStats: ...


class IvrCounts(Protocol):
    stats: IvrStats


class RouterCounts(Protocol):
    stats: RouterStats
    breaker: CircuitBreaker


@dataclass(frozen=True)
class MetricSources:
    recorder: RecorderCounts
    router: RouterCounts | None = None
    ivr: IvrCounts | None = None
    ami: AmiLinkCounts | None = None
    channels_expired: Callable[[], int] | None = None
    log_suppressed: Callable[[], int] | None = None
    stats_refused: Callable[[], int] | None = None
    call_state_refused: Callable[[], int] | None = None


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


class DaemonCollector(Collector):
    def __init__(self, sources: MetricSources) -> None:
        self._s = sources

    def collect(self) -> Iterator[Any]:
        s = self._s
        rec = s.recorder
        yield _counter("cti_interactions_written", "Interaction records written", rec.written)
        yield _gauge("cti_interactions_pending", "Interaction records waiting", rec.pending)
        yield _counter(
            "cti_interactions_write_failures",
            "Interaction writes failed with the CRM down or slow (retried)",
            rec.failures,
        )
        yield _counter(
            "cti_interactions_refused",
            "Interaction records the CRM refused, set aside",
            rec.refused,
        )
        yield _gauge(
            "cti_interactions_dead_letters", "Interaction records set aside now", rec.dead_letters
        )
        if s.stats_refused is not None:
            yield _counter(
                "cti_stats_refused",
                "Call legs (per call) and agent activity the database refused, dropped",
                s.stats_refused(),
            )
        if s.call_state_refused is not None:
            yield _counter(
                "cti_call_state_refused",
                "Calls the database refused to keep for a restart",
                s.call_state_refused(),
            )
        if s.ami is not None:
            yield _gauge("cti_ami_connected", "1 while logged in to AMI", int(s.ami.connected))
            yield _counter(
                "cti_ami_reconnects", "AMI logins after the first", max(0, s.ami.connects - 1)
            )
            wire = s.ami.wire_stats()
            malformed = CounterMetricFamily(
                "cti_ami_malformed", "AMI input refused or repaired", labels=["kind"]
            )
            malformed.add_metric(["malformed_line"], wire.malformed_lines)
            malformed.add_metric(["line_cut"], wire.lines_cut)
            malformed.add_metric(["block_dropped"], wire.blocks_dropped)
            malformed.add_metric(["unroutable"], wire.unroutable)
            yield malformed
        if s.channels_expired is not None:
            yield _counter(
                "cti_ami_channels_expired",
                "Channels Asterisk no longer reported, dropped",
                s.channels_expired(),
            )
        if s.router is not None:
            stats, breaker = s.router.stats, s.router.breaker
            yield _counter("cti_route_decisions", "FastAGI routing decisions", stats.decisions)
            fallbacks = CounterMetricFamily(
                "cti_route_fallbacks", "Default routes for want of the CRM", labels=["why"]
            )
            for why in ("timeout", "error", "circuit_open"):
                fallbacks.add_metric([why], stats.fallbacks.get(why, 0))
            yield fallbacks
            yield _counter(
                "cti_route_deadline_overruns",
                "Routing decisions later than the deadline",
                stats.deadline_overruns,
            )
            yield _gauge(
                "cti_route_circuit_open",
                "1 while the CRM is not asked (circuit breaker open)",
                int(breaker.state == "open"),
            )
            yield _counter(
                "cti_route_circuit_opened", "Times the CRM circuit breaker opened", breaker.opened
            )
        if s.ivr is not None:
            ivr = s.ivr.stats
            outcomes = CounterMetricFamily(
                "cti_ivr_sessions", "Callers asked who they are, by outcome", labels=["outcome"]
            )
            for outcome, count in sorted(ivr.outcomes.items()):
                outcomes.add_metric([outcome], count)
            yield outcomes
            yield _counter("cti_ivr_told", "Callers told their order's delivery state", ivr.told)
            yield _counter(
                "cti_ivr_deflected",
                "Callers served by the IVR (told their order's state, ended the call)",
                ivr.deflected,
            )
        if s.log_suppressed is not None:
            yield _counter(
                "cti_log_suppressed", "Repeated warnings not written", s.log_suppressed()
            )
