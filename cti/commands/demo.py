"""`cti`: Start everything on the embedded default with a simulated PBX and demo data."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Start everything on the embedded default with a simulated PBX and demo data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
