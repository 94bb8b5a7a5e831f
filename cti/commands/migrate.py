"""`cti migrate`: create or upgrade the CRM database schema."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cti.config import Config

HELP = "Create or upgrade the CRM database schema"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revision", default="head", help="target revision (default head)")


async def _main(args: argparse.Namespace, config: Config) -> int:
    from crm_core import schema
    from crm_core.errors import CrmUnavailable
    from crm_core.store import CrmStore

    try:
        store = await CrmStore.from_config(config, migrate=False)
        try:
            async with store._guard("migrate"):
                before = await schema.current_revision(store.engine)
                await schema.upgrade(store.engine, args.revision)
                after = await schema.current_revision(store.engine)
        finally:
            await store.close()
    except CrmUnavailable as exc:
        print(f"cti migrate: {exc}", file=sys.stderr)
        return 1
    url = store.engine.url.render_as_string(hide_password=True)
    if before == after:
        print(f"{url}: schema already at {after}")
    else:
        print(f"{url}: schema upgraded from {before or 'empty'} to {after}")
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
