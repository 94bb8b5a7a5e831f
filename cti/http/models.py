"""Request bodies of the REST API (validated with pydantic; they also feed the OpenAPI doc)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginBody(_Body):
    token: str = Field(min_length=1, max_length=512)


class NoteBody(_Body):
    text: str = Field(min_length=1, max_length=4000)


class DispositionBody(_Body):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\- ]+$")


class EscalateBody(_Body):
    tier: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=200)
    note: str = Field("", max_length=4000)


class OriginateBody(_Body):
    number: str = Field(min_length=2, max_length=32, pattern=r"^\+?[0-9][0-9 ()\-.]*$")
    customer_id: int | None = Field(None, ge=1)
    # Supervisors may dial from another agent's phone; agents always dial from their own.
    agent: str | None = None


class QueueBody(_Body):
    queue: str = Field(min_length=1, max_length=80)
    action: Literal["login", "logout"]
    agent: str | None = None


class PauseBody(_Body):
    paused: bool
    reason: str = Field("", max_length=80)
    queue: str | None = Field(None, max_length=80)
    agent: str | None = None


BODIES: tuple[type[BaseModel], ...] = (
    LoginBody,
    NoteBody,
    DispositionBody,
    EscalateBody,
    OriginateBody,
    QueueBody,
    PauseBody,
)
