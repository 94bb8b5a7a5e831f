"""Several instances of the daemon on PostgreSQL and Redis (``[cluster]`` in the config).

- ``lease``: one ingester per PBX, a Redis lease with a fencing token;
- ``fencing``: the database refuses the call-state writes of a stale token;
- ``fanout``: desktop messages through a Redis stream, to every instance, with replay;
- ``instance``: the standby / ingesting life of one instance, driven by the lease.

Without ``[cluster] redis_url`` none of this is built: one instance works as before.
"""
