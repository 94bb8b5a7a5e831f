"""`cti agent-token NAME`: a new desktop login token for an agent, and its hash for the config."""

from __future__ import annotations

import argparse
import sys

from cti.config import Config

HELP = "Create a desktop login token for an agent from the config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help='the agent\'s name as in [[agents]] name (e.g. "Agent 1001")')


def run(args: argparse.Namespace, config: Config) -> int:
    from cti.http.auth import hash_token, new_token

    token = new_token()
    known = any(agent.name == args.name for agent in config.agents)
    print(f"Token for {args.name} (give it to the agent; it is not stored anywhere):")
    print(f"  {token}")
    print(f'Paste into the [[agents]] entry with name = "{args.name}":')
    print(f'token_sha256 = "{hash_token(token)}"')
    if not known:
        print(
            f"cti: note: no agent named {args.name!r} in {config.source}; add an [[agents]] entry",
            file=sys.stderr,
        )
    return 0
