"""Other CRM backends and outbound webhooks, behind one small interface.

A CRM backend implements ``crm_core.types.CustomerDirectory`` (``resolve`` a caller ID,
``view`` a customer); the daemon takes any such directory in place of the built-in
``crm_core.CrmStore``. An outbound sink implements ``CallEventSink`` below and is handed every
call event the tracker emits, with the call's context.
"""

from __future__ import annotations

from typing import Any, Protocol

from crm_core.types import CustomerDirectory

__all__ = ["CallEventSink", "CustomerDirectory"]


class CallEventSink(Protocol):
    """Receives call events (``CallEvent.to_dict()`` merged with the call's context)."""

    async def deliver(self, event: dict[str, Any]) -> None: ...
