"""`cti`: Check AMI, permissions, queues and the database, line by line."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Check AMI, permissions, queues and the database, line by line"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
