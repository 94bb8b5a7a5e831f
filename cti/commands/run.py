"""`cti`: Run the daemon (AMI listener, FastAGI router, HTTP API and desktop)."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Run the daemon (AMI listener, FastAGI router, HTTP API and desktop)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
