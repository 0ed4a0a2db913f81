"""What every gateway module shares: the typed app state, the API error, the JSON envelope, the body reader.

Handlers import this module, never app.py, which only assembles them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mcpproxy.config import Config
from mcpproxy.gateway.bridge import ActorBridge
from mcpproxy.gateway.fanout import EventFanout


@dataclass
class ConfigRef:
    """The running config; a reload swaps `current` (aiohttp app state is frozen after startup)."""

    current: Config
    #: Why the file on disk is not what runs: the problems of the last edit a reload refused; empty once it runs.
    refused: tuple[str, ...] = ()


CONFIG = web.AppKey("config", ConfigRef)
BRIDGE = web.AppKey("bridge", ActorBridge)
API_KEY = web.AppKey("api_key", str)
FANOUT = web.AppKey("fanout", EventFanout)
STARTED = web.AppKey("started_at", float)
AT_REST = web.AppKey("at_rest", str)  # where the store's data key comes from: "keyring" or "key_file"
LOGINS = web.AppKey("logins", dict)  # state → (server name, created); routing only, validated by the actor
#: The fixed redirect URIs' listeners, open during a login (typed by name: that module imports this one).


#: Everything but the Web UI and /mcp is data, or a page without script (the OAuth callback): nothing loads,
#: nothing frames it.
OTHER_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response({"success": True, "data": data}, status=status)


def error_response(status: int, message: str, kind: str | None = None) -> web.Response:
    body: dict[str, Any] = {"success": False, "error": message}
    if kind:
        body["kind"] = kind
    return web.json_response(body, status=status)


def printable(text: str, limit: int | None = None) -> str:
    """Text from a request made safe for one log line or a terminal: every non-printable character (and the
    backslash, so an escape cannot be faked) as a `\\xNN`/`\\uNNNN` escape; cut to `limit` characters."""
    out = "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)
    return out if limit is None or len(out) <= limit else out[: limit - 1] + "…"




def _escape(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


async def read_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # malformed, not UTF-8, or nested deeper than the parser goes
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return doc
