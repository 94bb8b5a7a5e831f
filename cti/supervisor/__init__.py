"""The supervisor console: live rows of calls, agents and queues, alerts, and supervision."""
