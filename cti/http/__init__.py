"""The HTTP side of the daemon: REST API, WebSocket pops, health, metrics and the desktop page.

``create_app(ApiDeps(...))`` builds the aiohttp application; the daemon runs it.
"""

from cti.http.app import create_app
from cti.http.deps import ApiDeps

__all__ = ["ApiDeps", "create_app"]
