"""`cti`: Create a desktop login token for an agent from the config."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Create a desktop login token for an agent from the config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
