"""The fake AMI server answers a supervisor's actions as a real Asterisk 22.10.1 did.

``tests/recordings/asterisk22/supervise.ami-session`` (``tests/live/record.py PREFIX
supervise``): on a call Agent 2001 answered, the shipped ``cti`` user (conn ``S``) originated
ChanSpy listen, whisper and barge on the supervisor's phone and sent MixMonitor and
MixMonitorMute on the caller's channel; the ``lab`` user (conn ``A``, ``write = all``) sent the
same MixMonitor; both probed a channel that does not exist, as ``cti doctor`` does. Each
action is sent again, with the same fields, to the fake server holding the same channels, as
a user with the same classes: the answer must be the same (Response and Message).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fakes.ami_server import AmiUser, FakeAmiServer
from live.lab import CTI_SECRET, LAB_SECRET
from live.recorder import read_session

SESSION = Path(__file__).resolve().parent / "recordings" / "asterisk22" / "supervise.ami-session"
SUPERVISE = {"Originate", "MixMonitor", "MixMonitorMute"}
USERS = {
    "S": (
        "cti",
        AmiUser(CTI_SECRET, read="system,call,agent", write="call,originate,agent,reporting"),
    ),
    "A": ("lab", AmiUser(LAB_SECRET)),
}


def _blocks(data: bytes) -> list[dict[str, str]]:
    out = []
    for block in data.decode().split("\r\n\r\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
        if fields:
            out.append(fields)
    return out


def _supervisor_action(fields: dict[str, str]) -> bool:
    # the Originate of the caller (a test driver's) is no supervisor's: it has no Application
    action = fields.get("Action")
    return action in SUPERVISE and (action != "Originate" or "Application" in fields)


def recorded_exchanges() -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(conn, action fields, the response) of every supervisor action in the recording."""
    sent: dict[str, tuple[str, dict[str, str]]] = {}
    answers: dict[str, dict[str, str]] = {}
    for direction, conn, _, data in read_session(SESSION):
        for fields in _blocks(data):
            if direction == "send" and _supervisor_action(fields) and conn in USERS:
                sent[fields["ActionID"]] = (conn, fields)
            elif direction == "recv" and "Response" in fields and "ActionID" in fields:
                answers.setdefault(fields["ActionID"], fields)
    return [(conn, fields, answers[aid]) for aid, (conn, fields) in sent.items()]


async def _ask(port: int, user: str, secret: str, actions: list[dict[str, str]]) -> list[dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    got = []
    for fields in [
        {"Action": "Login", "Username": user, "Secret": secret, "Events": "off"},
        *actions,
    ]:
        writer.write(("".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode())
        got.append(_blocks(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5))[0])
    writer.close()
    return got[1:]


async def test_the_fake_ami_server_answers_a_supervisors_actions_as_asterisk_22_did() -> None:
    exchanges = recorded_exchanges()
    assert [(c, f["Action"], r["Response"]) for c, f, r in exchanges] == [
        *[("S", "Originate", "Success")] * 3,  # ChanSpy listen, whisper, barge
        ("S", "MixMonitor", "Error"),  # Permission denied: it needs write = system
        ("A", "MixMonitor", "Success"),
        ("S", "MixMonitor", "Error"),
        ("S", "MixMonitorMute", "Error"),  # No such channel: call is enough for it
        ("A", "MixMonitor", "Error"),
        ("A", "MixMonitorMute", "Error"),
        ("S", "MixMonitorMute", "Success"),
        ("S", "MixMonitorMute", "Success"),
    ]
    channels = {
        f[k]
        for _, f, _ in exchanges
        for k in ("Channel",)
        if not f[k].startswith(("CTIDoctor", "Local/9000"))
    } | {f["Data"].split(",")[0] for _, f, _ in exchanges if f["Action"] == "Originate"}
    users = {name: user for name, user in USERS.values()}
    async with FakeAmiServer(users=users) as fake:
        for name in channels:
            fake.state.add_channel(name)
        for conn, (user, amiuser) in USERS.items():
            mine = [(f, r) for c, f, r in exchanges if c == conn]
            answers = await _ask(fake.port, user, amiuser.secret, [f for f, _ in mine])
            assert [(a.get("Response"), a.get("Message")) for a in answers] == [
                (r.get("Response"), r.get("Message")) for _, r in mine
            ], conn
