"""Generated AMI bytes at the daemon's AMI client and generated FastAGI header blocks at its
FastAGI server, over real TCP: no traceback, nothing stops, and a normal call is still tracked,
recorded and routed afterwards.

The daemon runs in its own event loop in a thread (hypothesis drives plain functions); the
fuzzed bytes go through the fake AMI server's ``send_raw`` and a raw socket to the AGI port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
from fakes.agi_client import AgiCall, FakeAsterisk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interaction_world import World, recorded, renumbered, unique_shift, wait_until, world

T = TypeVar("T")

# Log events that mean an exception escaped where it should have been handled.
FAILURES = {
    "ami.parse_failed",
    "ami.message_failed",
    "tracker.failed",
    "call_event.failed",
    "fastagi session failed",
    "routing failed, default route",
    "daemon.stop_failed",
}


class Running:
    """A daemon (and fake AMI server) on an event loop of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack = AsyncExitStack()
        self.world: World = self.run(self._start(tmp_path))

    async def _start(self, tmp_path: Path) -> World:
        url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
        w = await self.stack.enter_async_context(world(url, tmp_path))
        await w.start()
        return w

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Running, structlog.testing.LogCapture]]:
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[capture])
    r = Running(tmp_path)
    try:
        yield r, capture
    finally:
        r.close()


def failures(capture: structlog.testing.LogCapture) -> list[dict[str, Any]]:
    return [
        e
        for e in capture.entries
        if e.get("event") in FAILURES or e.get("exc_info") or e.get("log_level") == "critical"
    ]


# ---- AMI ---------------------------------------------------------------------------------

EVENTS = [
    "Newchannel",
    "Hangup",
    "BridgeEnter",
    "BridgeLeave",
    "QueueCallerJoin",
    "DialBegin",
    "AgentConnect",
    "AttendedTransfer",
    "BlindTransfer",
    "Rename",
    "NewCallerid",
    "QueueMemberStatus",
    "SoftHangupRequest",
    "AgentCalled",
    "QueueCallerAbandon",
]
KEYS = [
    "Channel",
    "Uniqueid",
    "Linkedid",
    "CallerIDNum",
    "DestUniqueid",
    "DestChannel",
    "BridgeUniqueid",
    "Queue",
    "MemberName",
    "Interface",
    "Cause",
    "Timestamp",
    "TransferTargetUniqueid",
    "OrigTransfererUniqueid",
    "Response",
    "ActionID",
    "EventList",
    "Event",
]
text = st.text(st.characters(codec="utf-8"), max_size=40)
ids = st.sampled_from(["1.1", "1.2", "2.1", "", "x", "1795394556.0", "-1", "1e9"])
value = st.one_of(text, ids, st.sampled_from(EVENTS), st.text("0123456789.:;/-@", max_size=20))
header = st.tuples(st.sampled_from(KEYS) | text, value)
block = st.tuples(st.sampled_from(EVENTS), st.lists(header, max_size=12)).map(
    lambda b: ("Event: " + b[0] + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in b[1])).encode(
        "utf-8", "surrogatepass"
    )
)
ami_bytes = st.lists(
    st.one_of(block, st.binary(max_size=300), st.just(b"X" * 9000 + b"\r\n")), max_size=6
).map(lambda parts: b"\r\n".join(parts) + b"\r\n\r\n")


async def _settle(w: World) -> None:
    client: Any = w.running.parts.ami
    await client.ping()  # answered after everything sent before it was read
    await wait_until(lambda: client.backlog == 0)
    await asyncio.sleep(0.002)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=ami_bytes)
def test_generated_ami_input_never_breaks_the_daemon(
    running: tuple[Running, structlog.testing.LogCapture], data: bytes
) -> None:
    r, capture = running
    w = r.world
    r.run(w.ami.send_raw(data))
    r.run(_settle(w))
    assert not failures(capture)
    assert w.running.parts.ami is not None and getattr(w.running.parts.ami, "connected", False)


def test_after_garbage_a_normal_call_is_still_tracked_and_recorded(
    running: tuple[Running, structlog.testing.LogCapture], traces_dir: Path
) -> None:
    r, capture = running
    w = r.world
    for data in (b"\x00\xff" * 500, b"Event: Hangup\r\nUniqueid: \r\n\r\n", b"Response:\r\n\r\n"):
        r.run(w.ami.send_raw(data + b"\r\n\r\n"))
    call_id = r.run(w.call(renumbered(recorded(traces_dir), unique_shift())))
    assert r.run(w.running.parts.recorder.flush(10.0))
    row = r.run(w.store.interaction(call_id))
    assert row is not None and row["outcome"] == "answered"
    assert not failures(capture)


# ---- FastAGI -----------------------------------------------------------------------------

AGI_KEYS = [
    "agi_network",
    "agi_request",
    "agi_channel",
    "agi_uniqueid",
    "agi_callerid",
    "agi_calleridname",
    "agi_dnid",
    "agi_extension",
    "agi_arg_1",
    "agi_callingpres",
]
one_line = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=40)
agi_header = st.tuples(st.sampled_from(AGI_KEYS), one_line | ids).map(
    lambda kv: f"{kv[0]}: {kv[1]}\n"
)
agi_block = st.tuples(
    st.lists(agi_header, min_size=1, max_size=25),
    st.sampled_from(["agi_network_script: route\n", "agi_network_script: other\n", ""]),
    st.sampled_from(["", "garbage line\n", "agi_callerid: " + "9" * 70_000 + "\n", "\r\n"]),
).map(lambda b: (b[1] + "".join(b[0]) + b[2] + "\n").encode("utf-8", "surrogatepass"))
agi_bytes = st.one_of(agi_block, st.binary(max_size=500))


def _agi_session(port: int, data: bytes) -> None:
    """Write the bytes, answer whatever comes with 200 result=1, until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=agi_bytes)
def test_generated_fastagi_input_never_breaks_the_router(
    running: tuple[Running, structlog.testing.LogCapture], data: bytes
) -> None:
    r, capture = running
    port = r.world.running.agi_port
    assert port is not None
    _agi_session(port, data)
    assert not failures(capture)


def test_after_garbage_a_normal_agi_request_is_still_routed(
    running: tuple[Running, structlog.testing.LogCapture],
) -> None:
    r, capture = running
    port = r.world.running.agi_port
    assert port is not None
    for data in (b"\x00" * 100, b"agi_callerid: \x00\n\n", b"\n\n\n", b"agi_x" * 20_000):
        _agi_session(port, data)
    result = r.run(FakeAsterisk("127.0.0.1", port).call(AgiCall()))
    assert result.variables["CTI_QUEUE"] == "tier1" and result.closed
    assert not failures(capture)
