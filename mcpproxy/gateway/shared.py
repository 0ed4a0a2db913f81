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


CONFIG = web.AppKey("config", ConfigRef)
BRIDGE = web.AppKey("bridge", ActorBridge)
API_KEY = web.AppKey("api_key", str)
FANOUT = web.AppKey("fanout", EventFanout)
STARTED = web.AppKey("started_at", float)
LOGINS = web.AppKey("logins", dict)  # state → (server name, created); routing only, validated by the actor


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


async def read_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return doc
