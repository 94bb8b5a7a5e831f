"""The call tracker: a pure state machine from AMI events to call events (no I/O)."""

from cti.tracker.events import CallEvent
from cti.tracker.tracker import SUMMARY_KEYS, CallTracker

__all__ = ["SUMMARY_KEYS", "CallEvent", "CallTracker"]
