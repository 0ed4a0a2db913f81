"""The aiohttp application: typed state, one security middleware, one error-to-JSON mapping, the routes."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from actors.messages import Published
from mcpproxy.config import Config
from mcpproxy.gateway import aggregate, api, callback, events, metrics, openapi, passthrough, webui
from mcpproxy.gateway.bridge import ActorBridge, ActorUnavailable
from mcpproxy.gateway.callback import CLOSE_CSP
from mcpproxy.gateway.fanout import EventFanout
from mcpproxy.gateway.lease import LEASES, Leases
from mcpproxy.gateway.redirect_listener import REDIRECTS, RedirectListeners
from mcpproxy.gateway.shared import (
    API_KEY,
    BRIDGE,
    CONFIG,
    FANOUT,
    LOGINS,
    OTHER_CSP,
    STARTED,
    ApiError,
    ConfigRef,
    error_response,
    printable,
)
from mcpproxy.gateway.upstreams import UPSTREAMS, Upstreams

log = logging.getLogger("mcpproxy.gateway")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _needs_key(path: str, config: Config) -> bool:
    if path.startswith(("/api/", "/events", "/metrics")) or path == "/api":
        return True
    return (path == "/mcp" or path.startswith("/mcp/")) and not config.loopback_only


def presented_key(request: web.Request) -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.query.get("apikey")


def _origin_host(origin: str) -> str | None:
    """`host:port` of an Origin header, lower case; None when it is not a URL with a valid host and port."""
    try:
        o = urlsplit(origin)
        port = o.port or (443 if o.scheme == "https" else 80)
    except ValueError:  # `http://[::1`, a port out of range or not a number
        return None
    if not o.hostname:
        return None
    host = f"[{o.hostname}]" if ":" in o.hostname else o.hostname
    return f"{host}:{port}".lower()


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app[CONFIG].current
    path = request.path
    api = path.startswith("/api")
    try:
        allowed = config.host_names
        host = request.headers.get("Host", "")
        if allowed is not None and host.lower() not in allowed:
            # DNS rebinding: a page on another name pointed at 127.0.0.1 must not drive us
            # (docs/architecture.md "Security").
            raise ApiError(421, f"this service answers to {config.listen}, not to Host '{printable(host, 100)}'")
        origin = request.headers.get("Origin")
        if origin and (request.method in STATE_CHANGING or path.startswith(("/events", "/mcp"))):
            if origin == "null":
                # Sandboxed iframes and data: pages: an opaque origin is never ours.
                raise ApiError(403, "requests from an opaque origin (Origin: null) are refused")
            origin_host = _origin_host(origin)
            if origin_host is None:
                raise ApiError(403, f"a malformed Origin ({printable(origin, 100)}) is refused")
            if allowed is not None and origin_host not in allowed:
                raise ApiError(403, f"cross-origin request from {printable(origin, 100)} refused")
        if path.startswith("/mcp"):
            refuse_browser_fetch(request)
        if _needs_key(path, config):
            key = presented_key(request)
            # Header bytes that are not UTF-8 arrive as surrogates: compare them as the bytes they were.
            if not key or not hmac.compare_digest(key.encode("utf-8", "surrogateescape"),
                                                  request.app[API_KEY].encode()):
                raise ApiError(401, "missing or wrong API key: send it as X-API-Key, Authorization: Bearer, or ?apikey=")
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.message, e.kind) if api or e.status in (401, 403, 421) else \
            web.Response(status=e.status, text=e.message + "\n")
    except web.HTTPException as e:
        if not api:
            raise
        if e.status == 405:
            resp = error_response(405, f"{request.method} is not allowed on {path}")
            if "Allow" in e.headers:
                resp.headers["Allow"] = e.headers["Allow"]
            return resp
        if e.status == 404:
            return error_response(404, f"no such API path: {path}")
        return error_response(e.status, e.reason)
    except ActorUnavailable as e:
        log.error("path=%s %s", printable(path), e)
        return error_response(503, f"the service is busy or restarting: {e}") if api else web.Response(
            status=503, text=str(e))


#: Fetch metadata (W3C) a browser sends with a request it makes for a page. MCP clients send none of it,
#: and the pass-through attaches a server's token: no other site's page, navigation or `no-cors` fetch
#: (an <img>, a <form>, a top-level link) may reach it.
REFUSED_FETCH_SITES = frozenset({"cross-site", "same-site"})
REFUSED_FETCH_MODES = frozenset({"navigate", "no-cors", "nested-navigate"})
#: Every /mcp answer: nothing an upstream sends can run as a page on this origin.
MCP_ANSWER_HEADERS = {"Content-Security-Policy": "sandbox; default-src 'none'", "X-Content-Type-Options": "nosniff"}
#: The Web UI (its page and /assets): its own scripts, styles and API only (Vue binds inline styles); never framed.
UI_CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; "
          "frame-ancestors 'none'")
#: Answers that carry the person's data (or, for the callback, a code in its URL): never kept by a cache.
NO_STORE = ("/api", "/metrics", "/oauth/")


def refuse_browser_fetch(request: web.Request) -> None:
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    mode = request.headers.get("Sec-Fetch-Mode", "").lower()
    if site in REFUSED_FETCH_SITES:
        raise ApiError(403, f"requests to /mcp from another site's page are refused (Sec-Fetch-Site: {site})")
    if mode in REFUSED_FETCH_MODES:
        raise ApiError(403, f"browser navigations and no-cors requests to /mcp are refused (Sec-Fetch-Mode: {mode})")


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for every answer, streamed ones, static files and refusals included — the one
    place that sets the protective headers."""
    path = request.path
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    if path.startswith("/mcp"):
        headers.update(MCP_ANSWER_HEADERS)
    elif path == "/" or path.startswith("/assets/"):
        headers["Content-Security-Policy"] = UI_CSP
        if path == "/":
            headers["Cache-Control"] = "no-cache"  # a new build is picked up at once; the assets' names change
    elif not (path == "/oauth/callback" and headers.get("Content-Security-Policy") == CLOSE_CSP):
        headers["Content-Security-Policy"] = OTHER_CSP
    if path.startswith(NO_STORE):
        headers["Cache-Control"] = "no-store"


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse at ERROR with a traceback ("Error handling request from PEER"): it
    is the client's fault, and the parser's message can quote the raw line — an API key included. One WARNING
    line instead, with the peer and the kind of fault; real errors (a handler that raised) pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not str(record.msg).startswith("Error handling request"):
            return True
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if record.levelno > logging.WARNING:  # aiohttp already logs non-HTTP bytes (a TLS hello) at DEBUG
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "malformed HTTP request from %s: %s (%s)"
        record.args = (printable(str(peer or "an unknown peer"), 60), type(exc).__name__, _fault(exc))
        record.exc_info, record.exc_text = None, None
        return True


def _fault(exc: HttpProcessingError) -> str:
    """The parser's sentence without the bytes it quotes (its first line, up to a colon)."""
    first = (exc.message or "").strip().splitlines()[0] if (exc.message or "").strip() else "unparseable"
    return printable(first.split(":")[0].strip() if ":" in first else first, 80)


def quiet_malformed_requests() -> None:
    """Installs MalformedRequests on aiohttp's server logger once per process."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server_log.filters):
        server_log.addFilter(MalformedRequests())


class QuietAccessLogger(AbstractAccessLogger):
    """Method, path and status only: query strings (code, state, apikey) and headers are never logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        if request.path in ("/healthz", "/readyz"):
            return
        # The path is decoded (%0a is a newline): escaped, no request can write a line of its own.
        self.logger.info("%s %s %s %.1fms", printable(request.method), printable(request.path), response.status,
                         time_ * 1000)


def create_app(config: Config, bridge: ActorBridge, api_key: str) -> web.Application:
    quiet_malformed_requests()
    app = web.Application(middlewares=[security], client_max_size=1024 * 1024)
    app[CONFIG] = ConfigRef(config)
    app[BRIDGE] = bridge
    app[API_KEY] = api_key
    app[FANOUT] = EventFanout()
    app[STARTED] = time.time()
    app[LOGINS] = {}
    app[REDIRECTS] = RedirectListeners(api.LOGIN_ROUTE_TTL, secure_headers)
    app[LEASES] = Leases()
    app.add_routes([
        web.get("/healthz", api.healthz),
        web.get("/readyz", api.readyz),
        web.get("/api/v1/status", api.status),
        web.get("/api/v1/servers", api.servers),
        web.post("/api/v1/servers/logout", api.logout_all),
        web.get("/api/v1/servers/{name}", api.server),
        web.post("/api/v1/servers/{name}/login", api.login),
        web.post("/api/v1/servers/{name}/logout", api.logout),
        web.post("/api/v1/servers/{name}/refresh", api.refresh),
        web.get("/api/v1/openapi.json", openapi.handler),
        web.get("/events", events.handler),
        web.get("/oauth/callback", callback.handler),
        web.get("/metrics", metrics.handler),
        web.route("*", "/mcp", aggregate.aggregate_handler),
        web.route("*", "/mcp/{name}", aggregate.server_handler),
        web.route("*", "/api/{tail:.*}", api.not_found),
        *webui.routes(),
    ])
    app.cleanup_ctx.append(passthrough.upstream_client)
    app.cleanup_ctx.append(aggregate.upstreams_context(lambda a: Upstreams(a, a[BRIDGE], a[CONFIG].current)))
    app.on_shutdown.append(passthrough.close_streams)
    app.on_response_prepare.append(secure_headers)
    app.on_startup.append(_start_listener)
    app.on_shutdown.append(_close_streams)
    return app


async def _start_listener(app: web.Application) -> None:
    leases, fanout = app[LEASES], app[FANOUT]
    upstreams = app[UPSTREAMS]
    assert isinstance(upstreams, Upstreams)

    def on_event(msg: Published) -> None:
        leases.on_event(msg)  # first: an SSE client that reacts to the event must find the lease gone
        fanout.publish(msg)
        if msg.name == "servers.changed":
            upstreams.on_status(msg.payload)  # a login or logout moves that server into or out of /mcp

    app[BRIDGE].start_listener(asyncio.get_running_loop(), on_event)


async def _close_streams(app: web.Application) -> None:
    app[FANOUT].close_all()
    await app[REDIRECTS].close_all()
