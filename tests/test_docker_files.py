"""docker/: the Asterisk files parse, and every name one file uses is defined where it points.

An administrator copies these files next to a real PBX: a queue the dialplan names but
queues.conf lacks, an AMI user the service does not log in as, or an AGI port nobody listens
on would only show up on the first call. These tests catch them on every commit.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import yaml
from asterisk.config import Config as AsteriskConfig
from fakes.ami_server import REQUIRED_WRITE, originate_forbidden

from cti.commands.doctor import PROBES
from cti.config import Config, load_config
from cti.sim.simulator import settings_from_config

DOCKER = Path(__file__).resolve().parent.parent / "docker"
ASTERISK = DOCKER / "asterisk"
CONF_FILES = ("manager.conf", "extensions.conf", "queues.conf", "pjsip.conf")


def sections(name: str) -> dict[str, list[dict[str, str]]]:
    """Asterisk config as parsed by pyst2: section name -> its bodies (names may repeat)."""
    parsed = AsteriskConfig(str(ASTERISK / name))
    result: dict[str, list[dict[str, str]]] = {}
    for category in parsed.categories:
        body: dict[str, str] = {}
        for item in category.items:
            key = item.name.strip()
            body[key] = f"{body[key]}\n{item.value.strip()}" if key in body else item.value.strip()
        result.setdefault(category.name, []).append(body)
    return result


def one(name: str, section: str) -> dict[str, str]:
    bodies = sections(name)[section]
    assert len(bodies) == 1, f"{name}: [{section}] appears {len(bodies)} times"
    return bodies[0]


@pytest.fixture(scope="module")
def service() -> Config:
    return load_config(DOCKER / "cti.toml", env={})


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


@pytest.mark.parametrize("name", CONF_FILES)
def test_each_asterisk_file_parses_and_every_setting_sits_in_a_section(name: str) -> None:
    parsed = AsteriskConfig(str(ASTERISK / name))
    assert parsed.categories, f"{name} has no [section]"
    in_sections = sum(len(c.items) for c in parsed.categories)
    settings = [line for line in parsed.lines if type(line).__name__ == "Item"]
    assert in_sections == len(settings), f"{name}: a setting before the first [section]"
    comments = sum(1 for line in parsed.raw_lines if line.lstrip().startswith(";"))
    assert comments >= 10, f"{name} needs comments for an administrator new to the service"


def test_the_ami_user_is_the_services_with_least_privilege(
    service: Config, compose: dict[str, object]
) -> None:
    general = one("manager.conf", "general")
    assert general["enabled"] == "yes" and general["port"] == str(service.ami.port)
    assert general["timestampevents"] == "yes"
    user = one("manager.conf", service.ami.username)
    read = set(user["read"].split(","))
    write = set(user["write"].split(","))
    # call and queue events, and FullyBooted/Shutdown to know when Asterisk (re)started
    assert read == {"system", "call", "agent"}
    # Every action the service sends (cti doctor tries each) is one Asterisk 22 grants this
    # user: its write classes share one with the action's, per Asterisk's own table.
    for action in ("Originate", *(probe.action for probe in PROBES)):
        required = REQUIRED_WRITE.get(action.lower())
        assert not required or required & write, f"{action} needs one of {sorted(required)}"
    # ChanSpy (a supervisor listening in) is not one of the applications needing system.
    assert not originate_forbidden("ChanSpy", "PJSIP/1001,q", frozenset(write))
    assert not write & {"all", "system", "command", "config"}
    assert service.ami.host == "asterisk" and "asterisk" in compose["services"]  # type: ignore[operator]
    for name in ("cti-a", "cti-b"):  # both instances (one ingests at a time)
        cti = compose["services"][name]  # type: ignore[index]
        env_secret = cti["environment"]["CTI_AMI_SECRET"]
        assert user["secret"] in env_secret, "compose's default secret must match manager.conf"
        # The service's fixed address on the compose network is one the user may log in from.
        address = cti["networks"]["cti-net"]["ipv4_address"]
        permits = user["permit"].split("\n")
        assert any(p.startswith(".".join(address.split(".")[:3])) for p in permits)


def _extensions(context: str) -> list[str]:
    """The raw `exten =>` / `same =>` lines of a context, in order."""
    lines, current = [], None
    for raw in (ASTERISK / "extensions.conf").read_text().splitlines():
        text = raw.split(";", 1)[0].strip()
        if text.startswith("["):
            current = text.strip("[]")
        elif current == context and text:
            lines.append(text)
    return lines


def test_inbound_calls_ask_the_services_fastagi_port_then_queue_with_its_priority(
    service: Config, compose: dict[str, object]
) -> None:
    url = one("extensions.conf", "globals")["CTI_AGI_URL"]
    match = re.fullmatch(r"agi://([\w.-]+):(\d+)/route", url)
    assert match, url
    assert match.group(1) in compose["services"]  # type: ignore[operator]
    assert int(match.group(2)) == service.agi.port == 4573
    inbound = "\n".join(_extensions("from-pstn"))
    assert "AGI(${CTI_AGI_URL},${EXTEN})" in inbound
    assert "Set(QUEUE_PRIO=" in inbound and "${CTI_PRIORITY}" in inbound
    assert "Queue(${CTI_QUEUE}," in inbound
    steps = inbound.index("AGI("), inbound.index("CTI_DEFAULT_QUEUE"), inbound.index("Queue(")
    assert list(steps) == sorted(steps), "fallback must sit between the AGI and the Queue"


def test_every_queue_entry_is_tied_to_its_call_in_queue_log_before_queue() -> None:
    """queue_log names a queue entry by the waiting channel's Uniqueid; the row before each
    ``Queue()`` gives the call's Linkedid (``cti.queuelog``: calls nobody saw)."""
    link = "QueueLog(${CTI_QUEUE},${UNIQUEID},NONE,CTI_LINKEDID,${CHANNEL(linkedid)})"
    for context in ("from-pstn", "transfer"):
        lines = _extensions(context)
        queues = [i for i, line in enumerate(lines) if "Queue(${CTI_QUEUE}," in line]
        assert queues, context
        for i in queues:
            assert lines[i - 1].endswith(link), (context, lines[i - 1])


def _queues() -> dict[str, dict[str, str]]:
    return {
        name: bodies[0] for name, bodies in sections("queues.conf").items() if name != "general"
    }


def test_every_queue_the_dialplan_or_the_config_names_exists_in_queues_conf(
    service: Config,
) -> None:
    queues = _queues()
    default = one("extensions.conf", "globals")["CTI_DEFAULT_QUEUE"]
    assert default == "tier1" and default in queues
    transfer = {
        m.group(1): m.group(2)
        for line in _extensions("transfer")
        if (m := re.match(r"exten => (\d+),1,Set\(CTI_QUEUE=(\w+)\)", line))
    }
    assert set(transfer.values()) <= set(queues)
    for name, tier in service.tiers.items():
        assert tier.queue in queues, f"tier {name}: queue {tier.queue} missing in queues.conf"
        assert transfer.get(tier.exten) == tier.queue, f"tier {name}: {tier.exten} in [transfer]"
    assert {"tier1", "tier2", "tier3", "billing"} <= set(queues)
    # The simulator reads the same tiers into the same transfer targets as the dialplan.
    assert settings_from_config(service).dialplan.transfer == transfer


# Every keyword app_queue of Asterisk 22.10.1 reads, from its source (apps/app_queue.c):
# queue_set_param() for a queue, reload_queue_rules/queues_general for [general]. Anything else
# makes Asterisk log "Unknown keyword in queue ..." once per queue on every load.
QUEUE_KEYWORDS = frozenset(
    [
        "member",
        "musicclass",
        "music",
        "musiconhold",
        "announce",
        "context",
        "timeout",
        "ringinuse",
        "setinterfacevar",
        "setqueuevar",
        "setqueueentryvar",
        "monitor-format",
        "membergosub",
        "queue-youarenext",
        "queue-thereare",
        "queue-callswaiting",
        "queue-quantity1",
        "queue-quantity2",
        "queue-holdtime",
        "queue-minutes",
        "queue-minute",
        "queue-seconds",
        "queue-thankyou",
        "queue-callerannounce",
        "queue-reporthold",
        "announce-frequency",
        "announce-to-first-user",
        "min-announce-frequency",
        "announce-round-seconds",
        "announce-holdtime",
        "announce-position",
        "announce-position-only-up",
        "announce-position-limit",
        "periodic-announce",
        "periodic-announce-startdelay",
        "periodic-announce-frequency",
        "relative-periodic-announce",
        "random-periodic-announce",
        "retry",
        "wrapuptime",
        "penaltymemberslimit",
        "autofill",
        "autopause",
        "autopausedelay",
        "autopausebusy",
        "autopauseunavail",
        "maxlen",
        "servicelevel",
        "strategy",
        "joinempty",
        "leavewhenempty",
        "reportholdtime",
        "memberdelay",
        "weight",
        "timeoutrestart",
        "defaultrule",
        "timeoutpriority",
        "log-restricted-caller-id",
    ]
)
QUEUE_GENERAL_KEYWORDS = frozenset(
    [
        "persistentmembers",
        "autofill",
        "monitor-type",
        "shared_lastcall",
        "negative_penalty_invalid",
        "log_membername_as_agent",
        "force_longest_waiting_caller",
        "log_unpause_on_reason_change",
        "log-caller-id-name",
    ]
)


def test_queues_conf_uses_only_keywords_asterisk_22_knows() -> None:
    unknown = {
        (name, key)
        for name, bodies in sections("queues.conf").items()
        for body in bodies
        for key in body
        if key.lower() not in (QUEUE_GENERAL_KEYWORDS if name == "general" else QUEUE_KEYWORDS)
    }
    assert not unknown, f"Asterisk 22 warns 'Unknown keyword' for {sorted(unknown)}"


def test_queues_tell_who_answered_with_sensible_timeouts() -> None:
    for name, queue in _queues().items():
        assert queue.get("setinterfacevar") == "yes", f"[{name}] setinterfacevar"
        assert 5 <= int(queue["timeout"]) <= 60, f"[{name}] timeout"
        assert 0 <= int(queue["wrapuptime"]) <= 60, f"[{name}] wrapuptime"
        assert queue["strategy"] in {"rrmemory", "ringall", "leastrecent", "fewestcalls"}
        assert queue.get("ringinuse") == "no"


def test_queue_members_are_the_configs_agents_on_phones_pjsip_defines(service: Config) -> None:
    pjsip = sections("pjsip.conf")
    endpoints = {
        n for n, bodies in pjsip.items() if any(b.get("type") == "endpoint" for b in bodies)
    }
    agents = {(a.member, a.interface): a for a in service.agents if a.role == "agent"}
    for name, queue in _queues().items():
        for member in queue["member"].split("\n"):
            interface, _penalty, member_name, state = (p.strip() for p in member.split(","))
            assert (member_name, interface) in agents, f"[{name}] {member} not in cti.toml"
            assert name in {service.tiers[t].queue for t in agents[member_name, interface].tiers}
            assert interface.removeprefix("PJSIP/") in endpoints
            assert state == interface


def test_phones_and_trunk_land_in_contexts_the_dialplan_defines(service: Config) -> None:
    contexts = set(sections("extensions.conf"))
    pjsip = sections("pjsip.conf")
    for name, bodies in pjsip.items():
        for body in bodies:
            if body.get("type") == "endpoint":
                assert body["context"] in contexts, f"pjsip [{name}] context"
    trunk = next(b for b in pjsip["trunk"] if b.get("type") == "endpoint")
    assert trunk["context"] == "from-pstn"
    assert service.http.originate_context in contexts


def test_the_image_is_slim_non_root_and_health_checked_on_healthz(service: Config) -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1\d-slim\b", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    health = re.search(r"^HEALTHCHECK .*(?:\n\s+.*)*", text, re.M)
    assert health and f"127.0.0.1:{service.http.port}/healthz" in health.group(0)
    assert re.search(r"^EXPOSE 8080 4573$", text, re.M)
    assert service.http.host == "0.0.0.0" and service.agi.host == "0.0.0.0"


def test_compose_runs_asterisk_postgres_redis_and_two_instances_behind_a_proxy(
    compose: dict[str, object], service: Config
) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    assert {"asterisk", "postgres", "redis", "cti-a", "cti-b", "proxy"} <= set(services)
    mounts = " ".join(services["asterisk"]["volumes"])
    for name in CONF_FILES:
        assert f"./asterisk/{name}:/etc/asterisk/{name}" in mounts
    for name in ("cti-a", "cti-b"):
        cti = services[name]
        assert cti["build"]["dockerfile"] == "docker/Dockerfile"
        assert cti["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert cti["depends_on"]["redis"]["condition"] == "service_healthy"
        assert cti["environment"]["CTI_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:" in cti["environment"]["CTI_DATABASE_URL"]
    assert service.cluster.redis_url.startswith("redis://redis:")
    proxy = (DOCKER / "nginx.conf").read_text()
    assert "server cti-a:8080" in proxy and "server cti-b:8080" in proxy
    assert "proxy_set_header Upgrade" in proxy  # the desktops' WebSocket


def test_inbound_calls_ask_the_second_instance_when_the_first_fails_never_in_silence() -> None:
    globals_ = one("extensions.conf", "globals")
    assert globals_["CTI_AGI_URL"] != globals_["CTI_AGI_URL_2"]
    inbound = _extensions("from-pstn")
    text = "\n".join(inbound)
    first, second = text.index("AGI(${CTI_AGI_URL},"), text.index("AGI(${CTI_AGI_URL_2},")
    assert first < second
    second_line = next(line for line in inbound if "CTI_AGI_URL_2" in line)
    assert '"${AGISTATUS}" != "SUCCESS"' in second_line  # only when the first failed
    # Ringback while the router is asked, the answer only before the queue (music on hold).
    assert text.index("Ringing()") < first and second < text.index("Answer()")


def test_the_systemd_unit_runs_the_daemon_unprivileged() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DOCKER / "systemd" / "cti.service")
    service = unit["Service"]
    assert service["User"] not in {"root", "0"}
    assert service["ExecStart"].split()[1:3] == ["run", "-c"]
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
