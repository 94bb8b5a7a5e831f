"""`cti run`: the daemon (AMI, FastAGI router, HTTP API and desktop) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cti.config import Config

HELP = "Run the daemon (AMI listener, FastAGI router, HTTP API and desktop)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http-port", type=int, help="override [http] port (0: any free port)")
    parser.add_argument("--agi-port", type=int, help="override [agi] port (0: any free port)")


async def _main(args: argparse.Namespace, config: Config) -> int:
    from crm_core.errors import CrmUnavailable
    from cti.daemon import build_daemon

    try:
        daemon = await build_daemon(config, http_port=args.http_port, agi_port=args.agi_port)
    except CrmUnavailable as exc:
        print(f"cti: the CRM database is not available: {exc}", file=sys.stderr)
        return 1
    try:
        return await daemon.run_until_signal()
    except OSError as exc:  # a port in use, an address not available
        print(f"cti: cannot start: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
