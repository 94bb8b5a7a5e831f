"""`cti check-config`: validate a config file and print what is wrong."""

from __future__ import annotations

import argparse

from cti.config import Config

HELP = "Validate a config file and print what is wrong"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    # Loading the file already validated every section (the CLI reports errors with exit 2);
    # the routing rules are checked against the tier table here.
    from cti.routing.rules import load_rules

    load_rules(config)
    print(f"{config.source}: OK ({len(config.tiers)} tiers, {len(config.agents)} agents)")
    if len(config.pbx) > 1:
        unplaced = [a.name for a in config.agents if a.interface and not a.pbx]
        if unplaced:
            print(
                f"warning: several PBXs and no pbx for {', '.join(unplaced)}: their pause, "
                "queue login and click-to-dial are refused until their phone's PBX is set"
            )
    return 0
