"""The test MCP server: SDK tools, RFC 9728 metadata, the bearer gate and test counters, served by uvicorn."""

from __future__ import annotations

import asyncio
import logging
import socket
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.shared.exceptions import MCPDeprecationWarning
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.mcpserver.auth import BearerGate, Introspector
from tests.mcpserver.counters import Counters, token_fingerprint

log = logging.getLogger("tests.mcpserver")

MCP_PATH = "/mcp"
_PRM = "/.well-known/oauth-protected-resource"
#: Habits of real MCP servers this one can imitate (tests/oauthserver/README.md "Habits").
HABITS = frozenset({"no_resource_metadata_in_401", "resource_metadata_path_suffixed", "resource_metadata_root_only",
                    "resource_trailing_slash"})


@dataclass(frozen=True)
class ServerSettings:
    base_url: str  # http://127.0.0.1:PORT
    issuer: str
    introspection_endpoint: str
    scopes: list[str]
    required_scope: str | None = None
    name: str = "test"
    habits: tuple[str, ...] = ()

    @property
    def resource(self) -> str:
        return self.base_url + MCP_PATH + ("/" if "resource_trailing_slash" in self.habits else "")

    @property
    def metadata_path(self) -> str:
        if "resource_metadata_path_suffixed" in self.habits:
            return MCP_PATH + _PRM
        if "resource_metadata_root_only" in self.habits:
            return _PRM
        # RFC 9728 §3.1: the well-known segment goes between host and resource path.
        return _PRM + MCP_PATH

    @property
    def metadata_url(self) -> str:
        return self.base_url + self.metadata_path


def build_mcp(name: str, counters: Counters) -> MCPServer:
    """The SDK server with the three test tools."""
    mcp: MCPServer = MCPServer(name, instructions="mcpproxy test server")

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        counters.tool_calls += 1
        return text

    @mcp.tool()
    def whoami(ctx: Context) -> str:
        """First 12 hex chars of sha256 of the bearer token this call arrived with."""
        counters.tool_calls += 1
        headers = ctx.headers or {}
        authorization = headers.get("authorization", "")
        kind, _, token = authorization.partition(" ")
        return token_fingerprint(token.strip()) if kind.lower() == "bearer" and token else "none"

    @mcp.tool()
    async def slow_count(ctx: Context, n: int = 5, delay: float = 0.3) -> str:
        """Count to n, sending a progress notification and a log message after each step."""
        counters.tool_calls += 1
        for step in range(1, n + 1):
            await asyncio.sleep(delay)
            await ctx.report_progress(step, n, f"step {step} of {n}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await ctx.info(f"step {step} of {n}")
        return f"counted {n}"

    return mcp


def build_app(settings: ServerSettings, counters: Counters | None = None) -> Starlette:
    """The whole ASGI app: /mcp behind the bearer gate, metadata and /_test/ beside it."""
    counters = counters or Counters()
    mcp = build_mcp(settings.name, counters)
    mcp.streamable_http_app(streamable_http_path=MCP_PATH)  # creates the session manager we mount
    introspector = Introspector(settings.introspection_endpoint)
    gate = BearerGate(
        StreamableHTTPASGIApp(mcp.session_manager),
        introspector=introspector,
        counters=counters,
        resource=settings.resource,
        metadata_url=None if "no_resource_metadata_in_401" in settings.habits else settings.metadata_url,
        scope_hint=" ".join(settings.scopes),
        required_scope=settings.required_scope,
    )
    metadata = {
        "resource": settings.resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": settings.scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": settings.name,
    }

    async def protected_resource(request: Request) -> JSONResponse:
        return JSONResponse(metadata)

    async def get_counters(request: Request) -> JSONResponse:
        return JSONResponse(counters.snapshot())

    async def reset_counters(request: Request) -> JSONResponse:
        counters.reset()
        return JSONResponse(counters.snapshot())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with introspector, mcp.session_manager.run():
            yield

    metadata_paths = [settings.metadata_path]
    if not {"resource_metadata_path_suffixed", "resource_metadata_root_only"} & set(settings.habits):
        metadata_paths.append(_PRM)  # the root one too, as before
    mcp_paths = [MCP_PATH, MCP_PATH + "/"] if "resource_trailing_slash" in settings.habits else [MCP_PATH]
    return Starlette(
        routes=[
            *(Route(path, endpoint=gate, methods=["GET", "POST", "DELETE"]) for path in mcp_paths),
            *(Route(path, protected_resource, methods=["GET"]) for path in metadata_paths),
            Route("/_test/counters", get_counters, methods=["GET"]),
            Route("/_test/reset_counters", reset_counters, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


async def discover_issuer(as_url: str, timeout: float = 10.0) -> tuple[str, str]:
    """(issuer, introspection endpoint) from the AS's RFC 8414 metadata; defaults when it has none."""
    as_url = as_url.rstrip("/")
    issuer, endpoint = as_url, f"{as_url}/introspect"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{as_url}/.well-known/oauth-authorization-server")
        if response.status_code == 200:
            doc: dict[str, Any] = response.json()
            issuer = str(doc.get("issuer") or issuer)
            endpoint = str(doc.get("introspection_endpoint") or endpoint)
        else:
            log.warning("AS metadata answered HTTP %s; using %s", response.status_code, as_url)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("AS metadata unavailable (%s); using %s", type(exc).__name__, as_url)
    return issuer, endpoint


async def serve(
    *,
    as_url: str,
    port: int = 0,
    scopes: list[str] | None = None,
    required_scope: str | None = None,
    name: str = "test",
    host: str = "127.0.0.1",
    issuer: str | None = None,
    habits: tuple[str, ...] = (),
) -> None:
    """Bind, print `READY <url>` once uvicorn accepts connections, serve until SIGTERM/SIGINT."""
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets; with proto 0 every SSE answer
    # waited ~40 ms for the client's delayed ACK (Nagle), which looked like proxy latency.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    if issuer:  # named as it is: an issuer the AS's root metadata would not give (a tenant path, a slash)
        introspection_endpoint = as_url.rstrip("/") + "/introspect"
    else:
        issuer, introspection_endpoint = await discover_issuer(as_url)
    settings = ServerSettings(
        base_url=f"http://{host}:{bound_port}",
        issuer=issuer,
        introspection_endpoint=introspection_endpoint,
        scopes=scopes or ["mcp:read"],
        required_scope=required_scope,
        name=name,
        habits=habits,
    )
    config = uvicorn.Config(
        build_app(settings), log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        print(f"READY {settings.resource}", flush=True)

    announcer = asyncio.create_task(announce())
    try:
        await server.serve(sockets=[sock])
    finally:
        announcer.cancel()
        sock.close()

