"""Routing against the real CRM store (SQLite file and PostgreSQL), over real FastAGI TCP."""

from __future__ import annotations

from fakes.agi_client import AgiCall, FakeAsterisk
from fakes.routing import OPEN, routing_rules

from crm_core.testing import empty_store
from cti.agi.server import FastAgiServer
from cti.routing.decisions import DecisionLog
from cti.routing.router import Router


async def test_callers_in_the_crm_store_are_routed_by_their_flags_and_language(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        vip = await store.upsert_customer(
            name="Victor Ashby", phones=["020 7123 4567"], flags=["vip"]
        )
        french = await store.upsert_customer(
            name="Camille Martin", phones=["+33 6 12 34 56 78"], language="fr"
        )
        router = Router(store, routing_rules(), deadline_s=2.0, clock=lambda: OPEN)
        server = FastAgiServer(router, DecisionLog(), "127.0.0.1", 0)
        async with server:
            asterisk = FakeAsterisk("127.0.0.1", server.port)
            as_vip = await asterisk.call(AgiCall(callerid="+442071234567"))
            as_french = await asterisk.call(AgiCall(callerid="0033612345678"))
            stranger = await asterisk.call(AgiCall(callerid="+442079460999"))
            withheld = await asterisk.call(AgiCall().withheld())
        await router.aclose()
    finally:
        await store.close()
    assert as_vip.variables["CTI_QUEUE"] == "vip"
    assert as_vip.variables["CTI_CUSTOMER_ID"] == str(vip.customer_id)
    assert as_french.variables["CTI_QUEUE"] == "french"
    assert as_french.variables["CTI_CUSTOMER_ID"] == str(french.customer_id)
    assert (stranger.variables["CTI_REASON"], stranger.variables["CTI_CUSTOMER_ID"]) == (
        "not in the CRM",
        "",
    )
    assert withheld.variables["CTI_REASON"] == "withheld number"
