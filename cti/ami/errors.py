"""Errors of the AMI connection and its actions: each says what failed and what to do."""

from __future__ import annotations

from collections.abc import Mapping


class AmiError(Exception):
    """Base of every AMI error."""


class AmiAuthError(AmiError):
    """Asterisk refused the login (wrong username or secret): fix ``[ami]`` in the config."""


class AmiNotConnected(AmiError):
    """No logged-in AMI connection right now (Asterisk down, reconnecting, or client stopped)."""


class AmiConnectionLost(AmiNotConnected):
    """The connection dropped while an action was in flight; the action is never re-sent.

    ``may_have_run`` is true when Asterisk could have executed it before the drop (it was
    written to the socket): check the PBX state before trying again, e.g. for an Originate.
    """

    def __init__(self, message: str, *, action: str = "", may_have_run: bool = True) -> None:
        super().__init__(message)
        self.action = action
        self.may_have_run = may_have_run


class AmiTimeout(AmiError):
    """Asterisk did not answer an action within its timeout."""

    def __init__(self, message: str, *, action: str = "") -> None:
        super().__init__(message)
        self.action = action


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error``; ``message`` is its ``Message`` header, verbatim."""

    def __init__(self, action: str, message: str, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message
        self.fields = dict(fields or {})


class AmiOriginateFailed(AmiActionError):
    """An Originate was queued but its ``OriginateResponse`` says ``Failure``."""

    def __init__(self, reason: int, text: str, fields: Mapping[str, str]) -> None:
        super().__init__("Originate", f"call not placed: {text} (Reason: {reason})", fields)
        self.reason = reason
