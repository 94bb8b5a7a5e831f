"""What a desktop is replayed when it connects, rebuilt from the messages themselves.

With several instances, the instance a desktop connects to is not the one that built its
messages: each instance follows the message stream and keeps, per agent and call, the
messages that state the call as the agent's desktop should show it, with the same rules
as ``PopHub``'s own replay state: a pop starts it, ``answered`` keeps the pop and adds
itself, ``update`` is added, ``withdrawn``/``transferred``/``ended`` end it.
"""

from __future__ import annotations

from collections.abc import Iterator

from cti.hub import HubMessage

_ENDS = frozenset({"withdrawn", "transferred", "ended"})


class ReplayMirror:
    def __init__(self) -> None:
        self._active: dict[str, dict[str, list[HubMessage]]] = {}  # agent -> call -> messages

    def apply(self, message: HubMessage) -> None:
        agent, call, kind = message.agent, message.call_id, message.type
        if agent is None or call is None:
            return
        calls = self._active.get(agent)
        if kind == "pop":
            self._active.setdefault(agent, {})[call] = [message]
        elif kind == "answered":
            pops = [m for m in (calls or {}).get(call, []) if m.type == "pop"]
            self._active.setdefault(agent, {})[call] = [*pops, message]
        elif kind == "update":
            if calls is not None and call in calls:
                calls[call].append(message)
        elif kind in _ENDS and calls is not None:
            calls.pop(call, None)
            if not calls:
                del self._active[agent]

    def messages(self, agent: str) -> list[HubMessage]:
        return [m for ms in self._active.get(agent, {}).values() for m in ms]

    def calls(self) -> Iterator[tuple[str, str, list[HubMessage]]]:
        """(agent, call, messages) of every active call of every agent."""
        for agent, calls in self._active.items():
            for call, messages in calls.items():
                yield agent, call, list(messages)

    def __len__(self) -> int:
        return sum(len(c) for c in self._active.values())
