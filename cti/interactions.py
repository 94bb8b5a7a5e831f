"""The interaction log: every finished call is written to the CRM, once, keyed on its call id.

``InteractionRecorder.submit(record)`` never blocks the call flow: it keeps the latest record per
call and one owned worker task writes them, oldest first, through the store's
``record_interaction`` (an UPSERT on ``call_id``, so a record written again after a late note,
or by a daemon restarted mid-call, stays one row).

Two failures, two answers:

* the CRM is down or slow (``CrmUnavailable``, a timeout, a connection error): the records wait,
  in order, and the head is retried with a capped backoff;
* the CRM refuses this record (any other error: ``InvalidInteraction``, a data error): retrying
  it cannot help, so it is set aside in the dead-letter file (``cti.dead_letters``) and the
  next record is written. It is counted, shown by ``/healthz`` and ``/metrics``, and tried
  again when the daemon next starts.

``stop()`` drains what it can within its timeout, saves what is left in the dead-letter file
(state ``unwritten``) and returns how many records were lost (neither written nor saved).

A third answer with several instances: the database refuses a record made under a stale
fencing token (``StaleFence``, ``cti.cluster.fencing``): this instance no longer ingests the
call's PBX, the one that does took the call back and writes its record. The record is
dropped, not retried nor set aside (a copy would only duplicate or overwrite it), and counted
as ``fenced``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from crm_core.errors import CrmUnavailable
from crm_core.fence import StaleFence
from crm_core.types import InteractionRecord
from cti.dead_letters import DeadLetter, DeadLetterFile

log = structlog.get_logger(__name__)

# The CRM cannot take any record right now: wait and retry the same record.
TRANSIENT: tuple[type[BaseException], ...] = (CrmUnavailable, TimeoutError, OSError)


class InteractionStore(Protocol):
    async def record_interaction(self, record: InteractionRecord) -> Any: ...


def _now() -> datetime:
    return datetime.now(UTC)


class InteractionRecorder:
    def __init__(
        self,
        store: InteractionStore,
        *,
        dead_letters: DeadLetterFile | None = None,
        write_timeout_s: float = 10.0,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
    ) -> None:
        self._store = store
        self._file = dead_letters
        self._write_timeout_s = write_timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._pending: dict[str, InteractionRecord] = {}
        self._dead: dict[str, DeadLetter] = {}  # refused, by call id
        self._loaded: dict[str, DeadLetter] = {}  # read from the file, not written yet
        self._dirty = False  # the file no longer holds what it should
        self._last_error = ""
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self.written = 0
        self.failures = 0  # write attempts that failed with the CRM down or slow
        self.refused = 0  # calls whose record the CRM refused, set aside (once per call)
        self.lost = 0  # records neither written nor saved when stopped
        self.fenced = 0  # records refused as made by a stale ingester, dropped

    # ---- state ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def dead_letters(self) -> int:
        """Records set aside now (refused and not written since)."""
        return len(self._dead)

    @property
    def dead_letter_path(self) -> str | None:
        return str(self._file.path) if self._file is not None else None

    def status(self) -> dict[str, Any]:
        """For ``/healthz``."""
        return {
            "written": self.written,
            "pending": self.pending,
            "refused": self.refused,
            "dead_letters": self.dead_letters,
            "fenced": self.fenced,
            "dead_letter_path": self.dead_letter_path,
            "last_error": self._last_error or None,
        }

    # ---- lifetime ------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = asyncio.Event()
        if self._file is not None:
            try:
                letters = await asyncio.to_thread(self._file.load)
            except OSError as exc:  # unreadable: nothing to retry, and saving will say so
                log.error("dead_letters.load_failed", path=str(self._file.path), error=repr(exc))
                letters = []
            if letters:
                log.warning(
                    "interactions.retrying_dead_letters",
                    count=len(letters),
                    path=str(self._file.path),
                )
            self._loaded = {letter.record.call_id: letter for letter in letters}
            # Older than anything submitted since: they go first.
            earlier = {cid: letter.record for cid, letter in self._loaded.items()}
            self._pending = {**earlier, **self._pending}
        if self._pending:
            self._wake.set()
        else:
            self._idle.set()
        self._worker = asyncio.create_task(self._run(), name="interaction-recorder")

    def submit(self, record: InteractionRecord) -> None:
        """Queue the call's record (replacing an unwritten older one for the same call)."""
        self._pending.pop(record.call_id, None)
        self._pending[record.call_id] = record
        if self._wake is not None and self._idle is not None:
            self._idle.clear()
            self._wake.set()

    def set_aside(self) -> set[str]:
        """The calls whose record waits in the dead-letter store (refused, or read back from
        it at start): that copy, maybe corrected by an operator, is the one to write."""
        return set(self._dead) | set(self._loaded)

    def retry_dead_letters(self) -> int:
        """Queue every record set aside again (after the cause was fixed); how many."""
        letters = list(self._dead.values())
        for letter in letters:
            if letter.record.call_id not in self._pending:
                self.submit(letter.record)
        return len(letters)

    async def flush(self, within_s: float | None = None) -> bool:
        """Wait until everything submitted so far is written or set aside; False on timeout."""
        if self._idle is None:
            return not self._pending
        try:
            async with asyncio.timeout(within_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, drain_timeout_s: float = 5.0) -> int:
        """Write what can be written in time, save the rest; the number of records lost."""
        if self._worker is None:
            return self.lost
        await self.flush(drain_timeout_s)
        # The worker ends between writes: a database call cancelled half-way can leave its
        # connection impossible to close (aiosqlite), and the process unable to exit.
        assert self._stopping is not None
        self._stopping.set()
        if self._wake is not None:
            self._wake.set()
        done, _ = await asyncio.wait([self._worker], timeout=self._write_timeout_s + 1.0)
        if not done:
            self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None
        unwritten = len(self._pending)
        if unwritten or self._dirty:
            saved = await self._save(
                [
                    DeadLetter(rec, "unwritten", self._last_error, _now())
                    for rec in self._pending.values()
                ]
            )
            if not saved:
                self.lost = unwritten + len(self._dead)
        if unwritten and not self.lost:
            log.error("interactions.not_written_saved", count=unwritten, path=self.dead_letter_path)
        if self.lost:
            log.error("interactions.lost", count=self.lost, path=self.dead_letter_path)
        return self.lost

    # ---- the worker ----------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None and self._stopping is not None
        stopping = self._stopping
        delay = self._retry_initial_s
        while not stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not stopping.is_set():
                call_id, record = next(iter(self._pending.items()))
                try:
                    async with asyncio.timeout(self._write_timeout_s):
                        await self._store.record_interaction(record)
                except asyncio.CancelledError:
                    raise
                except StaleFence as exc:
                    delay = self._retry_initial_s
                    self._fenced(record, exc)
                except TRANSIENT as exc:
                    self.failures += 1
                    self._last_error = _describe(exc)
                    log.warning(
                        "interaction write failed; will retry",
                        call_id=call_id,
                        error=self._last_error,
                        retry_in_s=delay,
                        pending=len(self._pending),
                    )
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await stopping.wait()
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                except Exception as exc:
                    delay = self._retry_initial_s
                    self._set_aside(record, exc)
                else:
                    delay = self._retry_initial_s
                    self._written(record)
                if self._dirty:
                    await self._save()
            if not self._pending:
                self._idle.set()

    def _written(self, record: InteractionRecord) -> None:
        call_id = record.call_id
        self.written += 1
        self._last_error = ""  # the database answers again: /healthz shows no old error
        # A newer record for this call submitted during the write stays pending.
        if self._pending.get(call_id) is record:
            del self._pending[call_id]
        if self._dead.pop(call_id, None) is not None:
            self._dirty = True
        if self._loaded.pop(call_id, None) is not None:
            self._dirty = True
        log.debug("interaction written", call_id=call_id, outcome=record.outcome)

    def _fenced(self, record: InteractionRecord, exc: StaleFence) -> None:
        if self._pending.get(record.call_id) is record:
            del self._pending[record.call_id]
        self.fenced += 1
        log.warning("interaction.fenced", call_id=record.call_id, pbx=exc.pbx_id, token=exc.token)

    def _set_aside(self, record: InteractionRecord, exc: Exception) -> None:
        call_id = record.call_id
        error = _describe(exc)
        if self._pending.get(call_id) is record:
            del self._pending[call_id]
        self._loaded.pop(call_id, None)
        again = call_id in self._dead  # a later version of a call already set aside
        self._dead[call_id] = DeadLetter(record, "refused", error, _now())
        self._dirty = True
        if not again:
            self.refused += 1
        log.error(
            "interaction refused; set aside",
            call_id=call_id,
            error=error,
            dead_letters=len(self._dead),
            path=self.dead_letter_path,
        )

    async def _save(self, extra: list[DeadLetter] | None = None) -> bool:
        """Write the dead letters (and ``extra``) to the file; False if it could not be."""
        if self._file is None:
            return not (self._dead or extra)
        letters = {**self._loaded, **self._dead}
        for letter in extra or ():
            letters[letter.record.call_id] = letter
        try:
            await asyncio.to_thread(self._file.save, list(letters.values()))
        except OSError as exc:
            log.error("dead_letters.save_failed", path=str(self._file.path), error=repr(exc))
            return False
        self._dirty = False
        return True


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
