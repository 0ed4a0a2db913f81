"""A bare aiohttp relay in the gateway's place: what a pass-through costs with none of mcpproxy's code in it.

    .venv/bin/python -m bench.relay_floor UPSTREAM_URL PORT   (the bearer token on stdin)

The same parts as the gateway's pass-through (mcpproxy/gateway/passthrough.py) — aiohttp's server, one
pooled aiohttp client, the answer relayed chunk by chunk, on uvloop when it is installed — and nothing
else: no middleware, no access log, no lease, no header filter beyond what MCP needs. bench/overhead.py
times it beside the gateway: the gap between the two is what mcpproxy's own code adds to a call.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

PASSED = ("accept", "content-type")
CLIENT = web.AppKey("client", aiohttp.ClientSession)


def main() -> int:
    upstream, port = sys.argv[1], int(sys.argv[2])
    token = sys.stdin.readline().strip()  # not in argv, where ps shows it

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED or k.lower().startswith("mcp-")}
        headers["Authorization"] = f"Bearer {token}"
        answer = await request.app[CLIENT].request(request.method, upstream, headers=headers, data=body or None)
        out = web.StreamResponse(status=answer.status, headers={
            k: v for k, v in answer.headers.items() if k.lower() == "content-type" or k.lower().startswith("mcp-")})
        try:
            await out.prepare(request)
            while chunk := await answer.content.readany():
                await out.write(chunk)
            await out.write_eof()
        except ConnectionError:
            pass  # the client stopped reading once it had its answer (the MCP SDK client does)
        finally:
            answer.release()
        return out

    async def client(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            app[CLIENT] = session
            yield

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/mcp", relay)
    sock = socket.create_server(("127.0.0.1", port))
    try:
        import uvloop
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(app, sock=sock, access_log=None, print=None, loop=loop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
