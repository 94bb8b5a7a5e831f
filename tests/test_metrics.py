"""What is refused or lost shows in /metrics: the AMI link and its malformed input, and routing
with a CRM that hangs (through the daemon, its FastAGI server and the fake AMI server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fakes.agi_client import AgiCall, FakeAsterisk
from fakes.crm_directory import HangingDirectory
from interaction_world import World, metric, wait_until, world

from cti.daemon import build_daemon

VIP_RULE = {
    "rules": [{"name": "vip", "when": {"flag": "vip"}, "then": {"tier": "tier2", "priority": 10}}],
    "default": {"tier": "tier1", "reason": "default route"},
}


async def scrape(w: World) -> str:
    _, text = await w.get("/metrics")
    assert isinstance(text, str)
    return text


async def test_the_ami_link_its_reconnects_and_malformed_input_are_counted(
    tmp_path: Path,
) -> None:
    async with world(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}", tmp_path) as w:
        daemon = await w.start()
        text = await scrape(w)
        assert metric(text, "cti_ami_connected") == 1
        assert metric(text, "cti_ami_reconnects_total") == 0

        garbage = b"Foo: bar\r\nBaz: qux\r\n\r\n" * 20  # blocks with neither Event nor Response
        garbage += b"Event: Odd\r\nthis line has no colon\r\n\r\n"
        garbage += b"Event: Huge\r\nCallerIDNum: " + b"7" * 200_000 + b"\r\n\r\n"
        await w.ami.send_raw(garbage)
        await w.ami.send_raw(b"Event: Marker\r\n\r\n")
        await asyncio.sleep(0.2)
        text = await scrape(w)
        assert metric(text, "cti_ami_malformed_total", {"kind": "unroutable"}) == 20
        assert metric(text, "cti_ami_malformed_total", {"kind": "malformed_line"}) == 1
        assert metric(text, "cti_ami_malformed_total", {"kind": "line_cut"}) == 1

        await w.ami.drop_connections()
        await wait_until(lambda: daemon.resyncs >= 2)
        text = await scrape(w)
        assert metric(text, "cti_ami_connected") == 1
        assert metric(text, "cti_ami_reconnects_total") == 1
        # Counts of the link that ended are kept.
        assert metric(text, "cti_ami_malformed_total", {"kind": "unroutable"}) == 20


async def test_route_fallbacks_and_the_open_circuit_show_in_metrics(tmp_path: Path) -> None:
    crm = HangingDirectory()
    async with world(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}", tmp_path, routing=VIP_RULE) as w:
        w.daemon = await build_daemon(w.config, store=w.store, directory=crm)
        await w.daemon.start()
        pbx = FakeAsterisk("127.0.0.1", w.running.agi_port or 0)
        timings = []
        for n in range(12):
            result = await pbx.call(AgiCall(uniqueid=f"1795396343.{n}"))
            assert result.variables["CTI_REASON"] == "fallback"
            timings.append(result.elapsed_s)
        assert min(timings[:5]) > 0.25  # waited the 300 ms deadline, five times
        assert max(timings[5:]) < 0.15  # then at once
        text = await scrape(w)
        assert metric(text, "cti_route_decisions_total") == 12
        assert metric(text, "cti_route_fallbacks_total", {"why": "timeout"}) == 5
        assert metric(text, "cti_route_fallbacks_total", {"why": "circuit_open"}) == 7
        assert metric(text, "cti_route_circuit_open") == 1
        assert metric(text, "cti_route_circuit_opened_total") == 1
        assert metric(text, "cti_route_deadline_overruns_total") is not None
        crm.healed.set()
