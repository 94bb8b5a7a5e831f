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
