"""The config file: defaults, environment overrides, and errors that name the key and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.config import ConfigError, async_database_url, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "cti.example.toml", env={})
    assert config.ami.port == 5038
    assert config.tiers["tier2"].queue == "tier2"
    assert config.phone.default_region == "GB"


def test_defaults_without_a_file() -> None:
    config = load_config(None, env={})
    assert config.database_url.startswith("sqlite+aiosqlite:///")
    assert config.agi.deadline_ms == 300


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    path.write_text('[ami]\nsecret = "file"\n[phone]\ndefault_region = "GB"\n')
    env = {
        "CTI_AMI_SECRET": "from-env",
        "CTI_DEFAULT_REGION": "de",
        "CTI_DATABASE_URL": "postgresql://u@db/crm",
    }
    config = load_config(path, env=env)
    assert config.ami.secret == "from-env"
    assert config.phone.default_region == "DE"
    assert config.database_url == "postgresql+asyncpg://u@db/crm"


def test_cti_config_variable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text("[http]\nport = 9999\n")
    assert load_config(None, env={"CTI_CONFIG": str(path)}).http.port == 9999


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/cti.db", "sqlite+aiosqlite:///var/cti.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://a@b/c", "postgresql+asyncpg://a@b/c"),
    ],
)
def test_database_urls_in_every_accepted_form(url: str, expected: str) -> None:
    assert async_database_url(url) == expected


def test_a_bad_value_names_the_key_and_the_line() -> None:
    text = '[ami]\nhost = "pbx"\nport = "five"\n'
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cti.toml", env={})
    assert "cti.toml:3: ami.port" in str(err.value)


def test_an_unknown_key_names_the_key_and_the_line() -> None:
    text = "[http]\nport = 8080\n\n[phone]\nregion = 'GB'\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cti.toml", env={})
    assert "cti.toml:5: phone.region" in str(err.value)


def test_an_unknown_region_is_refused() -> None:
    with pytest.raises(ConfigError, match="default_region"):
        parse_config('[phone]\ndefault_region = "XX"\n', "cti.toml", env={})


def test_broken_toml_gives_the_line() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_config("[ami]\nport = = 1\n", "cti.toml", env={})


def test_an_unsupported_database_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"cti.toml:2: database.url"):
        parse_config('[database]\nurl = "mysql://x/y"\n', "cti.toml", env={})


def test_one_ami_section_is_one_pbx_as_always() -> None:
    config = parse_config('[ami]\nhost = "10.0.0.5"\nsecret = "s"\npbx_id = "main"\n')
    assert config.pbx_links() == [config.ami]


def test_several_pbxs_each_have_their_link_and_share_the_rest_of_ami() -> None:
    config = parse_config(
        '[ami]\nsecret = "common"\nheartbeat_s = 1.0\n'
        '[[pbx]]\nid = "paris"\nhost = "10.0.0.1"\n'
        '[[pbx]]\nid = "lyon"\nhost = "10.0.0.2"\nport = 5039\nsecret = "own"\n'
    )
    paris, lyon = config.pbx_links()
    assert (paris.pbx_id, paris.host, paris.port, paris.secret) == (
        "paris",
        "10.0.0.1",
        5038,
        "common",
    )
    assert (lyon.pbx_id, lyon.host, lyon.port, lyon.secret) == ("lyon", "10.0.0.2", 5039, "own")
    assert paris.heartbeat_s == lyon.heartbeat_s == 1.0


def test_two_pbxs_with_one_id_are_refused() -> None:
    with pytest.raises(ConfigError, match="own id"):
        parse_config('[[pbx]]\nid = "a"\n[[pbx]]\nid = "a"\nport = 5039\n')


def test_the_queue_log_section_is_the_queue_log_of_the_one_pbx() -> None:
    config = parse_config('[ami]\npbx_id = "main"\n[queue_log]\nfile = "/var/log/q"\n', env={})
    assert config.queue_log_of("main").file == "/var/log/q"


def test_each_pbx_has_its_own_queue_log_with_its_own_time_zone() -> None:
    config = parse_config(
        '[[pbx]]\nid = "paris"\nhost = "10.0.0.1"\n'
        '[pbx.queue_log]\nfile = "/mnt/paris/queue_log"\n'
        '[[pbx]]\nid = "lyon"\nhost = "10.0.0.2"\n'
        'queue_log = { table = "queue_log", timezone = "Europe/Paris", lookback_s = 600 }\n'
        '[[pbx]]\nid = "nice"\nhost = "10.0.0.3"\n',
        env={},
    )
    paris, lyon, nice = (config.queue_log_of(p) for p in ("paris", "lyon", "nice"))
    assert (paris.file, paris.table) == ("/mnt/paris/queue_log", "")
    assert (lyon.table, lyon.timezone, lyon.lookback_s) == ("queue_log", "Europe/Paris", 600)
    assert not nice.enabled  # none given: that PBX's queue_log is not read


def test_a_bad_queue_log_of_a_pbx_names_the_pbx_and_the_line() -> None:
    text = (
        '[[pbx]]\nid = "paris"\n[pbx.queue_log]\nfile = "/p"\n'
        '[[pbx]]\nid = "lyon"\n[pbx.queue_log]\ntable = "queue_log"\ntimezone = "Europe/Lyon"\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cti.toml", env={})
    message = str(err.value)
    assert "cti.toml:7: pbx.1.queue_log (PBX 'lyon')" in message
    assert "unknown zone 'Europe/Lyon'" in message
    both = '[[pbx]]\nid = "paris"\nqueue_log = { file = "/p", table = "queue_log" }\n'
    with pytest.raises(ConfigError, match=r"cti.toml:3: pbx.0.queue_log \(PBX 'paris'\).*not both"):
        parse_config(both, "cti.toml", env={})


def test_one_queue_log_for_every_pbx_is_refused_rather_than_read_as_each_pbxs() -> None:
    """Each Asterisk numbers its calls alike: one log read for all would record every call
    under every PBX."""
    with pytest.raises(ConfigError, match=r"\[queue_log\] is the queue_log of the one PBX"):
        parse_config('[queue_log]\nfile = "/var/log/asterisk/queue_log"\n[[pbx]]\nid = "a"\n')
    shared = (
        '[[pbx]]\nid = "paris"\nqueue_log = { file = "/q" }\n'
        '[[pbx]]\nid = "lyon"\nqueue_log = { file = "/q" }\n'
    )
    with pytest.raises(ConfigError, match=r"pbx 'lyon': queue_log file '/q' is given to PBX"):
        parse_config(shared, env={})
