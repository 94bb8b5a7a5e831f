"""The AMI wire parser and action serialiser, held to real Asterisk 22 bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cti.ami.wire import MALFORMED_KEY, AmiParser, serialise_action

LOGIN_REPLY = (
    b"Asterisk Call Manager/11.0.0\r\n"
    b"Response: Success\r\nActionID: login-1\r\nMessage: Authentication accepted\r\n\r\n"
)


def feed_in_chunks(data: bytes, size: int) -> tuple[AmiParser, list[dict[str, str]]]:
    parser = AmiParser()
    out: list[dict[str, str]] = []
    for i in range(0, len(data), size):
        out += parser.feed(data[i : i + size])
    return parser, out


def test_banner_is_exposed_as_soon_as_its_line_arrives() -> None:
    parser = AmiParser()
    assert parser.feed(b"Asterisk Call Manager/11.0.0\r\n") == []
    assert parser.banner == "Asterisk Call Manager/11.0.0"


def test_banner_followed_by_a_response_in_one_read() -> None:
    parser = AmiParser()
    assert parser.feed(LOGIN_REPLY) == [
        {"Response": "Success", "ActionID": "login-1", "Message": "Authentication accepted"}
    ]
    assert parser.banner == "Asterisk Call Manager/11.0.0"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_chunking_gives_the_same_messages(size: int) -> None:
    data = LOGIN_REPLY + b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\n\r\n"
    whole = AmiParser().feed(data)
    parser, chunked = feed_in_chunks(data, size)
    assert chunked == whole
    assert len(whole) == 2
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert parser.pending == 0


def test_lf_only_and_mixed_line_ends_are_accepted() -> None:
    parser = AmiParser()
    msgs = parser.feed(b"Response: Success\nPing: Pong\n\nEvent: X\r\nA: 1\n\r\n")
    assert msgs == [{"Response": "Success", "Ping": "Pong"}, {"Event": "X", "A": "1"}]


def test_crlf_split_between_reads() -> None:
    parser = AmiParser()
    assert parser.feed(b"Event: X\r\nA: 1\r") == []
    assert parser.feed(b"\n\r") == []
    assert parser.feed(b"\n") == [{"Event": "X", "A": "1"}]


def test_utf8_character_split_inside_its_bytes_survives() -> None:
    data = "Event: Newchannel\r\nCallerIDName: Zoë\r\n\r\n".encode()
    cut = data.index("ë".encode()) + 1  # between the two bytes of ë
    parser = AmiParser()
    assert parser.feed(data[:cut]) == []
    assert parser.feed(data[cut:]) == [{"Event": "Newchannel", "CallerIDName": "Zoë"}]


def test_undecodable_bytes_are_replaced_not_fatal() -> None:
    msgs = AmiParser().feed(b"Event: X\r\nCallerIDName: Zo\xff\r\n\r\n")
    assert msgs == [{"Event": "X", "CallerIDName": "Zo\ufffd"}]


def test_repeated_headers_keep_every_value_joined_by_newline() -> None:
    data = (
        b"Response: Success\r\nActionID: 7\r\nMessage: Command output follows\r\n"
        b"Output: System uptime: 6 seconds\r\nOutput: Last reload: 6 seconds\r\n\r\n"
    )
    (msg,) = AmiParser().feed(data)
    assert msg["Output"] == "System uptime: 6 seconds\nLast reload: 6 seconds"
    assert msg["Output"].split("\n") == ["System uptime: 6 seconds", "Last reload: 6 seconds"]


def test_malformed_line_is_kept_and_counted_and_the_stream_goes_on() -> None:
    parser = AmiParser()
    msgs = parser.feed(b"Event: X\r\nthis line has no colon\r\nA: 1\r\n\r\nEvent: Y\r\n\r\n")
    assert msgs == [
        {"Event": "X", MALFORMED_KEY: "this line has no colon", "A": "1"},
        {"Event": "Y"},
    ]
    assert parser.malformed == 1


def test_header_with_empty_value_and_no_space() -> None:
    (msg,) = AmiParser().feed(b"Event: X\r\nAccountCode:\r\nValue: \r\n\r\n")
    assert msg == {"Event": "X", "AccountCode": "", "Value": ""}


def test_value_containing_colon_space_is_kept_whole() -> None:
    (msg,) = AmiParser().feed(b"Event: X\r\nAppData: a: b: c\r\n\r\n")
    assert msg == {"Event": "X", "AppData": "a: b: c"}


def test_extra_blank_lines_between_messages_are_ignored() -> None:
    msgs = AmiParser().feed(b"\r\nEvent: X\r\n\r\n\r\n\r\nEvent: Y\r\n\r\n")
    assert msgs == [{"Event": "X"}, {"Event": "Y"}]


def test_real_event_files_parse_exactly_as_their_json(traces_dir: Path) -> None:
    files = sorted((traces_dir / "asterisk22").glob("*.ami"))
    assert files
    for ami in files:
        data = ami.read_bytes()
        expected = json.loads(ami.with_suffix(".json").read_text())
        parser, got = feed_in_chunks(data, 1000)
        assert got == expected, ami.name
        assert parser.malformed == 0
        assert parser.pending == 0


def test_protocol_transcripts_parse_with_their_real_chunking(protocol_dir: Path) -> None:
    for session in sorted(protocol_dir.glob("*.ami-session")):
        records = json.loads(session.with_suffix(".json").read_text())
        parsers: dict[str, AmiParser] = {}
        for rec in records:
            if rec["dir"] != "recv":
                continue
            parser = parsers.setdefault(rec["conn"], AmiParser())
            for msg in parser.feed(rec["data"].encode()):
                assert "Response" in msg or "Event" in msg, (session.name, msg)
        for parser in parsers.values():
            assert parser.banner == "Asterisk Call Manager/11.0.0", session.name
            assert parser.malformed == 0, session.name


def test_resync_list_items_keep_repeated_variables(protocol_dir: Path) -> None:
    records = json.loads((protocol_dir / "resync_mid_call.json").read_text())
    parser = AmiParser()
    msgs = []
    for rec in records:
        if rec["dir"] == "recv" and rec["conn"] == "A":
            msgs += parser.feed(rec["data"].encode())
    status = [m for m in msgs if m.get("Event") == "Status" and "Variable" in m]
    assert status
    assert any("CTI_QUEUE=" in m["Variable"].split("\n")[0] for m in status)


def test_serialise_action_writes_crlf_headers_and_blank_line() -> None:
    wire = serialise_action({"Action": "Ping", "ActionID": "p-1"})
    assert wire == b"Action: Ping\r\nActionID: p-1\r\n\r\n"
    assert AmiParser().feed(wire) == [{"Action": "Ping", "ActionID": "p-1"}]


def test_serialise_action_repeats_a_multi_line_value_as_headers() -> None:
    wire = serialise_action({"Action": "Originate", "Variable": "A=1\nB=Zoë"})
    assert wire == "Action: Originate\r\nVariable: A=1\r\nVariable: B=Zoë\r\n\r\n".encode()
    assert AmiParser().feed(wire)[0]["Variable"] == "A=1\nB=Zoë"


@pytest.mark.parametrize(
    "fields",
    [{"Action": "Hangup\r\nAction: Originate"}, {"Bad\nKey": "x"}, {"A: B": "x"}, {"": "x"}],
)
def test_serialise_action_refuses_header_injection(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        serialise_action(fields)


def test_skipped_events_are_dropped_unparsed_and_counted(traces_dir: Path) -> None:
    data = (traces_dir / "asterisk22" / "answered_tier1.ami").read_bytes()
    everything = AmiParser().feed(data)
    parser = AmiParser(skip_events={"VarSet", "Newexten"})
    kept = parser.feed(data)
    assert kept == [m for m in everything if m["Event"] not in ("VarSet", "Newexten")]
    assert parser.skipped == len(everything) - len(kept) > 0
