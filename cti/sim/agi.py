"""A FastAGI client that behaves like Asterisk's ``AGI(agi://host:4573/route,${EXTEN})``.

It sends the 23-line ``agi_*`` header block (LF line ends, blank line), answers ``SET VARIABLE``,
``GET VARIABLE``, ``NOOP``, ``VERBOSE``, ``ANSWER`` and ``HANGUP`` the way Asterisk 22 does
(``../shared/ami-traces/asterisk22/protocol/agi_*.agi-session``), and writes ``HANGUP`` when the
server closes. Asterisk itself never times out a FastAGI server; the simulator gives up after
``timeout_s`` so that a wedged router cannot pile up calls, and reports ``AGISTATUS=FAILURE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

AgiStatus = Literal["SUCCESS", "FAILURE", "HANGUP"]


@dataclass(frozen=True)
class AgiRequest:
    channel: str
    uniqueid: str
    callerid: str  # "anonymous" for a withheld number, "unknown" when there is none
    calleridname: str
    callingpres: int
    context: str
    extension: str
    priority: int
    script: str = "route"
    args: tuple[str, ...] = ()


@dataclass
class AgiResult:
    status: AgiStatus
    variables: dict[str, str] = field(default_factory=dict)
    commands: int = 0
    error: str = ""


def header_block(request: AgiRequest, host: str, port: int) -> bytes:
    lines = [
        ("agi_network", "yes"),
        ("agi_network_script", request.script),
        ("agi_request", f"agi://{host}:{port}/{request.script}"),
        ("agi_channel", request.channel),
        ("agi_language", "en"),
        ("agi_type", "Local"),
        ("agi_uniqueid", request.uniqueid),
        ("agi_version", "22.10.1"),
        ("agi_callerid", request.callerid),
        ("agi_calleridname", request.calleridname),
        ("agi_callingpres", str(request.callingpres)),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", request.context),
        ("agi_extension", request.extension),
        ("agi_priority", str(request.priority)),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "139935215044288"),
    ]
    lines += [(f"agi_arg_{i}", arg) for i, arg in enumerate(request.args, start=1)]
    return ("".join(f"{k}: {v}\n" for k, v in lines) + "\n").encode()


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _usage(text: str) -> str:
    return f"520-Invalid command syntax.  Proper usage follows:\n{text}\n520 End of proper usage.\n"


def answer(line: str, variables: dict[str, str], builtins: dict[str, str]) -> tuple[str, bool]:
    """Asterisk's reply to one AGI command, and whether the AGI ends after it."""
    words = _split(line)
    upper = [w.upper() for w in words[:2]]
    if upper[:2] == ["SET", "VARIABLE"]:
        if len(words) < 4:
            return _usage("Sets a variable to the current channel."), False
        variables[words[2]] = words[3]
        return "200 result=1\n", False
    if upper[:2] == ["GET", "VARIABLE"]:
        if len(words) < 3:
            return _usage("Gets a channel variable."), False
        value = variables.get(words[2], builtins.get(words[2]))
        return ("200 result=0\n" if value is None else f"200 result=1 ({value})\n"), False
    if upper[:1] == ["NOOP"]:
        return "200 result=0\n", False
    if upper[:1] == ["VERBOSE"]:
        return "200 result=1\n", False
    if upper[:1] == ["ANSWER"]:
        return "200 result=0\n", False
    if upper[:1] == ["HANGUP"]:
        return "200 result=1\n", True
    return "510 Invalid or unknown command\n", False


async def run_agi(
    host: str,
    port: int,
    request: AgiRequest,
    *,
    builtins: dict[str, str],
    timeout_s: float = 10.0,
    on_set: Callable[[str, str], None] | None = None,
) -> AgiResult:
    """One FastAGI session; ``builtins`` answer GET VARIABLE for functions like CALLERID(num)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return AgiResult("FAILURE", error=f"cannot connect to agi://{host}:{port}: {exc}")
    result = AgiResult("SUCCESS")
    try:
        writer.write(header_block(request, host, port))
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                result.commands += 1
                before = dict(result.variables)
                reply, done = answer(line, result.variables, builtins)
                if on_set is not None:
                    for name, value in result.variables.items():
                        if before.get(name) != value:
                            on_set(name, value)
                writer.write(reply.encode())
                await writer.drain()
                if done:
                    break
    except TimeoutError:
        result.status, result.error = (
            "FAILURE",
            f"no answer from agi://{host}:{port} in {timeout_s}s",
        )
    except OSError as exc:
        result.status, result.error = "FAILURE", str(exc)
    finally:
        try:  # Asterisk says HANGUP when the server is done, even after the server closed
            writer.write(b"HANGUP\n")
            await writer.drain()
        except OSError:
            pass
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return result
