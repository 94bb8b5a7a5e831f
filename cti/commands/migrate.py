"""`cti`: Create or upgrade the CRM database schema."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Create or upgrade the CRM database schema"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
