"""Record what a real Asterisk says on AMI, in the ``.ami-session`` transcript format.

The format is the one of ``../shared/ami-traces/asterisk22/protocol/README.md``::

    # title
    # t=0 is <wall clock>
    # format: ...
    === META t=0.000013 conn=A client connects to 127.0.0.1:5038
    <<< RECV t=0.000506 conn=A len=30
    Asterisk Call Manager/11.0.0\\r\\n
    >>> SEND t=0.000556 conn=A len=65
    Action: Login\\r\\n ... \\r\\n\\r\\n

``>>> SEND`` are bytes sent to Asterisk, ``<<< RECV`` bytes it sent, each chunk as one
``send()``/``recv()``; CR and LF are written as ``\\r\\n`` escapes on one line per message
line (the shared files keep the bytes; :func:`read_session` reads both).
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Transcript:
    title: str
    start: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)
    lines: list[str] = field(default_factory=list)

    def t(self) -> float:
        return time.monotonic() - self.start

    def meta(self, conn: str, text: str) -> None:
        self.lines.append(f"=== META t={self.t():.6f} conn={conn} {text}\n")

    def chunk(self, direction: str, conn: str, data: bytes) -> None:
        head = ">>> SEND" if direction == "send" else "<<< RECV"
        self.lines.append(f"{head} t={self.t():.6f} conn={conn} len={len(data)}\n")
        text = data.decode("utf-8", "replace")
        body = text.replace("\r", "\\r").replace("\n", "\\n\n")
        self.lines.append(body if body.endswith("\n") else body + "\n")

    def save(self, path: Path) -> None:
        head = (
            f"# {self.title}\n"
            f"# t=0 is {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(self.wall))}"
            f".{int(self.wall % 1 * 1e6):06d}Z (epoch {self.wall:.6f})\n"
            "# format: tests/live/recorder.py (the .ami-session format of "
            "../shared/ami-traces/asterisk22/protocol/README.md, CR/LF escaped)\n"
        )
        path.write_text(head + "".join(self.lines))


@dataclass
class AmiConn:
    """A blocking AMI client socket whose every chunk goes into a transcript."""

    transcript: Transcript
    name: str
    host: str = "127.0.0.1"
    port: int = 5038
    sock: socket.socket | None = None
    buffer: bytes = b""

    def connect(self) -> None:
        self.transcript.meta(self.name, f"client connects to {self.host}:{self.port}")
        self.sock = socket.create_connection((self.host, self.port), timeout=5)

    def send(self, **headers: str) -> None:
        data = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        assert self.sock is not None
        self.transcript.chunk("send", self.name, data.encode())
        self.sock.sendall(data.encode())

    def read_for(self, seconds: float, *, until: bytes | None = None) -> bytes:
        """Everything Asterisk sends within ``seconds`` (or until ``until`` was seen)."""
        assert self.sock is not None
        got = b""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                break
            data = self.sock.recv(65536)
            if not data:
                self.transcript.meta(self.name, "EOF from Asterisk")
                break
            self.transcript.chunk("recv", self.name, data)
            got += data
            if until is not None and until in got:
                break
        self.buffer += got
        return got

    def close(self) -> None:
        if self.sock is not None:
            self.transcript.meta(self.name, "client closes")
            self.sock.close()
            self.sock = None


def read_session(path: Path) -> list[tuple[str, str, float, bytes]]:
    """(direction, conn, t, bytes) of every chunk of a transcript (``send``/``recv``/``meta``)."""
    out: list[tuple[str, str, float, bytes]] = []
    current: tuple[str, str, float] | None = None
    body: list[str] = []

    def flush() -> None:
        if current is not None:
            text = "".join(body).replace("\n", "").replace("\\r", "\r").replace("\\n", "\n")
            out.append((*current, text.encode()))

    for line in path.read_text().splitlines(keepends=True):
        if line.startswith(("# ", "#\n")) and current is None:
            continue
        if line.startswith((">>> SEND", "<<< RECV", "=== META")):
            flush()
            body = []
            parts = dict(p.split("=", 1) for p in line.split()[2:5] if "=" in p)
            kind = {">>>": "send", "<<<": "recv", "===": "meta"}[line[:3]]
            current = (kind, parts.get("conn", "-"), float(parts.get("t", "0")))
            if kind == "meta":
                body = [line.split(" ", 4)[-1].rstrip("\n")]
                flush()
                current = None
            continue
        body.append(line)
    flush()
    return out


class RecordingProxy:
    """A TCP proxy in front of Asterisk's AMI port that records both directions.

    Each client connection gets the next name (A, B, C...); run a real client (``cti doctor``,
    the daemon) against ``port`` and save ``transcript`` afterwards.
    """

    def __init__(self, transcript: Transcript, target_port: int, names: str = "ABCDEFGH") -> None:
        self.transcript = transcript
        self.target_port = target_port
        self.names = iter(names)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RecordingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        name = next(self.names)
        self.transcript.meta(name, f"client connects to 127.0.0.1:{self.target_port}")
        ast_r, ast_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: str) -> None:
            while data := await src.read(65536):
                self.transcript.chunk(way, name, data)
                dst.write(data)
                await dst.drain()
            self.transcript.meta(name, "EOF from " + ("Asterisk" if way == "recv" else "client"))
            dst.close()

        await asyncio.gather(
            pump(client_r, ast_w, "send"), pump(ast_r, client_w, "recv"), return_exceptions=True
        )


def _blocks(data: bytes) -> list[bytes]:
    return [b + b"\r\n\r\n" for b in data.split(b"\r\n\r\n") if b.strip()]


def _fields(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            out.append((name.strip(), value.strip()))
    return out


def _key(block: bytes) -> tuple[str, ...]:
    """An action without its ActionID: what it asks, as the recording matched it."""
    return tuple(sorted(f"{n.lower()}={v}" for n, v in _fields(block) if n.lower() != "actionid"))


class RecordedAmi:
    """An AMI server that answers each action with what a real Asterisk answered it in a
    recorded transcript: same bytes, the client's ActionID put in place of the recorded one.

    An action the recording does not hold is answered ``Response: Error`` with
    ``Message: not in the recording``: a test then fails on it rather than passing on
    an invented answer. Messages without an ActionID (``FullyBooted`` after a login) go
    with the action sent last before them.
    """

    def __init__(self, *paths: Path) -> None:
        self.answers: dict[tuple[str, ...], list[bytes]] = {}
        self.unanswered: list[tuple[str, ...]] = []
        for path in paths:
            self._learn(read_session(path))
        self.port = 0
        self._server: asyncio.Server | None = None

    def _learn(self, chunks: list[tuple[str, str, float, bytes]]) -> None:
        last: dict[str, tuple[tuple[str, ...], str]] = {}  # conn -> (key, recorded ActionID)
        by_id: dict[tuple[str, str], tuple[str, ...]] = {}
        learned: dict[tuple[str, ...], list[bytes]] = {}
        for direction, conn, _, data in chunks:
            if direction == "send":
                for block in _blocks(data):
                    key = _key(block)
                    aid = dict(_fields(block)).get("ActionID", "")
                    last[conn] = (key, aid)
                    by_id[conn, aid] = key
                    learned.setdefault(key, [])
            elif direction == "recv":
                for block in _blocks(
                    data.split(b"\r\n", 1)[1] if b"Call Manager/" in data[:40] else data
                ):
                    aid = dict(_fields(block)).get("ActionID")
                    key = by_id.get((conn, aid)) if aid is not None else None
                    if key is None and conn in last:
                        key = last[conn][0]
                    if key is not None:
                        recorded = aid if aid is not None else ""
                        learned[key].append(
                            block.replace(
                                f"ActionID: {recorded}\r\n".encode(), b"ActionID: \x00\r\n"
                            )
                            if recorded
                            else block
                        )
        for key, blocks in learned.items():
            self.answers.setdefault(key, blocks)

    async def __aenter__(self) -> RecordedAmi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        buffer = b""
        try:
            while data := await reader.read(65536):
                buffer += data
                while b"\r\n\r\n" in buffer:
                    block, buffer = buffer.split(b"\r\n\r\n", 1)
                    block += b"\r\n\r\n"
                    aid = dict(_fields(block)).get("ActionID", "").encode()
                    answer = self.answers.get(_key(block))
                    if answer is None:
                        self.unanswered.append(_key(block))
                        answer = [
                            b"Response: Error\r\nActionID: \x00\r\n"
                            b"Message: not in the recording\r\n\r\n"
                        ]
                    for out in answer:
                        writer.write(out.replace(b"\x00", aid))
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
