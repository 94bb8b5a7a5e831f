"""`cti`: Import customers from a CSV file, with a data-quality report."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Import customers from a CSV file, with a data-quality report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    print("cti: this command is not built yet", file=sys.stderr)
    return 2
