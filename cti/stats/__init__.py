"""Contact-centre statistics, computed from call events and interaction records (no clock).

- ``legs``: call events → ``Leg``s (one per call per queue it waited in) and agent activity;
- ``figures``: the figures of a set of legs (live, and the reference for the SQL);
- ``period``: the same figures over any period by SQL aggregation (SQLite and PostgreSQL);
- ``live``: today's figures as events arrive, for ``/api/stats/live`` and the console.
"""
