"""A small FastAGI server on asyncio streams: read the request, route, SET VARIABLE, close.

Not panoramisk's FastAGI: its header loop spins on a bare connect-then-close, and a multi-line
520 reply leaves its reader one line out of step. Here every read is line-framed with an end
(EOF, garbage, HANGUP notices, 520 blocks), and every session is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from cti.agi.env import caller_id, dialled_number, withheld
from cti.agi.protocol import (
    AgiChannel,
    AgiClosed,
    AgiError,
    read_environment,
    set_variable,
)
from cti.routing.decisions import DecisionLog
from cti.routing.router import Router

if TYPE_CHECKING:
    from cti.routing.ivr import IvrFlow

log = structlog.get_logger(__name__)

SCRIPTS = frozenset({"route", ""})  # agi://host:port/route (or no path)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FastAgiServer:
    """Serves ``agi://HOST:PORT/route``; ``port`` 0 picks a free port (``.port`` after start)."""

    def __init__(
        self,
        router: Router,
        decisions: DecisionLog,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        header_timeout_s: float = 5.0,
        session_timeout_s: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
        ivr: IvrFlow | None = None,
    ) -> None:
        self._router = router
        self._ivr = ivr
        self._decisions = decisions
        self._host = host
        self._port = port
        self._header_timeout_s = header_timeout_s
        self._session_timeout_s = session_timeout_s
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the FastAGI server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, backlog=1024)
        log.info("fastagi listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        """Stop accepting, end the sessions still running, release the port."""
        if self._server is None:
            return
        self._server.close()
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            async with asyncio.timeout(self._session_timeout_s) as budget:
                await self._session(reader, writer, budget)
        except TimeoutError:
            log.warning("fastagi session timed out", limit_s=self._session_timeout_s)
        except AgiClosed as exc:
            log.debug("fastagi peer closed", why=str(exc))
        except AgiError as exc:
            log.warning("fastagi peer is not speaking AGI", why=str(exc))
        except (ConnectionError, OSError) as exc:
            log.debug("fastagi connection lost", why=str(exc))
        except Exception:
            log.exception("fastagi session failed")
        finally:
            # Closed, not awaited: the peer's EOF has been read (or the session is being given
            # up), and the transport finishes closing on its own without a task per session.
            writer.close()
            if task is not None:
                self._sessions.discard(task)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: asyncio.Timeout
    ) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._header_timeout_s):
                env = await read_environment(reader)
        except AgiClosed:
            log.debug("fastagi connect without a request")  # health checks, port scans
            return
        uniqueid = env.get("agi_uniqueid", "")
        channel = env.get("agi_channel") or None
        # This task's own context: bound for the rest of the session, gone with the task.
        structlog.contextvars.bind_contextvars(uniqueid=uniqueid, channel=channel)
        script = env.get("agi_network_script", "").split("?", 1)[0].strip("/")
        if script not in SCRIPTS:
            log.warning("fastagi request for an unknown script, nothing set", script=script)
            return
        caller = caller_id(env)
        dnid = dialled_number(env)
        decision = await self._router.route(caller, dnid)
        if withheld(env):
            decision = dataclasses.replace(decision, withheld=True)
        if uniqueid:
            self._decisions.record(uniqueid, channel, decision, self._clock())
        agi = AgiChannel(reader, writer)
        if self._ivr is not None and self._ivr.wanted(decision):

            def typed_for(seconds: float) -> None:
                # The session deadline is for us and the CRM, not for the caller's typing.
                when = budget.when()
                if when is not None:
                    budget.reschedule(when + seconds)

            decision = await self._ivr.run(agi, decision, caller, dnid, typed_for=typed_for)
            if uniqueid:
                self._decisions.record(uniqueid, channel, decision, self._clock())
        for name, value in decision.dialplan_variables().items():
            reply = await agi.command(set_variable(name, value))
            if reply.code == 511:
                break  # cannot happen for SET VARIABLE, but a dead channel takes nothing more
            if reply.code != 200:
                log.warning("fastagi command refused", variable=name, code=reply.code)
        log.debug(  # the decision log keeps the why of every call; this is for tracing
            "call routed",
            caller=caller,
            dnid=dnid,
            queue=decision.queue,
            priority=decision.priority,
            rule=decision.rule,
            reason=decision.reason,
            fallback=decision.fallback,
            hung_up=agi.hung_up,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        await self._close(reader, writer)

    @staticmethod
    async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close (the dialplan goes on at once), then read Asterisk's HANGUP to its EOF,
        so that the socket closes cleanly rather than with a reset."""
        if writer.can_write_eof():
            writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(2.0):
                while await reader.read(4096):
                    pass
