"""Configuration: one TOML file, overridden by environment variables, validated at start.

A bad file fails with a ``ConfigError`` naming the key and the file line, e.g.
``config/cti.toml:12: ami.port: Input should be a valid integer``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.settings import BusConfig, DirectoryConfig, WebhooksConfig

ENV_CONFIG = "CTI_CONFIG"
ENV_DATABASE_URL = "CTI_DATABASE_URL"
ENV_AMI_SECRET = "CTI_AMI_SECRET"
ENV_DEFAULT_REGION = "CTI_DEFAULT_REGION"


class ConfigError(Exception):
    """A configuration problem, with the file and line where it was found when known."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AmiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "cti"
    secret: str = ""
    # AMI event classes to receive; narrow them to cut VarSet/Newexten traffic.
    events: str = "call,agent"
    connect_timeout_s: float = Field(5.0, gt=0)
    action_timeout_s: float = Field(5.0, gt=0)
    ping_interval_s: float = Field(10.0, gt=0)
    ping_timeout_s: float = Field(5.0, gt=0)
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    # Restarts: the PBX's id in the live call state; how long to wait for FullyBooted (with
    # "system" in events); how often to ask a resync Asterisk cannot answer yet; at most how
    # many queued callers' routing variables to read back at a resync.
    pbx_id: str = Field("default", min_length=1, max_length=64)
    boot_timeout_s: float = Field(10.0, gt=0)
    resync_attempts: int = Field(6, ge=1)
    resync_variables_max: int = Field(500, ge=0)
    # How often the live call state says the PBX is still in view (the end of a call that
    # ends while the daemon is killed is estimated to within this).
    heartbeat_s: float = Field(2.0, gt=0)
    # "md5": Challenge/response login, the secret never crosses the wire.
    auth: Literal["plain", "md5"] = "plain"
    enabled: bool = True


class AgiConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(4573, ge=0, le=65535)
    # The whole routing answer must be sent within this deadline, CRM or not.
    deadline_ms: int = Field(300, gt=0)
    # Where the classic AGI script (cti-agi) asks the daemon over HTTP.
    http_url: str = "http://127.0.0.1:8080/api/route"
    # The shared secret cti-agi sends to POST /api/route; empty: /api/route answers nobody.
    http_token: str = ""


class IvrConfig(_Section):
    """Self-service identification before the queue (cti.routing.ivr), per call by the router."""

    enabled: bool = False
    # Ask only callers whose number resolved to one of these (never a known caller).
    when: list[Literal["unknown", "anonymous", "ambiguous"]] = ["unknown", "anonymous", "ambiguous"]
    attempts: int = Field(2, ge=1, le=5)
    digit_timeout_ms: int = Field(5000, ge=500, le=30000)  # before and between digits
    max_digits: int = Field(12, ge=1, le=32)
    # GET DATA prompts: sound file names (Asterisk's core sounds, or your own recordings).
    prompt: str = "beep"
    retry_prompt: str = "beep"
    # The account number and order reference as stored, from the digits typed.
    account_format: str = "{digits}"  # e.g. "CUST-{digits:0>6}"
    order_format: str = "{digits}"  # e.g. "ORD-{digits}"
    lookup_timeout_ms: int = Field(1000, gt=0)  # the CRM's answer to the digits
    # Deflection: an order reference typed -> its delivery state is told before the queue;
    # a prompt per state if given, else the state spelt with SAY ALPHA (core sounds only).
    deflect: bool = True
    state_prompts: dict[str, str] = {}
    # After the state: GET DATA end_prompt; this digit ends the call ("" = no offer).
    end_digit: str = Field("", pattern=r"^[0-9*]?$")
    end_prompt: str = "beep"

    @field_validator("account_format", "order_format")
    @classmethod
    def _formats_digits(cls, value: str) -> str:
        try:
            value.format(digits="0123")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"must be a format of {{digits}}, e.g. 'ORD-{{digits}}': {exc}"
            ) from exc
        return value


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    cors_origins: list[str] = []
    # Dialplan context that click-to-dial (Originate) sends the dialled number to.
    originate_context: str = "from-internal"


class DatabaseConfig(_Section):
    url: str = ""
    echo: bool = False


class PhoneConfig(_Section):
    default_region: str = "GB"
    # Caller IDs with at most this many digits are internal extensions, not customers.
    internal_max_digits: int = Field(6, ge=1, le=10)

    @field_validator("default_region")
    @classmethod
    def _region_is_known(cls, value: str) -> str:
        import phonenumbers

        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r} (use an ISO 3166 code such as GB)")
        return region


class CrmConfig(_Section):
    cache_ttl_s: float = Field(30.0, ge=0)
    cache_size: int = Field(10_000, ge=0)
    view_interactions: int = Field(10, ge=0)
    view_orders: int = Field(5, ge=0)
    # Interaction records the CRM refused, or could not take before shutdown (cti.dead_letters);
    # empty: beside the SQLite file, else in the user data directory.
    dead_letter_path: str = ""


class TierConfig(_Section):
    """A support tier: the queue its callers wait in and how escalation into it is prioritised."""

    queue: str
    priority: int = Field(0, ge=0, le=9999)
    escalation_boost: int = Field(10, ge=0, le=9999)
    label: str = ""
    # Dialplan target (context,exten,priority) that enters this tier's queue, for Redirect.
    context: str = "transfer"
    exten: str = ""


class AgentConfig(_Section):
    """A desktop user. ``token_sha256`` is the hex SHA-256 of the agent's secret token."""

    name: str
    member: str = ""
    interface: str = ""
    role: Literal["agent", "supervisor"] = "agent"
    tiers: list[str] = []
    token_sha256: str = ""
    # The PBX the agent's phone is on (an id of [[pbx]]): where its pause, queue login and
    # click-to-dial go. Empty: the only PBX; with several PBXs those actions are refused.
    pbx: str = ""


class QueueTargetConfig(_Section):
    """One queue's service-level threshold and target (``[stats.queues.NAME]``)."""

    service_level_s: float = Field(20.0, gt=0)
    service_level_target: float = Field(0.8, ge=0, le=1)


class StatsConfig(_Section):
    # Service level: answered within service_level_s, target service_level_target (80% in 20 s).
    service_level_s: float = Field(20.0, gt=0)
    service_level_target: float = Field(0.8, ge=0, le=1)
    # Callers who hang up within this many seconds are short abandons, counted apart.
    short_abandon_s: float = Field(5.0, ge=0)
    # A call from a customer who called within this many days before is a repeat call.
    repeat_days: int = Field(7, ge=1, le=365)
    queues: dict[str, QueueTargetConfig] = {}


class SupervisorConfig(_Section):
    # Alerts on the supervisor console (and as "alert" call events): 0 turns one off.
    max_wait_s: float = Field(120.0, ge=0)
    max_pause_s: float = Field(900.0, ge=0)
    # Pause reasons allowed longer: reason -> seconds (e.g. lunch = 3600).
    max_pause_by_reason: dict[str, float] = {}
    # How often queue rows, the day's chart and alerts are refreshed on the console.
    refresh_s: float = Field(1.0, gt=0)
    # Calls answered in these queues are recorded (MixMonitor on the caller's channel).
    record_queues: list[str] = []
    # Where Asterisk writes the recordings and the daemon reads them ("" = the data dir);
    # several instances: one directory shared by the PBXs and every instance, at this path.
    recordings_dir: str = ""
    retention_days: int = Field(90, ge=1)


class CaseReasonConfig(_Section):
    """One reason a case is opened for (``[[cases.reasons]]``): its tier and SLA."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    label: str = Field("", max_length=200)
    tier: str = Field(min_length=1, max_length=64)
    sla_hours: float = Field(gt=0, le=24 * 365)


class CasesConfig(_Section):
    reasons: list[CaseReasonConfig] = [
        CaseReasonConfig(name="billing", label="Billing question", tier="tier1", sla_hours=48),
        CaseReasonConfig(name="fault", label="Fault report", tier="tier2", sla_hours=24),
        CaseReasonConfig(name="complaint", label="Complaint", tier="tier2", sla_hours=72),
    ]

    @field_validator("reasons")
    @classmethod
    def _names_are_unique(cls, value: list[CaseReasonConfig]) -> list[CaseReasonConfig]:
        names = [r.name for r in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"reason name(s) given twice: {', '.join(twice)}")
        return value


class CallbacksConfig(_Section):
    # Callers who gave up in a queue become callback tasks for that queue's agents.
    enabled: bool = True
    # Tasks are pushed to the desktops (the hub's ``callback`` message); a desktop whose
    # WebSocket is down asks for them (GET /api/callbacks) this often until it is back.
    poll_s: float = Field(10.0, gt=0)


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


class QueueLogConfig(_Section):
    """Asterisk's queue_log (``cti.queuelog``): after a start or a takeover, the queue calls
    no daemon saw are recorded from it, and those seen in part completed. One of ``file``
    (Asterisk on this host) or ``table`` (``extconfig.conf`` ``queue_log => pgsql,...``).
    ``[queue_log]`` is the one PBX of ``[ami]``'s; with ``[[pbx]]`` each PBX has its own."""

    file: str = ""  # e.g. /var/log/asterisk/queue_log
    table: str = ""  # e.g. queue_log (its columns as contrib/ast-db-manage creates them)
    database_url: str = ""  # where the table is; empty: [database] url
    # The table's ``time`` zone: "UTC" with logger.conf queue_log_realtime_use_gmt = yes;
    # empty: this host's local time zone (Asterisk's default, local time).
    timezone: str = ""
    lookback_s: float = Field(3600.0, ge=0, le=7 * 86400)  # read from this long before

    @property
    def enabled(self) -> bool:
        return bool(self.file or self.table)

    @model_validator(mode="after")
    def _one_source(self) -> QueueLogConfig:
        if self.file and self.table:
            raise ValueError("set file or table, not both")
        if self.timezone:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"timezone: unknown zone {self.timezone!r}") from exc
        return self


class PbxConfig(_Section):
    """One PBX of several (``[[pbx]]``): its AMI link and queue_log; the rest of ``[ami]``
    applies to all. Each has its own lease; its call ids are qualified ``id:linkedid``
    (``cti.cluster.pbxs``)."""

    id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str | None = None  # None: [ami] username
    secret: str | None = None  # None: [ami] secret
    # This PBX's own queue_log (its file or table, its time zone): [pbx.queue_log] after
    # its [[pbx]], or queue_log = { file = "..." } in it.
    queue_log: QueueLogConfig = QueueLogConfig()


class ClusterConfig(_Section):
    """Several instances (``cti.cluster``): empty ``redis_url`` is one instance, as always."""

    redis_url: str = ""  # e.g. redis://127.0.0.1:6379/0
    instance_id: str = Field("", max_length=64)  # empty: host name and process id
    key_prefix: str = Field("cti", min_length=1, max_length=64)  # Redis keys of this cluster
    lease_ttl_s: float = Field(2.0, ge=0.3, le=60)  # an ingester silent this long is replaced
    # PBX ids this instance may ingest (empty: the [ami] pbx_id); the lease is per PBX.
    pbxs: list[str] = []
    stream_maxlen: int = Field(100_000, ge=1000)  # desktop messages kept in Redis for replay
    ingest_log: str = ""  # a JSON line per ingest moment with its fencing token (audits, tests)
    # Several PBXs ([[pbx]]): a starting instance announces itself and waits this long before
    # its first lease, so that instances started together split the PBXs (cti.cluster.spread).
    settle_s: float = Field(5.0, ge=0, le=300)

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url)


class Config(_Section):
    ami: AmiConfig = AmiConfig()
    agi: AgiConfig = AgiConfig()
    ivr: IvrConfig = IvrConfig()
    http: HttpConfig = HttpConfig()
    database: DatabaseConfig = DatabaseConfig()
    phone: PhoneConfig = PhoneConfig()
    crm: CrmConfig = CrmConfig()
    logging: LoggingConfig = LoggingConfig()
    stats: StatsConfig = StatsConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    cases: CasesConfig = CasesConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    cluster: ClusterConfig = ClusterConfig()
    # Several PBXs ([[pbx]]); none: the one PBX of [ami], as always.
    pbx: list[PbxConfig] = []
    queue_log: QueueLogConfig = QueueLogConfig()
    tiers: dict[str, TierConfig] = {
        "tier1": TierConfig(queue="tier1", priority=0, exten="8001"),
        "tier2": TierConfig(queue="tier2", priority=0, exten="8002"),
        "tier3": TierConfig(queue="tier3", priority=0, exten="8003"),
    }
    # Routing rules and business hours are validated by cti.routing (it names the failing rule).
    routing: dict[str, Any] = {}
    agents: list[AgentConfig] = []
    # Customer directories asked in order (connectors); none: the built-in store alone.
    directories: list[DirectoryConfig] = []
    webhooks: WebhooksConfig = WebhooksConfig()
    bus: BusConfig = BusConfig()
    # Where this config came from, for messages; not a TOML key.
    source: str = Field("<defaults>", exclude=True)

    @model_validator(mode="after")
    def _case_tiers_are_tiers(self) -> Config:
        if "reasons" not in self.cases.model_fields_set:
            return self  # the built-in examples; a site with other tiers configures its own
        unknown = sorted({r.tier for r in self.cases.reasons} - set(self.tiers))
        if unknown:
            raise ValueError(
                f"cases.reasons: tier {', '.join(unknown)} is not in [tiers] "
                f"(known: {', '.join(sorted(self.tiers))})"
            )
        return self

    @model_validator(mode="after")
    def _pbx_ids_are_unique(self) -> Config:
        ids = [p.id for p in self.pbx]
        if len(set(ids)) != len(ids):
            raise ValueError(f"pbx: every [[pbx]] needs its own id (got {', '.join(ids)})")
        known = ids or [self.ami.pbx_id]
        for agent in self.agents:
            if agent.pbx and agent.pbx not in known:
                raise ValueError(
                    f"agents: {agent.name}'s pbx {agent.pbx!r} is not a PBX of the config "
                    f"(known: {', '.join(known)})"
                )
        return self

    @model_validator(mode="after")
    def _tokens_are_unique(self) -> Config:
        # One token signs in one user: two agents sharing one could each act as the other.
        seen: dict[str, str] = {}
        for agent in self.agents:
            digest = agent.token_sha256.strip().lower()
            if digest and digest in seen:
                raise ValueError(
                    f"agents: {seen[digest]} and {agent.name} have the same token_sha256 "
                    "(each user needs a token of their own)"
                )
            seen.setdefault(digest, agent.name)
        return self

    @model_validator(mode="after")
    def _queue_log_is_per_pbx(self) -> Config:
        # Each Asterisk writes its own queue_log, numbering its calls as the others may:
        # one log read for every PBX would record each PBX's calls under all of them.
        if self.queue_log.enabled and self.pbx:
            raise ValueError(
                "queue_log: [queue_log] is the queue_log of the one PBX of [ami]; with [[pbx]] "
                "give each PBX its own (queue_log = { file = ... } in its [[pbx]])"
            )
        readers: dict[tuple[str, str], str] = {}
        for p in self.pbx:
            q = p.queue_log
            where = ("file", q.file) if q.file else ("table", f"{q.database_url} {q.table}")
            if not q.enabled:
                continue
            if where in readers:
                raise ValueError(
                    f"pbx {p.id!r}: queue_log {where[0]} {where[1].strip()!r} is given to PBX "
                    f"{readers[where]!r} too: each PBX writes its own queue_log"
                )
            readers[where] = p.id
        return self

    def queue_log_of(self, pbx_id: str) -> QueueLogConfig:
        """The queue_log of a PBX: its ``[[pbx]]`` entry's, or ``[queue_log]`` (one PBX)."""
        return next((p.queue_log for p in self.pbx if p.id == pbx_id), self.queue_log)

    def pbx_links(self) -> list[AmiConfig]:
        """The AMI link of each PBX: ``[ami]`` alone, or one per ``[[pbx]]`` (``pbx_id`` its
        id, the other settings from ``[ami]``)."""
        if not self.pbx:
            return [self.ami]
        return [
            self.ami.model_copy(
                update={
                    "pbx_id": p.id,
                    "host": p.host,
                    "port": p.port,
                    "username": self.ami.username if p.username is None else p.username,
                    "secret": self.ami.secret if p.secret is None else p.secret,
                }
            )
            for p in self.pbx
        ]

    @property
    def database_url(self) -> str:
        """The async SQLAlchemy URL of the CRM store."""
        return async_database_url(self.database.url or default_database_url())


def default_database_url() -> str:
    data_dir = Path(platformdirs.user_data_dir("cti"))
    return f"sqlite+aiosqlite:///{data_dir / 'cti.db'}"


def async_database_url(url: str) -> str:
    """Accept ``sqlite:///``, ``sqlite+aiosqlite:///``, ``postgresql://`` (and ``postgres://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"database url {url!r} has no scheme (sqlite:///path or postgresql://…)")
    drivers = {
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
        "postgresql+asyncpg": "postgresql+asyncpg",
    }
    if scheme not in drivers:
        raise ConfigError(f"database url scheme {scheme!r} is not supported (sqlite, postgresql)")
    return f"{drivers[scheme]}://{rest}"


@dataclass(frozen=True)
class _Located:
    text: str
    path: str

    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        """Best-effort line number of a dotted key path in the TOML text."""
        lines = self.text.splitlines()
        first, end = 0, len(lines)
        if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int):
            # The n-th [[name]] entry: look within it alone.
            entry = re.compile(rf"^\s*\[\[\s*{re.escape(loc[0])}\s*\]\]\s*$")
            starts = [i for i, line in enumerate(lines) if entry.match(line)]
            if loc[1] < len(starts):
                first = starts[loc[1]]
                end = starts[loc[1] + 1] if loc[1] + 1 < len(starts) else len(lines)
        tables = [str(p) for p in loc if isinstance(p, str)]
        key = tables[-1] if tables else None
        start = first
        # Walk down the table headers (``[a]``, ``[a.b]``, ``[[a.b]]``) as far as they go.
        for depth in range(len(tables), 0, -1):
            header = ".".join(tables[:depth])
            pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(header)}\s*\]\]?\s*$")
            index = next((i for i in range(first, end) if pattern.match(lines[i])), None)
            if index is not None:
                if depth == len(tables):
                    return index + 1
                start = index
                break
        if key is None:
            return None
        # The key, or the inline table it is in (``queue_log = { ... }``).
        for name in dict.fromkeys([key, *reversed(tables[:-1])]):
            key_pattern = re.compile(rf"^\s*\"?{re.escape(name)}\"?\s*=")
            for i in range(start, end):
                if key_pattern.match(lines[i]):
                    return i + 1
        return None


def _entry_name(loc: tuple[str | int, ...], data: Mapping[str, Any]) -> str:
    """``pbx.1.queue_log`` as ``pbx.1.queue_log (PBX 'lyon')``: an entry of ``[[pbx]]`` is
    known by its id, not its place in the file."""
    dotted = ".".join(str(p) for p in loc) or "<top>"
    if len(loc) >= 2 and loc[0] == "pbx" and isinstance(loc[1], int):
        entries = data.get("pbx")
        if isinstance(entries, list) and loc[1] < len(entries):
            entry = entries[loc[1]]
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                return f"{dotted} (PBX {entry['id']!r})"
    return dotted


def _format_errors(
    error: ValidationError,
    located: _Located | None,
    source: str,
    data: Mapping[str, Any] | None = None,
) -> str:
    messages = []
    for item in error.errors():
        loc = tuple(item["loc"])
        dotted = _entry_name(loc, data or {})
        line = located.line_of(loc) if located else None
        where = f"{source}:{line}" if line else source
        messages.append(f"{where}: {dotted}: {item['msg']}")
    return "\n".join(messages)


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    if url := env.get(ENV_DATABASE_URL):
        data.setdefault("database", {})["url"] = url
    if secret := env.get(ENV_AMI_SECRET):
        data.setdefault("ami", {})["secret"] = secret
    if region := env.get(ENV_DEFAULT_REGION):
        data.setdefault("phone", {})["default_region"] = region
    return data


def parse_config(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None
) -> Config:
    """Parse TOML text into a validated ``Config``; environment overrides apply on top."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    data = _apply_env(data, os.environ if env is None else env)
    try:
        config = Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, _Located(text, source), source, data)) from exc
    try:
        async_database_url(config.database.url or default_database_url())
    except ConfigError as exc:
        line = _Located(text, source).line_of(("database", "url"))
        raise ConfigError(f"{source}:{line or '?'}: database.url: {exc}") from exc
    return config


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the config from ``path``, else ``$CTI_CONFIG``, else built-in defaults."""
    environ = os.environ if env is None else env
    chosen = path or environ.get(ENV_CONFIG)
    if not chosen:
        return parse_config("", "<defaults>", environ)
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror or exc}") from exc
    return parse_config(text, str(file), environ)
