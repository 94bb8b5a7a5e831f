"""`cti`: Run the PBX simulator (AMI server + FastAGI client) as a load generator."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Run the PBX simulator (AMI server + FastAGI client) as a load generator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
