"""The supervisor console's board on every instance, rebuilt from the console messages.

With several instances only the ingester sees the call events its statistics and board rows
are built from. It sends every console message (``cti.supervisor.service``: ``snapshot``,
``call_row``, ``call_gone``, ``agent_row``, ``queue_row``, ``hours``, ``alert``) through
the Redis stream (``RedisFanout.send_console``), plus, every few seconds, the whole board
(``board_state``, for the mirrors only: a stream trimmed to its ``maxlen`` may have lost the
last snapshot). Every instance, the ingester included, applies them in stream order to a
``BoardMirror`` and delivers them to its own consoles: a console connected to any instance
starts from the mirror's snapshot and then gets the rows that follow, in the same order as
they were applied, so it shows the same board as one on the ingester.
"""

from __future__ import annotations

import json
from typing import Any

from cti.hub import HubMessage

# What the mirror applies and consoles get; ``board_state`` is for the mirrors only.
CONSOLE_TYPES = frozenset(
    {"snapshot", "call_row", "call_gone", "agent_row", "queue_row", "hours", "alert"}
)
BOARD_STATE = "board_state"


class BoardMirror:
    """The board as the console messages state it (``board()``: the same shape as
    ``cti.supervisor.board.board``), and the alerts holding now."""

    def __init__(self) -> None:
        self.at: float | None = None
        self._calls: dict[str, dict[str, Any]] = {}
        self._agents: dict[str, dict[str, Any]] = {}
        self._queues: dict[str, dict[str, Any]] = {}
        self._hours: list[dict[str, Any]] = []
        self._alerts: dict[str, dict[str, Any]] = {}
        self.applied = 0

    def apply(self, message: HubMessage) -> None:
        kind = message.type
        if kind not in CONSOLE_TYPES and kind != BOARD_STATE:
            return
        data: dict[str, Any] = json.loads(message.text)
        self.applied += 1
        if kind in ("snapshot", BOARD_STATE):
            self._replace(data.get("board") or {})
            self._alerts = {_alert_key(a): a for a in data.get("alerts") or ()}
        elif kind == "call_row":
            row = data["row"]
            self._calls[row["call_id"]] = row
        elif kind == "call_gone":
            self._calls.pop(data.get("call_id") or "", None)
        elif kind == "agent_row":
            row = data["row"]
            self._agents[row.get("member") or row["name"]] = row
        elif kind == "queue_row":
            row = data["row"]
            self._queues[row["queue"]] = row
        elif kind == "hours":
            self._hours = list(data.get("rows") or ())
        elif kind == "alert":
            if data.get("raised", True):
                self._alerts[_alert_key(data)] = data
            else:
                self._alerts.pop(_alert_key(data), None)

    def _replace(self, board: dict[str, Any]) -> None:
        self.at = board.get("at")
        self._calls = {r["call_id"]: r for r in board.get("calls") or ()}
        self._agents = {r.get("member") or r["name"]: r for r in board.get("agents") or ()}
        self._queues = {r["queue"]: r for r in board.get("queues") or ()}
        self._hours = list(board.get("hours") or ())

    def board(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "calls": list(self._calls.values()),
            "agents": list(self._agents.values()),
            "queues": list(self._queues.values()),
            "hours": list(self._hours),
        }

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._alerts.values())


def _alert_key(alert: dict[str, Any]) -> str:
    return f"{alert.get('kind')}\0{alert.get('subject')}"
