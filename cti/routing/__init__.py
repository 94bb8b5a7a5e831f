"""Tier routing: rules from config, the router with its deadline, the decision log."""
