"""JSON errors: every failure the API reports has ``{"error": message}`` and a fitting status."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An error to report to the client as is."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def describe_validation(exc: ValidationError) -> str:
    """``field: message`` for each problem, e.g. ``tier: Field required``."""
    parts = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {_message(item)}")
    return "; ".join(parts)


def _message(item: Any) -> str:
    """Pydantic's message, but a text's length in characters: a length limit on a checked
    string type (``Line``) is reported as "items after validation", which means nothing to a
    person who typed a subject."""
    found, ctx = item.get("input"), item.get("ctx") or {}
    if isinstance(found, str) and item.get("type") == "too_long" and "max_length" in ctx:
        return f"String should have at most {ctx['max_length']} characters, not {len(found)}"
    if isinstance(found, str) and item.get("type") == "too_short" and "min_length" in ctx:
        least = ctx["min_length"]
        return f"String should have at least {least} character{'' if least == 1 else 's'}"
    return str(item["msg"])


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; one naming a field twice is refused (which one did the client mean?)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _RepeatedKey(key)
        data[key] = value
    return data


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``; a clear 400 naming the field otherwise."""
    raw = await request.read()
    try:
        data = json.loads(raw or b"null", object_pairs_hook=_no_repeated_keys)
    except _RepeatedKey as exc:
        raise ApiError(400, f"{exc.key}: given more than once") from None
    except RecursionError:
        # json gives up on deep nesting (``[[[[...``) with RecursionError, not ValueError.
        raise ApiError(400, "body: nested too deeply to be a request") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "body: expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, describe_validation(exc)) from exc
