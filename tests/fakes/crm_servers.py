"""Three CRMs on real aiohttp servers, answering as their published APIs do.

- HubSpot CRM v3: bearer token, ``POST /crm/v3/objects/contacts/search`` (filterGroups,
  CONTAINS_TOKEN with ``*`` wildcards, ``query``), ``GET /crm/v3/objects/contacts/{id}``,
  tickets search on ``associations.contact``, ``POST /crm/v3/objects/calls``.
- SuiteCRM 8 V8 JSON:API under ``/legacy``: OAuth2 client credentials at
  ``/legacy/Api/access_token`` (tokens expire and can be revoked), ``filter[f][op]`` queries on
  ``/Api/V8/module/Contacts``, ``POST /Api/V8/module``.
- Odoo JSON-RPC ``/jsonrpc``: ``execute_kw`` with db/uid/password, ``search_read`` on
  domains in Polish notation, ``read``, ``message_post``; errors as ``{"error": ...}`` with 200.

Each keeps what it was sent (``requests``, ``written``) and can be told to misbehave for the
next requests (``misbehave("429", "500", "slow", "malformed", "huge", "redirect")``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

CONTACTS: list[dict[str, Any]] = [
    {
        "id": "101",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "phone": "020 7123 4567",
        "mobile": "",
        "company": "Analytical Engines Ltd",
        "vip": True,
        "do_not_call": False,
        "lang": "en_GB",
    },
    {
        "id": "102",
        "first_name": "Grace",
        "last_name": "Hopper",
        "email": "grace@example.com",
        "phone": "",
        "mobile": "+44 7700 900123",
        "company": "",
        "vip": False,
        "do_not_call": True,
        "lang": "fr_FR",
    },
    {  # the same last four digits in another country: the CRM's search finds it, we must not
        "id": "103",
        "first_name": "Noise",
        "last_name": "Elsewhere",
        "email": "noise@example.com",
        "phone": "+1 415 555 4567",
        "mobile": "",
        "company": "",
        "vip": False,
        "do_not_call": False,
        "lang": "en_US",
    },
]


class FakeCrm:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.written: list[dict[str, Any]] = []
        self._misbehaviour: list[str] = []
        self.always: str | None = None
        self.delay_s = 0.0  # every answer this late
        self.port = 0

    def misbehave(self, *how: str) -> None:
        self._misbehaviour.extend(how)

    def behave(self) -> None:
        self._misbehaviour.clear()
        self.always = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        how = self._misbehaviour.pop(0) if self._misbehaviour else self.always
        if how == "429":
            return web.json_response({"status": "error", "category": "RATE_LIMITS"},
                                      status=429, headers={"Retry-After": "1"})  # fmt: skip
        if how == "500":
            return web.json_response({"status": "error", "message": "internal"}, status=500)
        if how == "slow":
            await asyncio.sleep(2.0)
        if how == "malformed":
            return web.Response(text='{"results": [ {"id": ', content_type="application/json")
        if how == "huge":
            blob = b'{"results": [' + b" " * (10 * 1024 * 1024) + b"]}"
            return web.Response(body=blob, content_type="application/json")
        if how == "redirect":
            raise web.HTTPFound(location=str(request.rel_url))
        response: web.StreamResponse = await handler(request)
        return response

    def app(self) -> web.Application:
        raise NotImplementedError

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeCrm]:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        try:
            yield self
        finally:
            await runner.cleanup()


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9A-Za-z@.]+", text.lower()) if t]


def _token_match(value: str, pattern: str) -> bool:
    regex = re.escape(pattern.lower()).replace(r"\*", ".*")
    return any(re.fullmatch(regex, token) for token in _tokens(value))


class FakeHubSpot(FakeCrm):
    TOKEN = "pat-na1-test"

    def __init__(self) -> None:
        super().__init__()
        self.tickets = [
            {"id": "9001", "contact": "101", "properties": {
                "subject": "Engine jammed", "hs_pipeline_stage": "1",
                "hs_ticket_priority": "HIGH", "hs_resolution_due_date": "2026-12-05T10:00:00Z",
                "content": "Difference engine stuck on column 3"}},
            {"id": "9002", "contact": "101", "properties": {
                "subject": "Old invoice", "hs_pipeline_stage": "4",
                "hs_ticket_priority": "LOW", "content": ""}},
        ]  # fmt: skip

    @staticmethod
    def _properties(contact: dict[str, Any]) -> dict[str, Any]:
        return {
            "hs_object_id": contact["id"],
            "firstname": contact["first_name"],
            "lastname": contact["last_name"],
            "email": contact["email"],
            "phone": contact["phone"] or None,
            "mobilephone": contact["mobile"] or None,
            "company": contact["company"] or None,
            "hs_language": contact["lang"][:2],
            "cti_vip": "true" if contact["vip"] else "false",
            "hs_lead_status": "UNQUALIFIED" if contact["do_not_call"] else "OPEN",
        }

    def _object(self, contact: dict[str, Any], wanted: list[str] | None) -> dict[str, Any]:
        props = self._properties(contact)
        if wanted is not None:
            props = {k: v for k, v in props.items() if k in wanted or k == "hs_object_id"}
        return {"id": contact["id"], "properties": props, "createdAt": "2026-01-02T03:04:05Z",
                "updatedAt": "2026-11-02T03:04:05Z", "archived": False}  # fmt: skip

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.TOKEN}"

    @staticmethod
    def _unauthorised() -> web.Response:
        body = {"status": "error", "message": "Authentication credentials not found.",
                "category": "INVALID_AUTHENTICATION"}  # fmt: skip
        return web.json_response(body, status=401)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/crm/v3/objects/contacts/search", self.search)
        app.router.add_get("/crm/v3/objects/contacts/{id}", self.get)
        app.router.add_post("/crm/v3/objects/tickets/search", self.tickets_search)
        app.router.add_post("/crm/v3/objects/calls", self.create_call)
        return app

    async def search(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await request.json()
        found = []
        for contact in CONTACTS:
            props = self._properties(contact)
            if "query" in body:
                text = " ".join(str(props[k]) for k in ("firstname", "lastname", "email"))
                if body["query"].lower() not in text.lower():
                    continue
            elif body.get("filterGroups") and not any(
                all(self._filter(props, f) for f in group["filters"])
                for group in body["filterGroups"]
            ):
                continue
            found.append(self._object(contact, body.get("properties")))
        limit = int(body.get("limit", 10))
        return web.json_response({"total": len(found), "results": found[:limit]})

    @staticmethod
    def _filter(props: dict[str, Any], flt: dict[str, Any]) -> bool:
        value = props.get(flt["propertyName"])
        if flt["operator"] == "EQ":
            return str(value).lower() == str(flt["value"]).lower()
        if flt["operator"] == "CONTAINS_TOKEN":
            return value is not None and _token_match(str(value), str(flt["value"]))
        raise web.HTTPBadRequest(text=json.dumps({"message": "operator not supported here"}))

    async def get(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        wanted = request.query.get("properties")
        for contact in CONTACTS:
            if contact["id"] == request.match_info["id"]:
                return web.json_response(
                    self._object(contact, wanted.split(",") if wanted else None)
                )
        return web.json_response({"status": "error", "message": "Object not found."}, status=404)

    async def tickets_search(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await request.json()
        (flt,) = body["filterGroups"][0]["filters"]
        assert flt["propertyName"] == "associations.contact" and flt["operator"] == "EQ"
        found = [
            {"id": t["id"], "properties": t["properties"], "archived": False}
            for t in self.tickets
            if t["contact"] == str(flt["value"])
        ]
        return web.json_response({"total": len(found), "results": found})

    async def create_call(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await request.json()
        association = body["associations"][0]
        assert association["types"][0]["associationTypeId"] == 194
        self.written.append(body)
        return web.json_response({"id": str(50000 + len(self.written)), **body}, status=201)


class FakeSuiteCrm(FakeCrm):
    CLIENT_ID = "cti-client"
    CLIENT_SECRET = "s3cret"

    def __init__(self) -> None:
        super().__init__()
        self.token_lifetime = 3600
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0

    def revoke_all(self) -> None:
        self.tokens.clear()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/legacy/Api/access_token", self.access_token)
        app.router.add_get("/legacy/Api/V8/module/Contacts", self.contacts)
        app.router.add_get("/legacy/Api/V8/module/Contacts/{id}", self.contact)
        app.router.add_post("/legacy/Api/V8/module", self.create)
        return app

    async def access_token(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            fields = await request.json()
        else:
            fields = dict(await request.post())
        if (
            fields.get("grant_type") != "client_credentials"
            or fields.get("client_id") != self.CLIENT_ID
            or fields.get("client_secret") != self.CLIENT_SECRET
        ):
            refused = {"error": "invalid_client", "message": "Client authentication failed"}
            return web.json_response(refused, status=401)
        token = uuid.uuid4().hex
        self.tokens[token] = time.monotonic() + self.token_lifetime
        self.tokens_issued += 1
        return web.json_response(
            {"token_type": "Bearer", "expires_in": self.token_lifetime, "access_token": token}
        )

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expiry = self.tokens.get(header.removeprefix("Bearer "))
        return expiry is not None and time.monotonic() < expiry

    @staticmethod
    def _unauthorised() -> web.Response:
        message = "The resource owner or authorization server denied the request."
        denied = {"error": "access_denied", "message": message}
        return web.json_response(denied, status=401)

    @staticmethod
    def _resource(contact: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "Contacts",
            "id": f"c0ffee00-0000-4000-8000-000000000{contact['id']}",
            "attributes": {
                "first_name": contact["first_name"],
                "last_name": contact["last_name"],
                "email1": contact["email"],
                "phone_work": contact["phone"],
                "phone_mobile": contact["mobile"],
                "phone_home": "",
                "account_name": contact["company"],
                "do_not_call": "1" if contact["do_not_call"] else "0",
                "lead_source": "VIP" if contact["vip"] else "Web Site",
                "primary_address_street": "",
                "primary_address_city": "",
                "primary_address_postalcode": "",
            },
        }

    async def contacts(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        conditions = []
        for name, value in request.query.items():
            match = re.fullmatch(r"filter\[(\w+)\]\[(\w+)\]", name)
            if match:
                conditions.append((match.group(1), match.group(2).lower(), value))
        either = request.query.get("filter[operator]", "and").lower() == "or"
        found = []
        for contact in CONTACTS:
            attributes = self._resource(contact)["attributes"]
            results = [self._test(str(attributes.get(f, "")), op, v) for f, op, v in conditions]
            if not conditions or (any(results) if either else all(results)):
                found.append(self._resource(contact))
        return web.json_response({"meta": {"total-pages": 1}, "data": found})

    @staticmethod
    def _test(value: str, op: str, wanted: str) -> bool:
        if op == "eq":
            return value == wanted
        if op == "like":
            regex = re.escape(wanted).replace("%", ".*")
            return re.fullmatch(regex, value, re.IGNORECASE) is not None
        raise web.HTTPBadRequest(text="unsupported operator")

    async def contact(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        for contact in CONTACTS:
            resource = self._resource(contact)
            if resource["id"] == request.match_info["id"]:
                return web.json_response({"data": resource})
        return web.json_response({"errors": {"status": 404, "title": "Not Found"}}, status=404)

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        assert request.content_type == "application/vnd.api+json"
        body = json.loads(await request.text())
        self.written.append(body)
        data = {**body["data"], "id": str(uuid.uuid4())}
        return web.json_response({"data": data}, status=201)


class FakeOdoo(FakeCrm):
    DB, UID, PASSWORD = "mycompany", 2, "odoo-api-key"

    def __init__(self) -> None:
        super().__init__()
        self.partners = [
            {
                "id": int(c["id"]),
                "name": f"{c['first_name']} {c['last_name']}",
                "ref": f"CUST-{c['id']}",
                "email": c["email"],
                "phone": c["phone"] or False,
                "mobile": c["mobile"] or False,
                "is_company": False,
                "parent_id": [900, c["company"]] if c["company"] else False,
                "lang": c["lang"],
                "street": False,
                "zip": False,
                "city": False,
                "category_id": ([7] if c["vip"] else []) + ([8] if c["do_not_call"] else []),
            }
            for c in CONTACTS
        ]
        self.orders = [
            {"id": 31, "name": "S00031", "state": "sale", "date_order": "2026-11-30 09:00:00",
             "partner_id": [101, "Ada Lovelace"]},
            {"id": 12, "name": "S00012", "state": "done", "date_order": "2026-06-01 09:00:00",
             "partner_id": [101, "Ada Lovelace"]},
        ]  # fmt: skip

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/jsonrpc", self.jsonrpc)
        return app

    @staticmethod
    def _error(call_id: Any, name: str, message: str) -> web.Response:
        return web.json_response({"jsonrpc": "2.0", "id": call_id, "error": {
            "code": 200, "message": "Odoo Server Error",
            "data": {"name": name, "message": message}}})  # fmt: skip

    async def jsonrpc(self, request: web.Request) -> web.Response:
        body = await request.json()
        call_id = body.get("id")
        params = body["params"]
        if params["service"] != "object" or params["method"] != "execute_kw":
            return self._error(call_id, "werkzeug.exceptions.NotFound", "unknown method")
        db, uid, password, model, method, args, *rest = params["args"]
        kwargs = rest[0] if rest else {}
        if (db, uid, password) != (self.DB, self.UID, self.PASSWORD):
            return self._error(call_id, "odoo.exceptions.AccessDenied", "Access Denied")
        table = {"res.partner": self.partners, "sale.order": self.orders}.get(model)
        if table is None:
            return self._error(call_id, "builtins.KeyError", model)
        if method == "search_read":
            rows = [r for r in table if _domain(args[0], r)]
            if kwargs.get("order") == "date_order desc":
                rows.sort(key=lambda r: r["date_order"], reverse=True)
            result: Any = [_fields(r, kwargs.get("fields")) for r in rows[: kwargs.get("limit")]]
        elif method == "read":
            result = [_fields(r, kwargs.get("fields")) for r in table if r["id"] in args[0]]
        elif method == "message_post":
            if not any(r["id"] in args[0] for r in table):
                return self._error(call_id, "odoo.exceptions.MissingError", "Record missing")
            self.written.append({"model": model, "ids": args[0], **kwargs})
            result = 7000 + len(self.written)
        else:
            return self._error(call_id, "builtins.AttributeError", method)
        return web.json_response({"jsonrpc": "2.0", "id": call_id, "result": result})


def _fields(row: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not fields or k in fields or k == "id"}


def _domain(domain: list[Any], row: dict[str, Any]) -> bool:
    """Odoo's domain: leaves ``[field, op, value]``, prefix ``|``/``&``/``!``, implicit AND."""
    stack: list[bool] = []
    for item in reversed(domain):
        if item == "|":
            stack.append(stack.pop() | stack.pop())
        elif item == "&":
            stack.append(stack.pop() & stack.pop())
        elif item == "!":
            stack.append(not stack.pop())
        else:
            stack.append(_leaf(item, row))
    return all(stack)


def _leaf(leaf: list[Any], row: dict[str, Any]) -> bool:
    field, op, wanted = leaf
    value = row.get(field)
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], int):
        value = value[0]  # many2one compares on the id
    if op == "=":
        return bool(value == wanted)
    if op == "ilike":
        return value not in (False, None) and str(wanted).lower() in str(value).lower()
    if op == "in":
        return value in wanted
    raise ValueError(op)
