"""Tokens: `cti agent-token` output works as the config's hash, and only the hash is kept."""

from __future__ import annotations

import re

import pytest

from cti.cli import main
from cti.config import AgentConfig, ConfigError, parse_config
from cti.http.auth import AgentDirectory, hash_token


def test_agent_token_prints_a_token_whose_hash_logs_the_agent_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["agent-token", "Agent 1001"]) == 0
    out = capsys.readouterr().out
    token = out.splitlines()[1].strip()
    line = re.search(r'^token_sha256 = "([0-9a-f]{64})"$', out, re.M)
    assert line is not None and line.group(1) == hash_token(token)
    assert token not in line.group(0)
    agent = AgentConfig(name="Agent 1001", token_sha256=line.group(1))
    directory = AgentDirectory([agent, AgentConfig(name="no token yet")])
    assert directory.authenticate(token) == agent
    assert directory.authenticate(token + "x") is None
    assert directory.authenticate("") is None


def test_two_runs_give_different_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    main(["agent-token", "A"])
    main(["agent-token", "A"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] != lines[6] and len(lines[1].strip()) >= 40


def test_an_agent_without_a_hash_cannot_log_in_with_an_empty_token() -> None:
    directory = AgentDirectory([AgentConfig(name="x", token_sha256="")])
    assert directory.authenticate(hash_token("")) is None
    assert directory.authenticate("") is None


def test_each_of_many_agents_signs_in_with_their_own_token_whatever_the_hash_case() -> None:
    agents = [
        AgentConfig(name=f"a{i}", token_sha256=f" {hash_token(f't{i}').upper()} ")
        for i in range(2000)
    ]
    directory = AgentDirectory(agents)
    assert [directory.authenticate(f"t{i}") for i in (0, 1234, 1999)] == [
        agents[0],
        agents[1234],
        agents[1999],
    ]
    assert directory.authenticate("t2000") is None


def test_two_agents_with_one_token_are_refused_at_config_load() -> None:
    digest = hash_token("shared")
    text = "".join(
        f'[[agents]]\nname = "{name}"\ntoken_sha256 = "{digest}"\n' for name in ("ann", "bob")
    )
    with pytest.raises(ConfigError, match="ann and bob have the same token_sha256"):
        parse_config(text)
