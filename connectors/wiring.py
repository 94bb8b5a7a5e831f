"""Connectors built from the configuration, for the composition root (``cti.daemon``).

``build_directory`` gives the chain of ``[[directories]]`` (None when there are none: the
built-in store alone, as before). ``build_outbox`` gives the outbox with a target per webhook
endpoint, the bus when enabled, and a write-back target per source that writes back (None when
there is nothing to send). ``EventsOut`` turns call events into outbox items.
"""

from __future__ import annotations

from typing import Any

from connectors.chain import ChainDirectory
from connectors.events import ALERT, EVENTS_OUT, alert_payload, event_payload
from connectors.http_config import HttpSourceConfig, secret
from connectors.outbox import Outbox, Target
from connectors.settings import CsvSourceConfig, SqlSourceConfig, StoreSourceConfig
from connectors.source import DirectorySource
from connectors.store_source import StoreLike, StoreSource
from connectors.webhooks import WebhookTarget
from connectors.writeback import WriteBackTarget
from crm_core.types import InteractionRecord
from cti.config import Config


def build_directory(config: Config, store: StoreLike) -> ChainDirectory | None:
    if not config.directories:
        return None
    region = config.phone.default_region
    sources: list[DirectorySource] = []
    for entry in config.directories:
        if isinstance(entry, StoreSourceConfig):
            sources.append(StoreSource(store, name=entry.name, timeout_s=entry.timeout_ms / 1000))
        elif isinstance(entry, HttpSourceConfig):
            from connectors.http_source import HttpSource

            sources.append(HttpSource(entry, region=region))
        elif isinstance(entry, SqlSourceConfig):
            from connectors.sql_source import SqlSource

            sources.append(SqlSource(entry, region=region))
        elif isinstance(entry, CsvSourceConfig):
            from connectors.csv_source import CsvSource

            sources.append(CsvSource(entry, region=region))
    return ChainDirectory(
        sources, region=region, internal_max_digits=config.phone.internal_max_digits
    )


def build_outbox(config: Config, engine: Any, chain: ChainDirectory | None) -> Outbox | None:
    targets: list[Target] = []
    for endpoint in config.webhooks.endpoints:
        events = frozenset(endpoint.events) if endpoint.events else None
        targets.append(
            WebhookTarget(
                endpoint.name,
                endpoint.url,
                secret(endpoint.secret),
                events=events,
                timeout_s=endpoint.timeout_s,
            )
        )
    if config.bus.enabled:
        from connectors.bus import BusTarget

        events = frozenset(config.bus.events) if config.bus.events else None
        targets.append(BusTarget(secret(config.bus.url), config.bus.exchange, events=events))
    for source in chain.sources if chain is not None else ():
        if getattr(source, "writes_back", False):
            targets.append(WriteBackTarget(source))  # type: ignore[arg-type]
    if not targets or engine is None:
        return None
    return Outbox(
        engine,
        targets,
        retry_initial_s=config.webhooks.retry_initial_s,
        retry_max_s=config.webhooks.retry_max_s,
        give_up_after_s=config.webhooks.give_up_after_s,
    )


class EventsOut:
    """Call events and alerts into the outbox, in the shape ``connectors.events`` documents."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def publish(
        self, event: Any, context: Any, interaction: InteractionRecord | None = None
    ) -> None:
        if event.event not in EVENTS_OUT:
            return
        payload = event_payload(event.event, event.call, event.ts, event.data, context,
                                interaction)  # fmt: skip
        self._outbox.submit(event.event, event.call, payload, idempotency_key=payload["id"])

    def publish_alert(self, alert: Any) -> None:
        """An alert raised or cleared (``Supervision.on_alert``); one subject's in order."""
        payload = alert_payload(alert)
        self._outbox.submit(ALERT, f"alert:{alert.key}", payload, idempotency_key=payload["id"])
