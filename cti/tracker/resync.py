"""Reconcile the tracker with Asterisk's own lists after a reconnect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cti.tracker.events import CallEvent

if TYPE_CHECKING:
    from cti.tracker.tracker import CallTracker, Event


def reconcile(tracker: CallTracker, items: Sequence[Event]) -> list[CallEvent]:
    return []
