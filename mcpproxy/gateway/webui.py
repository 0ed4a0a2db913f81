"""`GET /` — the Web UI, built by `make install` into mcpproxy/webui_dist (its headers: app.secure_headers)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.web_routedef import AbstractRouteDef

DIST = Path(__file__).resolve().parent.parent / "webui_dist"


async def index(request: web.Request) -> web.StreamResponse:
    page = DIST / "index.html"
    if not page.is_file():
        return web.Response(status=503, text="The Web UI is not built: run `make install`.\n")
    return web.FileResponse(page)  # headers: app.secure_headers


def routes() -> list[AbstractRouteDef]:
    table: list[AbstractRouteDef] = [web.get("/", index)]
    if (DIST / "assets").is_dir():
        table.append(web.static("/assets", DIST / "assets"))
    return table
