"""`cti`: Print the routing decision for a caller, without a PBX."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Print the routing decision for a caller, without a PBX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
