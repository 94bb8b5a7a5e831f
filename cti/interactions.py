"""The interaction log: every finished call is written to the CRM, once, keyed on its call id.

``InteractionRecorder.submit(record)`` never blocks the call flow: it keeps the latest record per
call and one owned worker task writes them through the store's ``record_interaction`` (an
UPSERT on ``call_id``, so a record written again after a late note, or by a daemon restarted
mid-call, stays one row). A CRM that is down keeps the records pending and retried with a
capped backoff; ``stop()`` drains what it can and says how many were not written.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import structlog

from crm_core.types import InteractionRecord

log = structlog.get_logger(__name__)


class InteractionStore(Protocol):
    async def record_interaction(self, record: InteractionRecord) -> Any: ...


class InteractionRecorder:
    def __init__(
        self,
        store: InteractionStore,
        *,
        write_timeout_s: float = 5.0,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
    ) -> None:
        self._store = store
        self._write_timeout_s = write_timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._pending: dict[str, InteractionRecord] = {}
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.written = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
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

    async def flush(self, within_s: float | None = None) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        if self._idle is None:
            return not self._pending
        try:
            async with asyncio.timeout(within_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        if self._worker is None:
            return
        await self.flush(drain_timeout_s)
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None
        if self._pending:
            log.error("interactions not written", count=len(self._pending))

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        delay = self._retry_initial_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                call_id, record = next(iter(self._pending.items()))
                try:
                    async with asyncio.timeout(self._write_timeout_s):
                        await self._store.record_interaction(record)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failures += 1
                    log.warning(
                        "interaction write failed; will retry",
                        call_id=call_id,
                        error=repr(exc),
                        retry_in_s=delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                delay = self._retry_initial_s
                self.written += 1
                # A newer record for this call submitted during the write stays pending.
                if self._pending.get(call_id) is record:
                    del self._pending[call_id]
                log.debug("interaction written", call_id=call_id, outcome=record.outcome)
            if not self._pending:
                self._idle.set()
