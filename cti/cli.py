"""The ``cti`` command: one sub-command per module in ``cti.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cti import __version__
from cti.config import ConfigError, load_config
from cti.logsetup import configure_logging

# Sub-command name -> module in cti.commands. Each module has ``HELP``, ``add_arguments(parser)``
# and ``run(args, config) -> int``.
COMMANDS = {
    "run": "run",
    "demo": "demo",
    "sim": "sim",
    "seed": "seed",
    "import": "import_csv",
    "lookup": "lookup",
    "replay": "replay",
    "route-test": "route_test",
    "check-config": "check_config",
    "doctor": "doctor",
    "migrate": "migrate",
    "agent-token": "agent_token",
    "webhooks": "webhooks",
    "report": "report",
    "duplicates": "duplicates",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cti", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cti {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"cti.commands.{module_name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        cmd.add_argument("-c", "--config", help="config file (TOML); default $CTI_CONFIG")
        cmd.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"cti: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or config.logging.level, config.logging.format)
    try:
        return int(args._module.run(args, config) or 0)
    except ConfigError as exc:
        print(f"cti: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
