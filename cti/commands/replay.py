"""`cti`: Replay a recorded AMI trace through the call tracker (JSON Lines out)."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Replay a recorded AMI trace through the call tracker (JSON Lines out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
