"""Listen, whisper and barge, and call recordings, through AMI.

- **Spying**: an ``Originate`` of the supervisor's own phone into Asterisk's ``ChanSpy`` on
  the agent's channel: ``q`` (no beep, no name announced), ``E`` (leave when the spied-on
  channel hangs up), plus ``w`` to whisper (only the agent hears the supervisor) or ``B`` to
  barge (both hear). Listening alone: neither the agent nor the caller hear the supervisor.
- **Recording**: ``MixMonitor`` on the caller's channel (the whole call, across transfers)
  when the call is answered in a queue of ``[supervisor] record_queues``, into
  ``<recordings_dir>/<call id>.wav``; ``MixMonitorMute`` (both directions) pauses it, e.g.
  while a card number is read out.

Everything is validated before an action reaches the PBX, and written to the audit log.
With several PBXs (``links``, ``cti.pbx_actions``) each action goes to the call's PBX, and a
supervisor listens only to calls on the PBX their phone is on.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import platformdirs
import structlog

from cti.config import AgentConfig, SupervisorConfig
from cti.pbx_actions import PbxLinks, PbxRefused
from cti.supervisor.audit import AuditLog

log = structlog.get_logger(__name__)

SPY_OPTIONS = {"listen": "qE", "whisper": "qEw", "barge": "qEB"}
# The raw AMI events that end a spy session before its call ends (``Supervise.ami_event``).
SPY_EVENTS = frozenset({"ChanSpyStart", "ChanSpyStop", "Hangup"})
# A channel name as Asterisk makes them; anything else (commas, pipes) could change the
# application's arguments.
_CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/@._;:+#\-]{0,199}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SupervisionRefused(Exception):
    """A request that must not reach the PBX: ``status`` and a message for the API."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PbxActions(Protocol):
    """The AMI actions supervision sends (``cti.ami.client.AmiClient``)."""

    async def originate(
        self,
        channel: str,
        *,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> Any: ...

    async def send_action(self, fields: Mapping[str, str]) -> Any: ...


class CallLike(Protocol):
    call_id: str
    state: str
    agent: str | None
    agent_channel: str | None
    caller_channel: str | None
    queue: str | None
    agents: list[str]


def _channel_of(channel: str, interface: str) -> bool:
    """Is ``channel`` one of this phone's (``PJSIP/9000`` → ``PJSIP/9000-0000002a``;
    ``Local/9000@agents/n`` → ``Local/9000@agents-00000003;1``)?"""
    if interface.startswith("Local/") and interface.count("/") > 1:
        interface = interface.rsplit("/", 1)[0]  # Local's options are not in its name
    return channel.startswith(f"{interface}-")


def recordings_dir(config: SupervisorConfig) -> Path:
    return Path(config.recordings_dir or Path(platformdirs.user_data_dir("cti")) / "recordings")


def recording_file(directory: Path, call_id: str) -> Path:
    """Where a call's recording is: named after the call id, made safe for a file name."""
    return directory / f"{_UNSAFE.sub('_', call_id)}.wav"


@dataclass
class _Session:
    """A listen/whisper/barge session: the supervisor's phone spying on an agent's channel.
    ``spyer`` is the phone's channel, known from ``ChanSpyStart``."""

    call_id: str
    phone: str
    spyee: str
    audit_id: int | None = None
    spyer: str | None = None
    started_at: float | None = None  # ChanSpyStart: the supervisor's phone answered, spying
    ended_at: float | None = None  # ended before its audit row was written


class Supervise:
    """Spying and recording for the API and the event flow."""

    def __init__(
        self,
        config: SupervisorConfig,
        pbx: PbxActions,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
        links: PbxLinks | None = None,
    ) -> None:
        self.config = config
        self.pbx = pbx
        self.links = links  # several PBXs: the link of each call's PBX (None: ``pbx``)
        self.audit = audit
        self.clock = clock
        self.directory = recordings_dir(config)
        self._recording: dict[str, str] = {}  # call id -> the channel MixMonitor is on
        self._jobs: asyncio.Queue[tuple[str, Any]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._recorded: list[Callable[[str, str], None]] = []
        self._waiting: list[_Session] = []  # sessions before their ChanSpyStart
        self._spying: dict[str, _Session] = {}  # the spyer's channel -> its session

    def _link(self, call_id: str) -> PbxActions:
        return self.pbx if self.links is None else self.links.for_call(call_id)

    # ---- listen / whisper / barge ------------------------------------------------------------

    async def spy(self, supervisor: AgentConfig, ctx: CallLike | None, mode: str) -> dict[str, Any]:
        if supervisor.role != "supervisor":
            raise SupervisionRefused(403, "only a supervisor may listen to calls")
        if mode not in SPY_OPTIONS:
            raise SupervisionRefused(400, f"mode: one of {', '.join(SPY_OPTIONS)}")
        if not supervisor.interface:
            raise SupervisionRefused(409, f"{supervisor.name} has no phone interface in the config")
        if ctx is None or ctx.state != "answered":
            raise SupervisionRefused(409, "call: only a call an agent is talking on")
        channel = ctx.agent_channel or ""
        if not _CHANNEL.match(channel):
            raise SupervisionRefused(409, "call: the agent's channel is not known")
        pbx: PbxActions = self.pbx
        if self.links is not None:
            try:
                pbx = self.links.same_pbx(supervisor, ctx.call_id)
            except PbxRefused as exc:
                raise SupervisionRefused(exc.status, exc.message) from None
        session = _Session(ctx.call_id, supervisor.interface, channel)
        self._waiting.append(session)  # before the Originate: ChanSpyStart may come first
        try:
            await pbx.originate(
                supervisor.interface,
                application="ChanSpy",
                data=f"{channel},{SPY_OPTIONS[mode]}",
                caller_id=f'"{mode} {ctx.agent or ""}" <spy>',
            )
        except BaseException:
            self._forget(session)
            raise
        at = self.clock()
        audit_id = await self.audit.add(
            at=at,
            supervisor=supervisor.name,
            action=mode,
            call_id=ctx.call_id,
            target=channel,
            detail={"agent": ctx.agent, "phone": supervisor.interface},
        )
        session.audit_id = audit_id
        if session.started_at is not None:  # ChanSpyStart came before the row was written
            await self.audit.started(audit_id, session.started_at)
        if session.ended_at is not None:  # the supervisor hung up before the row was written
            await self.audit.close(audit_id, session.ended_at)
        log.info("supervisor.spy", supervisor=supervisor.name, mode=mode, call_id=ctx.call_id)
        return {"audit_id": audit_id, "mode": mode, "call_id": ctx.call_id, "agent": ctx.agent}

    def ami_event(self, event: Mapping[str, str]) -> None:
        """A raw AMI event from the event flow (``SPY_EVENTS``): ``ChanSpyStart`` tells which
        channel of the supervisor's phone spies; that session ends at the first of
        ``ChanSpyStop`` (``SpyerChannel``) or the Hangup of that channel (its audit row closed by
        the worker), else with its call (``call_ended``). Cheap for the Hangups of every call."""
        name = event.get("Event")
        if name == "Hangup":
            if self._spying:
                self._stop(event.get("Channel", ""), event)
        elif name == "ChanSpyStop":
            self._stop(event.get("SpyerChannel", ""), event)
        elif name == "ChanSpyStart" and self._waiting:
            spyer, spyee = event.get("SpyerChannel", ""), event.get("SpyeeChannel", "")
            for session in self._waiting:
                if session.spyee == spyee and _channel_of(spyer, session.phone):
                    self._waiting.remove(session)
                    session.spyer = spyer
                    self._spying[spyer] = session
                    # The session starts when the phone answered, on the clock of its end.
                    session.started_at = self._event_time(event)
                    if session.audit_id is not None and self._jobs is not None:
                        self._jobs.put_nowait(("start", (session.audit_id, session.started_at)))
                    break

    def _stop(self, spyer: str, event: Mapping[str, str]) -> None:
        session = self._spying.pop(spyer, None)
        if session is None:
            return
        at = self._event_time(event)
        session.ended_at = at
        if session.audit_id is not None and self._jobs is not None:
            self._jobs.put_nowait(("stop", (session.audit_id, at)))

    def _event_time(self, event: Mapping[str, str]) -> float:
        try:
            return float(event.get("Timestamp") or "")
        except ValueError:  # timestampevents = no
            return self.clock()

    def _forget(self, session: _Session) -> None:
        if session in self._waiting:
            self._waiting.remove(session)
        if session.spyer is not None:
            self._spying.pop(session.spyer, None)

    async def call_ended(self, call_id: str, at: float) -> None:
        """Spy sessions on the call still open end with it; its recording is complete."""
        for session in [*self._waiting, *self._spying.values()]:
            if session.call_id == call_id:
                self._forget(session)
        self._recording.pop(call_id, None)
        await self.audit.close_for_call(call_id, at, ("listen", "whisper", "barge", "record"))

    # ---- recordings --------------------------------------------------------------------------

    def on_recording(self, listener: Callable[[str, str], None]) -> None:
        """Be told ``(call id, file name)`` when Asterisk accepted to record a call."""
        self._recorded.append(listener)

    def answered(self, ctx: CallLike) -> None:
        """A call was answered: start recording it if its queue is recorded (once per call)."""
        if (
            ctx.queue in self.config.record_queues
            and ctx.call_id not in self._recording
            and self._jobs is not None
        ):
            self._recording[ctx.call_id] = ""
            self._jobs.put_nowait(("record", ctx))

    def ended(self, call_id: str, at: float) -> None:
        """A call ended (from the event flow): its sessions are closed by the worker."""
        if self._jobs is not None:
            self._jobs.put_nowait(("ended", (call_id, at)))

    async def _record(self, ctx: CallLike) -> None:
        channel = ctx.caller_channel or ""
        if not _CHANNEL.match(channel):
            log.warning("recording.no_channel", call_id=ctx.call_id)
            return
        path = recording_file(self.directory, ctx.call_id)
        await self._link(ctx.call_id).send_action(
            {"Action": "MixMonitor", "Channel": channel, "File": str(path), "Options": "b"}
        )
        self._recording[ctx.call_id] = channel
        for listener in self._recorded:
            listener(ctx.call_id, path.name)
        await self.audit.add(
            at=self.clock(),
            supervisor="system",
            action="record",
            call_id=ctx.call_id,
            target=str(path),
            detail={"channel": channel, "queue": ctx.queue},
        )

    async def pause_recording(self, who: AgentConfig, call_id: str, paused: bool) -> None:
        channel = self._recording.get(call_id)
        if not channel:
            raise SupervisionRefused(409, f"call {call_id} is not being recorded")
        try:
            pbx = self._link(call_id)
        except PbxRefused as exc:
            raise SupervisionRefused(exc.status, exc.message) from None
        await pbx.send_action(
            {
                "Action": "MixMonitorMute",
                "Channel": channel,
                "Direction": "both",
                "State": "1" if paused else "0",
            }
        )
        await self.audit.add(
            at=self.clock(),
            supervisor=who.name,
            action="rec_pause" if paused else "rec_resume",
            call_id=call_id,
            target=channel,
        )

    def recording_path(self, call_id: str) -> Path:
        return recording_file(self.directory, call_id)

    def purge(self, now: float | None = None) -> int:
        """Delete recordings older than the retention; the number deleted."""
        if not self.directory.is_dir():
            return 0
        limit = (now if now is not None else self.clock()) - self.config.retention_days * 86400
        deleted = 0
        for path in self.directory.glob("*.wav"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    deleted += 1
            except OSError as exc:
                log.warning("recording.purge_failed", file=path.name, error=repr(exc))
        if deleted:
            log.info("recording.purged", count=deleted)
        return deleted

    async def _run(self) -> None:
        assert self._jobs is not None
        while True:
            kind, item = await self._jobs.get()
            try:
                if kind == "record":
                    await self._record(item)
                elif kind == "start":
                    await self.audit.started(*item)
                elif kind == "stop":
                    await self.audit.close(*item)
                else:
                    await self.call_ended(*item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a refused recording must not stop the others
                log.warning("supervise.job_failed", job=kind, error=repr(exc))
            finally:
                self._jobs.task_done()

    async def settled(self) -> None:
        """Wait until the recordings and session ends queued so far are done (tests, tools)."""
        if self._jobs is not None:
            await self._jobs.join()

    async def start(self) -> None:
        self._jobs = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="recordings")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
