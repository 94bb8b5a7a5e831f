"""From a remote record (JSON object, SQL row, CSV line) to our view fields, by configuration.

A field is taken by a dotted ``path`` (``properties.phone``, ``result.0.phone``, ``tags.-1``),
a ``template`` (``"{properties.firstname} {properties.lastname}"``) or a constant ``value``, then
passed through a value ``map`` (``{"1" = "vip"}``), with a ``default`` when missing. Phones are
a list of number fields or a list of items; flags are booleans each decided by its own field;
cases, orders, interactions and contacts are lists of records mapped item by item, taken from the
record itself or from a further request. Nothing here knows any particular CRM.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crm_core.phone import normalise
from crm_core.types import CaseView, ContactView, InteractionView, OrderView, PhoneView

MISSING: Any = object()
_INDEX = re.compile(r"-?\d+")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
_TRUE = frozenset({"true", "yes", "y", "1", "on", "x"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def get_path(data: Any, path: str) -> Any:
    """``data`` at a dotted path; list items by index (negative from the end). MISSING if absent."""
    if path in ("", "."):
        return data
    current = data
    for part in path.split("."):
        if isinstance(current, dict):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list | tuple) and _INDEX.fullmatch(part):
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def render(template: str, data: Any) -> str:
    """``{dotted.path}`` placeholders filled from ``data`` (missing or null ones give "")."""

    def value(match: re.Match[str]) -> str:
        found = get_path(data, match.group(1))
        return "" if found is MISSING or found is None or found is False else str(found)

    return " ".join(PLACEHOLDER.sub(value, template).split())


class FieldSpec(_Model):
    path: str | None = None
    template: str | None = None
    value: Any = None
    default: Any = None
    # Remote value (compared as lower-case text) -> our value; values not in it stay as they are
    # unless ``map_default`` is set.
    map: dict[str, Any] | None = None
    map_default: Any = None
    # A regular expression: the value becomes its first group (``^([a-z]{2})`` of ``fr_FR``).
    pattern: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    def get(self, record: Any) -> Any:
        if self.template is not None:
            found: Any = render(self.template, record) or MISSING
        elif self.path is not None:
            found = get_path(record, self.path)
        else:
            found = self.value if self.value is not None else MISSING
        # JSON-RPC CRMs (Odoo) answer ``false`` for an empty field; a many2one is [id, "name"].
        if found is MISSING or found is None or found is False or found == "":
            return self.default
        if self.pattern is not None:
            match = re.search(self.pattern, str(found))
            if match is None:
                return self.default
            found = match.group(1) if match.groups() else match.group(0)
        if self.map is not None:
            key = str(found).strip().lower()
            lowered = {str(k).lower(): v for k, v in self.map.items()}
            if key in lowered:
                return lowered[key]
            if self.map_default is not None:
                return self.map_default
        return found


class PhoneSpec(_Model):
    """One number field (``path``, ``kind``), or a list of them (``items`` with ``number`` and
    ``kind`` inside each item, ``kind_map`` turning their types into ours)."""

    path: str | None = None
    kind: FieldSpec | str = "other"
    items: str | None = None
    number: str = "number"
    kind_map: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data


class FlagSpec(_Model):
    """A flag is set when its field is truthy, or maps to true, or contains/equals a value."""

    path: str | None = None
    template: str | None = None
    map: dict[str, bool] | None = None
    contains: str | None = None
    equals: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    def is_set(self, record: Any) -> bool:
        if self.template is not None:
            value: Any = render(self.template, record)
        else:
            value = get_path(record, self.path or "")
        if value is MISSING or value is None:
            return False
        if self.equals is not None:
            return any(str(value).lower() == str(e).lower() for e in self.equals)
        if self.contains is not None:
            wanted = self.contains.lower()
            if isinstance(value, list | tuple):
                return any(wanted == _label(v).lower() for v in value)
            return wanted in [p.strip().lower() for p in re.split(r"[;,|]", str(value))]
        if self.map is not None:
            return bool({str(k).lower(): v for k, v in self.map.items()}.get(str(value).lower()))
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value != 0
        return str(value).strip().lower() in _TRUE


def _label(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("name", "label", "value"):
            if key in value:
                return str(value[key])
    if isinstance(value, list) and len(value) == 2:  # Odoo's [id, "display name"]
        return str(value[1])
    return str(value)


class ListSpec(_Model):
    """A list of values (products): a list at ``items`` (each taken at ``value``), or a string
    split on ``split``."""

    items: str
    value: str | None = None
    split: str | None = None


class RecordListSpec(_Model):
    """Cases, orders, interactions or contacts: the items at ``items`` (in the record, or in the
    answer to ``request`` when set), each mapped by ``fields``; ``where`` keeps only items whose
    field (after the mapping) is one of the listed values."""

    items: str = ""
    request: Any = None  # a connectors.http_config.RequestTemplate, validated by its source
    fields: dict[str, FieldSpec]
    where: dict[str, list[Any]] = {}
    limit: int = Field(20, ge=0)


class ViewMapping(_Model):
    id: FieldSpec
    name: FieldSpec
    external_id: FieldSpec | None = None
    kind: FieldSpec | None = None
    organisation: FieldSpec | None = None
    language: FieldSpec | None = None
    email: FieldSpec | None = None
    address: FieldSpec | None = None
    phones: list[PhoneSpec] = []
    flags: dict[str, FlagSpec] = {}
    products: ListSpec | None = None
    open_cases: RecordListSpec | None = None
    orders: RecordListSpec | None = None
    interactions: RecordListSpec | None = None
    contacts: RecordListSpec | None = None


_SCALARS = ("external_id", "kind", "organisation", "language", "email", "address")
LIST_FIELDS = ("open_cases", "orders", "interactions", "contacts")


def key_of(mapping: ViewMapping, record: Any) -> str | None:
    value = mapping.id.get(record)
    if value is None or isinstance(value, dict | list):
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def phones_of(specs: list[PhoneSpec], record: Any, region: str) -> tuple[PhoneView, ...]:
    phones: list[PhoneView] = []
    seen: set[str] = set()

    def add(raw: Any, kind: str) -> None:
        if raw in (None, False, "") or raw is MISSING:
            return
        text = str(raw).strip()
        if not text or text in seen:
            return
        seen.add(text)
        # Ours on every backend: whatever format the remote keeps, compared as E.164.
        e164 = normalise(text, region, internal_max_digits=0).e164
        phones.append(PhoneView(number=text, e164=e164, kind=kind))

    for spec in specs:
        if spec.items is not None:
            items = get_path(record, spec.items)
            for item in items if isinstance(items, list) else ():
                kind = get_path(item, spec.kind if isinstance(spec.kind, str) else "")
                kind_text = str(kind).lower() if kind not in (MISSING, None) else "other"
                add(get_path(item, spec.number), spec.kind_map.get(kind_text, kind_text))
        elif spec.path is not None:
            kind = spec.kind.get(record) if isinstance(spec.kind, FieldSpec) else spec.kind
            raw = get_path(record, spec.path)
            for one in raw if isinstance(raw, list) else [raw]:
                add(one, str(kind or "other"))
    return tuple(phones)


def map_record(
    mapping: ViewMapping,
    record: Any,
    region: str,
    extra_items: dict[str, list[Any]] | None = None,
) -> tuple[str, str, dict[str, Any]] | None:
    """(key, name, view fields) of one remote record; None when it has no id.

    ``extra_items`` holds, for list fields fetched by their own request, the items fetched."""
    key = key_of(mapping, record)
    if key is None:
        return None
    name = mapping.name.get(record)
    fields: dict[str, Any] = {}
    if name not in (None, ""):
        fields["name"] = _label(name) if isinstance(name, list | dict) else str(name)
    for attribute in _SCALARS:
        spec = getattr(mapping, attribute)
        if spec is not None:
            value = spec.get(record)
            if value not in (None, ""):
                fields[attribute] = _label(value) if isinstance(value, list | dict) else str(value)
    phones = phones_of(mapping.phones, record, region)
    if phones:
        fields["phones"] = phones
    flags = tuple(flag for flag, spec in mapping.flags.items() if spec.is_set(record))
    if flags:
        fields["flags"] = flags
    if mapping.products is not None:
        products = _products(mapping.products, record)
        if products:
            fields["products"] = products
    for attribute in LIST_FIELDS:
        spec = getattr(mapping, attribute)
        if spec is None:
            continue
        if extra_items is not None and attribute in extra_items:
            items: Any = extra_items[attribute]
        else:
            items = get_path(record, spec.items) if spec.request is None else MISSING
        if items is MISSING:
            continue
        mapped = map_items(attribute, spec, items if isinstance(items, list) else [items])
        if mapped:
            fields[attribute] = mapped
    return key, str(fields.get("name") or key), fields


def _products(spec: ListSpec, record: Any) -> tuple[str, ...]:
    value = get_path(record, spec.items)
    if value is MISSING or value in (None, False, ""):
        return ()
    if isinstance(value, str):
        parts = value.split(spec.split) if spec.split else [value]
        return tuple(p.strip() for p in parts if p.strip())
    if isinstance(value, list):
        out = []
        for item in value:
            found = get_path(item, spec.value) if spec.value else item
            if found not in (MISSING, None, False, ""):
                out.append(_label(found))
        return tuple(out)
    return (_label(value),)


_VIEW_TYPES: dict[str, Any] = {
    "open_cases": CaseView,
    "orders": OrderView,
    "interactions": InteractionView,
    "contacts": ContactView,
}
_ID_FIELDS = {"case_id", "order_id", "interaction_id"}
_TIME_FIELDS = {"sla_deadline", "placed_at", "started_at"}
_REQUIRED_TEXT = {"subject", "status", "reference", "direction", "outcome", "notes", "name"}


def map_items(attribute: str, spec: RecordListSpec, items: list[Any]) -> tuple[Any, ...]:
    view_type = _VIEW_TYPES[attribute]
    names = view_type.__dataclass_fields__.keys()
    out = []
    for item in items:
        values = {
            name: spec.fields[name].get(item) if name in spec.fields else None for name in names
        }
        if any(
            str(values.get(f)).lower() not in {str(v).lower() for v in allowed}
            for f, allowed in spec.where.items()
        ):
            continue
        for name in names:
            value = values[name]
            if name in _ID_FIELDS:
                values[name] = as_int_id(value)
            elif name in _TIME_FIELDS:
                values[name] = as_datetime(value)
            elif isinstance(value, list | dict):
                values[name] = _label(value)
            elif value is not None:
                values[name] = str(value)
            elif name in _REQUIRED_TEXT:
                values[name] = ""
        out.append(view_type(**values))
        if len(out) >= spec.limit:
            break
    return tuple(out)


def as_int_id(value: Any) -> int:
    """Our integer ids from whatever the remote uses (numbers stay, others get a stable hash)."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit() and len(text) < 16:
        return int(text)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=6).digest(), "big")


def as_datetime(value: Any) -> datetime | None:
    """ISO 8601 text (``Z`` allowed, with a space or a T), or epoch seconds/milliseconds."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
