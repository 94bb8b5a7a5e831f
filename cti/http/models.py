"""Request bodies of the REST API (validated with pydantic; they also feed the OpenAPI doc).

Every body is strict (a JSON ``true`` is not the integer 1, ``"12"`` is not a number) and every
text is bounded. One-line texts (reasons, queue and tier names, dispositions: values that reach
Asterisk as AMI header values or a dialplan variable) refuse any control character, a line
break included; free texts (notes) may span lines (``\\n``, tab) but refuse every other control
character (NUL, a bare carriage return...). Lone UTF-16 surrogates, which no database or wire
can store, are refused everywhere. The check runs on the text as sent, before whitespace is
stripped, so a trailing carriage return is refused too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

# The largest id a customer can have (a signed 64-bit database key).
MAX_ID = 2**63 - 1

_NOT_IN_A_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NOT_IN_A_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _describe(char: str) -> str:
    names = {"\x00": "NUL", "\r": "a carriage return", "\n": "a line break", "\t": "a tab"}
    return names.get(char, f"U+{ord(char):04X}")


def _refuse(pattern: re.Pattern[str], kind: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            bad = pattern.search(value)
            if bad is not None:
                raise PydanticCustomError(
                    "control_character",
                    "{what} is not allowed in {kind} (at character {at})",
                    {"what": _describe(bad.group()), "kind": kind, "at": bad.start() + 1},
                )
        return value

    return BeforeValidator(check)


Line = Annotated[str, _refuse(_NOT_IN_A_LINE, "a one-line value")]
"""One line of text: no control character at all (it may reach Asterisk as a header value)."""

Text = Annotated[str, _refuse(_NOT_IN_A_TEXT, "a text")]
"""Free text over several lines: line breaks and tabs, no other control character."""

Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class LoginBody(_Body):
    token: Line = Field(min_length=1, max_length=512)


class NoteBody(_Body):
    text: Text = Field(min_length=1, max_length=4000)


class DispositionBody(_Body):
    code: Line = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\- ]+$")


class EscalateBody(_Body):
    tier: Line = Field(min_length=1, max_length=64)
    reason: Line = Field(min_length=1, max_length=200)
    note: Text = Field("", max_length=4000)
    # An open case of the call's customer escalated with the call (cti.http.cases).
    case_id: Id | None = None


class ConfirmBody(_Body):
    """Who is calling: one of the customers sharing the caller's number (``candidate``) or a
    customer the agent found by searching (``search``). ``remember_number``: also add the
    caller's number to that customer, so that the next call from it is recognised (never for
    a withheld number)."""

    customer_id: Id
    method: Literal["candidate", "search"] = "candidate"
    remember_number: bool = False


class NewCustomerBody(_Body):
    """A customer created from the pop for the caller on the line."""

    name: Line = Field(min_length=1, max_length=200)
    email: Line | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    address: Line | None = Field(None, max_length=500)
    remember_number: bool = False


class NumberBody(_Body):
    """Add the caller's number to the customer the call is attributed to."""

    kind: Literal["mobile", "home", "work", "other"] = "other"


class OriginateBody(_Body):
    # Any way a person writes a number ("(020) 3991-7908", "+44 20 ..."); the handler checks it
    # with phonenumbers in the configured region.
    number: Line = Field(min_length=1, max_length=40)
    customer_id: Id | None = None
    # Supervisors may dial from another agent's phone; agents always dial from their own.
    agent: Line | None = Field(None, min_length=1, max_length=80)


class QueueBody(_Body):
    queue: Line = Field(min_length=1, max_length=80)
    action: Literal["login", "logout"]
    agent: Line | None = Field(None, min_length=1, max_length=80)


class PauseBody(_Body):
    paused: bool
    reason: Line = Field("", max_length=80)
    queue: Line | None = Field(None, min_length=1, max_length=80)
    agent: Line | None = Field(None, min_length=1, max_length=80)


class RouteBody(_Body):
    """``POST /api/route`` (the ``cti-agi`` script): the channel asking where the call goes.

    ``caller`` and ``dnid`` as Asterisk presents them (``unknown`` or empty for none)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, strict=True)

    # Generous: a long (spoofed) caller ID is still routed (to no customer), not refused.
    caller: Line | None = Field(None, max_length=256)
    dnid: Line | None = Field(None, max_length=256)
    uniqueid: Line | None = Field(None, max_length=150)
    channel: Line | None = Field(None, max_length=200)


class AgentActionBody(_Body):
    """``POST /api/supervisor/agent``: a supervisor logs an agent in or out of a queue, or
    pauses or unpauses them (in one queue, or all when ``queue`` is left out)."""

    agent: Line = Field(min_length=1, max_length=100)
    action: Literal["login", "logout", "pause", "unpause"]
    queue: Line | None = Field(None, min_length=1, max_length=80)
    reason: Line = Field("", max_length=80, pattern=r"^[\w .,/'-]*$")


class SpyBody(_Body):
    """``POST /api/calls/{call_id}/spy``: listen (nobody hears the supervisor), whisper (only
    the agent does) or barge (three-way)."""

    mode: Literal["listen", "whisper", "barge"]


class RecordingBody(_Body):
    """``POST /api/calls/{call_id}/recording``: pause (``true``) or resume the recording."""

    paused: bool


BODIES: tuple[type[BaseModel], ...] = (
    LoginBody,
    NoteBody,
    DispositionBody,
    EscalateBody,
    ConfirmBody,
    NewCustomerBody,
    NumberBody,
    OriginateBody,
    QueueBody,
    PauseBody,
    RouteBody,
    AgentActionBody,
    SpyBody,
    RecordingBody,
)


# ---- cases from the pop and callbacks (cti.http.cases) ----------------------------------------


class OpenCaseBody(_Body):
    """Open a case for the call's customer; the reason (``[cases] reasons``) sets its tier and
    SLA deadline, its label is the subject unless one is given."""

    reason: Line = Field(min_length=1, max_length=64)
    subject: Line | None = Field(None, min_length=1, max_length=200)


class CaseCallBody(_Body):
    """Add a live call to an open case of its customer."""

    call_id: Line = Field(min_length=1, max_length=64)


class CloseCaseBody(_Body):
    note: Text = Field("", max_length=4000)


class CallbackDialBody(_Body):
    """Dial a callback task's number from the agent's phone (supervisors: another agent's)."""

    agent: Line | None = Field(None, min_length=1, max_length=80)


BODIES = (*BODIES, OpenCaseBody, CaseCallBody, CloseCaseBody, CallbackDialBody)


# ---- merging and dividing customers (cti.http.customers_admin; supervisors) -------------------

IdList = Annotated[list[Id], Field(max_length=1000)]


class MergeBody(_Body):
    """Merge ``merged_id`` into ``survivor_id``: every record moves, a tombstone stays."""

    survivor_id: Id
    merged_id: Id


class DividedCustomerBody(_Body):
    """The customer a divide creates for what moves out."""

    name: Line = Field(min_length=1, max_length=200)
    email: Line | None = Field(None, max_length=254)
    address: Text | None = Field(None, max_length=1000)


class DivideBody(_Body):
    """Move chosen numbers, interactions and cases of ``customer_id`` to another customer,
    picked (``to_customer_id``) or created (``new_customer``); ``shared_phone_ids`` are
    copied so that both hold the number."""

    customer_id: Id
    to_customer_id: Id | None = None
    new_customer: DividedCustomerBody | None = None
    phone_ids: IdList = Field(default_factory=list)
    shared_phone_ids: IdList = Field(default_factory=list)
    interaction_ids: IdList = Field(default_factory=list)
    case_ids: IdList = Field(default_factory=list)


BODIES = (*BODIES, MergeBody, DivideBody)
