"""`cti`: Fill the CRM store with realistic demo customers."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Fill the CRM store with realistic demo customers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
