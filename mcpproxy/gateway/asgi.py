"""One aiohttp request handed to an ASGI application (docs/architecture.md "Upstreams and the aggregated /mcp").

The MCP SDK's Streamable HTTP server is ASGI. It runs on the gateway's own event loop, behind the same
security middleware as every other route: the request body is streamed in as `http.request` messages, the
answer streamed out as it is sent (SSE included), and a client that goes away is told as `http.disconnect`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

BODY_CHUNK = 64 * 1024
#: While the app waits for a disconnect (an idle SSE stream), how often to look whether the client left.
LIVENESS_CHECK = 1.0


def _scope(request: web.Request, path: str) -> Scope:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    sock = transport.get_extra_info("sockname") if transport is not None else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(sock[:2]) if isinstance(sock, tuple) else None,
        "state": {},
    }


async def serve(request: web.Request, app: ASGIApp, path: str = "/mcp") -> web.StreamResponse:
    """Runs `app` for this request and returns the aiohttp answer it produced."""
    response: web.StreamResponse | None = None
    body_done = False
    finished = asyncio.Event()

    async def receive() -> Message:
        nonlocal body_done
        if not body_done:
            chunk = await request.content.read(BODY_CHUNK)
            more = not request.content.at_eof()
            body_done = not more
            return {"type": "http.request", "body": chunk, "more_body": more}
        while not finished.is_set():
            if request.transport is None or request.transport.is_closing():
                break
            try:
                await asyncio.wait_for(finished.wait(), LIVENESS_CHECK)
            except TimeoutError:
                continue
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal response
        kind = message["type"]
        if kind == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for k, v in message.get("headers", []):
                name = k.decode("latin-1")
                if name.lower() == "content-length":
                    response.content_length = int(v)
                else:
                    response.headers.add(name, v.decode("latin-1"))
            await response.prepare(request)
        elif kind == "http.response.body":
            assert response is not None, "a body before its start"
            body = message.get("body", b"")
            if body:
                await response.write(body)
            if not message.get("more_body", False):
                await response.write_eof()
                finished.set()

    try:
        await app(_scope(request, path), receive, send)
    finally:
        finished.set()
    if response is None:
        return web.Response(status=500, text="the MCP server sent no answer\n")
    return response
