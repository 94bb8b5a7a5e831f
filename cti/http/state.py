"""Typed application keys shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from cti.http.auth import AgentDirectory
from cti.http.deps import ApiDeps

DEPS = web.AppKey("deps", ApiDeps)
DIRECTORY = web.AppKey("directory", AgentDirectory)
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets")
