"""AMI event throughput over real TCP: bytes written by the fake Asterisk to events in hand.

Three readers of the same bytes (the event blocks of the recorded Asterisk 22 traces,
repeated), each logged in to the fake AMI server, measured in the same run:

- ``cti``: ``AmiClient``: panoramisk's ``Manager`` (``CtiManager``) opening the link, our
  ``AmiProtocol`` + ``AmiParser`` in place of its protocol → queue → ``async for`` consumer;
- ``panoramisk``: panoramisk 1.4's ``Manager`` with a ``*`` event callback;
- ``bare``: the simplest reader: ``StreamReader.readuntil(b"\\r\\n\\r\\n")`` and a dict per block.

    .venv/bin/python bench/bench_ami_client.py                # 200,000 events
    .venv/bin/python bench/bench_ami_client.py --events 50000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fakes.ami_server import FakeAmiServer, frame, read_ami_events  # noqa: E402
from panoramisk import Manager  # noqa: E402

from cti.ami.client import AmiClient  # noqa: E402
from cti.ami.stream import Resynced  # noqa: E402
from cti.config import AmiConfig  # noqa: E402
from cti.logsetup import configure_logging  # noqa: E402

TRACES = ROOT.parent / "shared" / "ami-traces" / "asterisk22"


def payload(count: int) -> tuple[bytes, int]:
    events = [e for path in sorted(TRACES.glob("*.ami")) for e in read_ami_events(path)]
    if not events:
        raise SystemExit(f"no .ami traces found in {TRACES}")
    blocks = [frame(e.items()) for e in events]
    reps = -(-count // len(blocks))
    return b"".join(blocks) * reps, len(blocks) * reps


async def timed(server: FakeAmiServer, data: bytes, done: Awaitable[None]) -> float:
    start = time.perf_counter()
    sender = asyncio.create_task(server.send_raw(data))
    await done
    await sender
    return time.perf_counter() - start


async def run_cti(server: FakeAmiServer, data: bytes, total: int) -> float:
    config = AmiConfig(
        host=server.host, port=server.port, secret="cti-secret", events="on", ping_interval_s=3600
    )
    client = AmiClient(config, filters=())
    await client.start()
    async for item in client.events():
        if isinstance(item, Resynced):
            break

    async def consume() -> None:
        seen = 0
        async for item in client.events():
            if isinstance(item, dict) and "Event" in item:
                seen += 1
                if seen >= total:
                    return

    elapsed = await timed(server, data, consume())
    await client.stop()
    return elapsed


async def run_panoramisk(server: FakeAmiServer, data: bytes, total: int) -> float:
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    seen = 0

    def count(manager: Manager, event: object) -> None:
        nonlocal seen
        seen += 1
        if seen >= total and not finished.done():
            finished.set_result(None)

    manager = Manager(
        loop=loop, host=server.host, port=server.port, username="cti", secret="cti-secret",
        ping_delay=3600, ping_interval=3600,
    )  # fmt: skip
    logins = server.logins
    manager.connect()
    await server.wait_for_logins(logins + 1)
    await asyncio.sleep(0.05)  # let FullyBooted/SuccessfulAuth go by before counting
    manager.register_event("*", count)
    elapsed = await timed(server, data, finished)
    manager.close()
    return elapsed


async def run_bare(server: FakeAmiServer, data: bytes, total: int) -> float:
    reader, writer = await asyncio.open_connection(server.host, server.port, limit=2**20)
    await reader.readline()
    writer.write(b"Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\nEvents: off\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")

    async def consume() -> None:
        seen = 0
        while seen < total:
            block = await reader.readuntil(b"\r\n\r\n")
            event = dict(
                line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line
            )
            if "Event" in event:
                seen += 1

    elapsed = await timed(server, data, consume())
    writer.close()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    configure_logging("warning")
    data, total = payload(args.events)
    print(f"{total:,} events, {len(data) / 1e6:.1f} MB, one core, loopback TCP")
    runners: dict[str, Callable[[FakeAmiServer, bytes, int], Awaitable[float]]] = {
        "cti": run_cti,
        "panoramisk": run_panoramisk,
        "bare": run_bare,
    }
    for name, run in runners.items():
        async with FakeAmiServer() as server:
            elapsed = await run(server, data, total)
        print(f"{name:>11}: {total / elapsed:>10,.0f} events/s  ({elapsed:.2f} s)")


if __name__ == "__main__":
    asyncio.run(main())
