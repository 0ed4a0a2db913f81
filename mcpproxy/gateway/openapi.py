"""`GET /api/v1/openapi.json` — the OpenAPI 3.1 description of the REST API."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mcpproxy import __version__


def spec() -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "mcpproxy", "version": __version__}, "paths": {}}


async def handler(request: web.Request) -> web.Response:
    return web.json_response(spec())
