"""``cti-agi``: the classic AGI entry point, for PBXes that cannot reach the daemon over FastAGI.

Asterisk runs it as ``AGI(cti-agi,route)`` with the AGI environment on stdin. It asks the daemon
(``POST [agi] http_url``, with the ``[agi] http_token`` secret as a bearer token) for the routing
decision and sets the same variables as the FastAGI server (CTI_QUEUE, CTI_PRIORITY, CTI_TIER,
CTI_CUSTOMER_ID, CTI_REASON and any extra ones). When
the daemon is unreachable, slow or answers nonsense, it sets the default route from the config
with ``CTI_REASON=fallback``, within the same deadline (``[agi] deadline_ms``).

Start-up time counts against the deadline, so the script reads its config as plain TOML and
imports nothing of the daemon's (pydantic, SQLAlchemy, asyncio) before answering.
The config file is ``-c FILE`` or ``$CTI_CONFIG``. Only pyst2's ``AGI`` class is used, its
debug output silenced.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import tomllib
import urllib.request
from collections.abc import Sequence
from typing import Any

from asterisk.agi import AGI, AGIException

from cti.agi.env import caller_id, dialled_number

# The defaults of cti.config.AgiConfig (a test keeps them equal), read without importing it.
DEFAULT_HTTP_URL = "http://127.0.0.1:8080/api/route"
DEFAULT_DEADLINE_MS = 300
# Used only when the config itself cannot be loaded: the dialplan then queues in its default.
LAST_RESORT = {"CTI_REASON": "fallback"}


def _config_path(args: Sequence[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return os.environ.get("CTI_CONFIG") or None


def _read_config(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _agi_settings(config: dict[str, Any]) -> tuple[str, float, str]:
    """``[agi] http_url``, ``deadline_ms`` (in seconds) and ``http_token``."""
    section = config.get("agi", {})
    url = section.get("http_url", DEFAULT_HTTP_URL)
    deadline_ms = section.get("deadline_ms", DEFAULT_DEADLINE_MS)
    token = section.get("http_token", "")
    if not isinstance(url, str):
        url = DEFAULT_HTTP_URL
    if not isinstance(deadline_ms, int | float) or deadline_ms <= 0:
        deadline_ms = DEFAULT_DEADLINE_MS
    if not isinstance(token, str):
        token = ""
    return url, deadline_ms / 1000, token


# cti.config's default tier table, for a config without [tiers] (a test keeps them equal).
DEFAULT_TIERS: dict[str, dict[str, Any]] = {
    "tier1": {"queue": "tier1"},
    "tier2": {"queue": "tier2"},
    "tier3": {"queue": "tier3"},
}
_PLACEHOLDER = re.compile(r"\$[a-z_]+")


def fallback_variables(config: dict[str, Any]) -> dict[str, str]:
    """The default route with ``CTI_REASON=fallback``, from the raw config, as the router's
    ``fallback_decision`` gives it (a test checks they agree). Reading the TOML directly keeps
    pydantic and the rest of the daemon out of the script's start-up time."""
    tiers = config.get("tiers") or DEFAULT_TIERS
    default = config.get("routing", {}).get("default") or {"tier": next(iter(tiers))}
    name = default.get("tier")
    if name is None:
        name = next(n for n, t in tiers.items() if t.get("queue") == default.get("queue"))
    tier = tiers[name]
    priority = default.get("priority", tier.get("priority", 0))
    extra = {k: _PLACEHOLDER.sub("", str(v)) for k, v in default.get("set", {}).items()}
    return {
        "CTI_QUEUE": str(tier["queue"]),
        "CTI_PRIORITY": str(priority),
        "CTI_TIER": str(name),
        "CTI_CUSTOMER_ID": "",
        "CTI_REASON": "fallback",
        **extra,
    }


def ask_daemon(url: str, body: dict[str, Any], timeout_s: float, token: str = "") -> dict[str, str]:
    """The dialplan variables from ``POST /api/route``; raises on anything but a good answer."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        answer = json.loads(response.read())
    variables = answer.get("dialplan") if isinstance(answer, dict) else None
    if not isinstance(variables, dict) or not variables.get("CTI_QUEUE"):
        raise ValueError("the daemon's answer has no dialplan variables")
    return {str(k): str(v) for k, v in variables.items()}


def _agi_value(value: str) -> str:
    """pyst2 puts the value in double quotes as it is: escape what would end them early."""
    value = value.replace("\r", " ").replace("\n", " ")
    return value.replace("\\", "\\\\").replace('"', '\\"')


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = list(sys.argv[1:] if argv is None else argv)
    path = _config_path(args)
    with open(os.devnull, "w") as quiet:
        agi = AGI(stdin=sys.stdin, stdout=sys.stdout, stderr=quiet)
        config = _read_config(path)
        url, deadline_s, token = _agi_settings(config)
        env = agi.env
        body = {
            "caller": caller_id(env),
            "dnid": dialled_number(env),
            "uniqueid": env.get("agi_uniqueid") or None,
            "channel": env.get("agi_channel") or None,
        }
        try:
            remaining = deadline_s - (time.monotonic() - started)
            if remaining <= 0:
                raise TimeoutError("no time left for the daemon")
            variables = ask_daemon(url, body, remaining, token)
        except Exception:  # unreachable, slow, HTTP error, bad JSON: the fallback route
            try:
                variables = fallback_variables(config)
            except Exception:  # a config the daemon would refuse: the dialplan's own default
                variables = dict(LAST_RESORT)
        for name, value in variables.items():
            try:
                agi.set_variable(name, _agi_value(value))
            except AGIException:  # hung up (SIGHUP) or refused: nothing more to say
                break
            except (OSError, ValueError):  # stdin/stdout gone: Asterisk has left
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
