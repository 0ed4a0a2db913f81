"""`/mcp` — every server's tools in one MCP server — and `/mcp/NAME` for a stdio server (docs/architecture.md
"Upstreams and the aggregated /mcp").

Both are the MCP SDK's lowlevel `Server` behind its `StreamableHTTPSessionManager` (ASGI), run on the gateway's
event loop through `asgi.serve`, after the same security middleware as the pass-through. The aggregate names
each tool `SERVER{separator}TOOL` and starts its description with `[SERVER]`; `tools/call` goes to that server's
client session (mcpproxy/gateway/upstreams.py). When the union changes, every session hears
`notifications/tools/list_changed` (and a 2026-era client listening on `subscriptions/listen` gets the event).
Tools only, for now: resources and prompts are not aggregated (README "One endpoint for every server").
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import mcp_types as types
from aiohttp import web
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged

from mcpproxy import __version__
from mcpproxy.gateway import asgi, passthrough
from mcpproxy.gateway.bridge import ActorUnavailable
from mcpproxy.gateway.shared import BRIDGE, CONFIG
from mcpproxy.gateway.upstreams import UPSTREAMS, StdioUpstream, UpstreamError, Upstreams

log = logging.getLogger("mcpproxy.aggregate")

VIEWS = web.AppKey("mcp_views", dict)  # None (the aggregate) or a stdio server's name → View
METHODS = ("GET", "POST", "DELETE")


class ListChangingServer(Server[Any]):
    """The SDK's lowlevel server, announcing `tools.listChanged` (it does by default only when told per call)."""

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      experimental_capabilities: dict[str, dict[str, Any]] | None = None,
                                      extensions: dict[str, dict[str, Any]] | None = None) -> InitializationOptions:
        return super().create_initialization_options(notification_options or NotificationOptions(tools_changed=True),
                                                     experimental_capabilities, extensions)


class View:
    """One MCP server the gateway serves: the aggregate (`server` None) or one stdio server, unprefixed."""

    def __init__(self, upstreams: Upstreams, server: str | None) -> None:
        self.upstreams = upstreams
        self.server_name = server
        self.bus = InMemorySubscriptionBus()
        # Connections that listed or called (legacy era): each hears list_changed on its standalone stream.
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self.server = ListChangingServer(
            "mcpproxy" if server is None else f"mcpproxy/{server}", version=__version__,
            instructions=None if server is not None else
            "Every MCP server configured in mcpproxy, in one place: each tool is named SERVER"
            f"{upstreams.separator}TOOL and its description starts with [SERVER].",
            on_list_tools=self.list_tools, on_call_tool=self.call_tool,
            on_subscriptions_listen=ListenHandler(self.bus))
        self.server.middleware = []  # no tracing spans per message
        self.manager = StreamableHTTPSessionManager(self.server, json_response=False, stateless=False)
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"mcp-view:{self.server_name or '*'}")

    async def _run(self) -> None:
        async with self.manager.run():
            self.ready.set()
            await self.stop.wait()

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    def _remember(self, ctx: Any) -> None:
        connection = getattr(ctx.session, "_connection", None)  # the SDK keeps no public handle to it
        if connection is not None:
            self.connections.add(connection)

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        self._remember(ctx)
        if self.server_name is None:
            return types.ListToolsResult(tools=self.upstreams.aggregated_tools())
        up = self.upstreams.items.get(self.server_name)
        return types.ListToolsResult(tools=list(up.tools or []) if up is not None and up.included else [])

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        self._remember(ctx)
        try:
            if self.server_name is None:
                return await self.upstreams.call_aggregated(params.name, params.arguments)
            up = self.upstreams.items.get(self.server_name)
            if up is None:
                raise UpstreamError("unavailable", f"server '{self.server_name}' is not running")
            return await up.call(params.name, params.arguments)
        except UpstreamError as e:
            return types.CallToolResult(content=[types.TextContent(type="text", text=e.message)], is_error=True)
        except TimeoutError:
            return types.CallToolResult(content=[types.TextContent(type="text", text="the server did not answer in time")],
                                        is_error=True)

    async def tools_changed(self) -> None:
        for connection in list(self.connections):
            try:
                await connection.send_tool_list_changed()
            except Exception:  # noqa: BLE001 — a connection that is gone just stops hearing
                self.connections.discard(connection)
        await self.bus.publish(ToolsListChanged())


async def _view(app: web.Application, name: str | None) -> View:
    views: dict[str | None, View] = app[VIEWS]
    view = views.get(name)
    if view is None:
        upstreams = app[UPSTREAMS]
        assert isinstance(upstreams, Upstreams)
        view = views[name] = View(upstreams, name)
        view.start()
    await view.ready.wait()
    return view


def _rpc_refusal(request: web.Request, name: str) -> web.Response | None:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={"Allow": ", ".join((*METHODS, "OPTIONS"))})
    if request.method not in METHODS:
        resp = passthrough.rpc_error(405, passthrough.PROXY_ERROR, f"{request.method} is not part of MCP Streamable HTTP",
                                     name, "method")
        resp.headers["Allow"] = ", ".join((*METHODS, "OPTIONS"))
        return resp
    return None


async def aggregate_handler(request: web.Request) -> web.StreamResponse:
    refusal = _rpc_refusal(request, "*")
    if refusal is not None:
        return refusal
    view = await _view(request.app, None)
    await view.upstreams.activate()
    return await asgi.serve(request, view.manager.handle_request)


async def server_handler(request: web.Request) -> web.StreamResponse:
    """`/mcp/NAME`: a stdio server through its child; any other server through the pass-through."""
    name = request.match_info["name"]
    server = request.app[CONFIG].current.server(name)
    if server is None or server.protocol != "stdio" or not server.enabled:
        return await passthrough.handler(request)
    refusal = _rpc_refusal(request, name)
    if refusal is not None:
        return refusal
    view = await _view(request.app, name)
    return await asgi.serve(request, view.manager.handle_request)


def upstreams_context(make: Callable[[web.Application], Upstreams]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        upstreams = app[UPSTREAMS] = make(app)
        app[VIEWS] = {}

        async def announce(server: str | None) -> None:
            views: dict[str | None, View] = app[VIEWS]
            targets = [views.get(None)]
            if server is not None and isinstance(upstreams.items.get(server), StdioUpstream):
                targets.append(views.get(server))
            for view in targets:
                if view is not None:
                    await view.tools_changed()

        upstreams.listeners.append(announce)
        app[BRIDGE].on_hub_moved = upstreams.hub_moved
        try:
            snapshot = await app[BRIDGE].snapshot()
            statuses = snapshot.statuses
        except ActorUnavailable as e:
            log.error("could not read the servers' statuses: %s; HTTP servers join the aggregate on their next change", e)
            statuses = {}
        upstreams.apply(app[CONFIG].current)
        for status in statuses.values():
            upstreams.on_status(status)
        yield
        views = list(app[VIEWS].values())
        await asyncio.gather(*(v.close() for v in views), return_exceptions=True)
        await upstreams.close()
    return context
