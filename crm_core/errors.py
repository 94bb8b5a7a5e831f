"""Errors the CRM core raises; callers never see a raw database driver exception."""

from __future__ import annotations


class CrmError(Exception):
    """Something the CRM store could not do."""


class CrmUnavailable(CrmError):
    """The database cannot be reached or used right now (down, refused, timed out, locked).

    The router falls back to its default route on this; the message says what failed.
    """


class InvalidCustomer(CrmError, ValueError):
    """Customer data that cannot be stored as given (missing name, unknown flag...)."""


class InvalidInteraction(CrmError, ValueError):
    """An interaction record the database would refuse (a NUL in a note, a value too long for
    its column): writing it again cannot succeed, unlike after ``CrmUnavailable``."""

    def __init__(self, call_id: str, field: str, problem: str) -> None:
        super().__init__(f"interaction {call_id!r}: {field}: {problem}")
        self.call_id = call_id
        self.field = field
        self.problem = problem
