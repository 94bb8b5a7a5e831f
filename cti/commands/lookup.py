"""`cti`: Resolve a caller ID and print the customer's 360° view."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Resolve a caller ID and print the customer's 360° view"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
