"""Asterisk's queue_log: what it says of each queue call (``model``), where it is read
(``sources``), and the calls no daemon saw recorded from it (``backfill``)."""
