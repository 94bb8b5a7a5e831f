"""structlog configuration. Phone numbers never appear in full at info level or above."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO, cast

import structlog

# Event keys whose values are caller IDs or phone numbers.
PHONE_KEYS = frozenset(
    {
        "caller",
        "callerid",
        "caller_id",
        "number",
        "phone",
        "e164",
        "caller_e164",
        "dnid",
        "to_number",
    }
)
_DIGITS = re.compile(r"\d")


def mask_number(value: object) -> str:
    """Keep a number recognisable for support without printing it whole: ``+44207****567``."""
    text = str(value)
    digits = len(_DIGITS.findall(text))
    if digits <= 6:
        return text  # extensions, short codes and 'anonymous' are not personal data
    keep_head, keep_tail, seen = 5, 3, 0
    out = []
    for ch in text:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= keep_head or seen > digits - keep_tail else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_phone_numbers(
    _logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask phone-number fields unless the line is at debug level."""
    if method_name == "debug":
        return event_dict
    for key in PHONE_KEYS.intersection(event_dict):
        value = event_dict[key]
        if value is not None:
            event_dict[key] = mask_number(value)
    return event_dict


class WarningLimiter:
    """structlog processor: the same warning or error (same level and event name) written more
    than ``burst`` times within ``window_s`` is dropped; the first one written after the window
    carries ``suppressed=N`` and says "N similar warnings suppressed". A two-minute database
    outage then writes a few lines per kind of failure, not one per call."""

    LEVELS = frozenset({"warning", "warn", "error", "exception"})
    MAX_KEYS = 1000

    def __init__(
        self,
        *,
        burst: int = 5,
        window_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        self._windows: dict[tuple[str, str], list[float]] = {}  # [start, written, dropped]
        self.suppressed = 0

    def __call__(
        self, _logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if method_name not in self.LEVELS:
            return event_dict
        key = (method_name, str(event_dict.get("event")))
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._window_s:
            if len(self._windows) >= self.MAX_KEYS:
                self._windows.clear()
            dropped = int(window[2]) if window is not None else 0
            self._windows[key] = [now, 1, 0]
            if dropped:
                event_dict["suppressed"] = dropped
                event_dict["note"] = f"{dropped} similar warnings suppressed"
            return event_dict
        window[1] += 1
        if window[1] <= self._burst:
            return event_dict
        window[2] += 1
        self.suppressed += 1
        raise structlog.DropEvent


_limiter: WarningLimiter | None = None


def suppressed_warnings() -> int:
    """Warnings dropped as repeats since logging was configured (``/metrics``)."""
    return _limiter.suppressed if _limiter is not None else 0


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write, not at configure time
    (pytest swaps and closes it per test; a cached logger must not keep a closed file)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: str = "info", fmt: str = "console", *, limiter: WarningLimiter | None = None
) -> None:
    """Configure structlog once for a process (the CLI calls this)."""
    global _limiter
    _limiter = limiter or WarningLimiter()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _limiter,
            mask_phone_numbers,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        # Not cached: a cached logger keeps the processors and level of its first use, which
        # would outlive a later reconfiguration (tests capture logs after a CLI run).
        cache_logger_on_first_use=False,
    )
