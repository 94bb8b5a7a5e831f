"""Sub-commands of ``cti``: each module has HELP, add_arguments(parser) and run(args, config)."""
