"""REST handlers (docs/architecture.md "REST contract"): parse, ask an actor, render."""

from __future__ import annotations

import asyncio
import time
import webbrowser
from collections import Counter
from typing import Any

from aiohttp import web

from actors.messages import (
    Failure,
    GetStatus,
    LoggedOut,
    LoginStarted,
    Logout,
    Refreshed,
    RefreshNow,
    StartLogin,
)
from mcpproxy import __version__
from mcpproxy.config import ServerConfig
from mcpproxy.gateway.bridge import ActorUnavailable
from mcpproxy.gateway.lease import LEASES, cutting
from mcpproxy.gateway.redirect_listener import REDIRECTS
from mcpproxy.gateway.shared import (
    AT_REST,
    BRIDGE,
    CONFIG,
    LOGINS,
    STARTED,
    ApiError,
    ok,
    read_json,
)
from mcpproxy.gateway.upstreams import gateway_fields
from mcpproxy.status import OAUTH_STATUSES, static_status

LOGIN_TIMEOUT = 30.0
REFRESH_TIMEOUT = 60.0
LOGIN_ROUTE_TTL = 600.0


def _server(request: web.Request) -> ServerConfig:
    name = request.match_info["name"]
    server = request.app[CONFIG].current.server(name)
    if server is None:
        available = ", ".join(s.name for s in request.app[CONFIG].current.servers) or "none"
        raise ApiError(404, f"server '{name}' not found in configuration. Available servers: {available}")
    return server


def _oauth_server(request: web.Request) -> ServerConfig:
    server = _server(request)
    if not server.is_oauth:
        raise ApiError(400, f"server '{server.name}' does not use OAuth")
    if not server.enabled or server.name not in request.app[BRIDGE].actors:
        raise ApiError(409, f"server '{server.name}' is disabled in the configuration")
    return server


def failure_status(failure: Failure) -> int:
    """The HTTP status for a TokenActor's Failure (docs/architecture.md "REST contract")."""
    if failure.needs_login or failure.kind == "cancelled":
        return 409
    if failure.kind == "internal":
        return 500
    if failure.kind in ("config", "unknown_login"):
        return 400
    return 502  # the authorization server failed us: network, server, protocol


def _raise_failure(answer: Any) -> None:
    if isinstance(answer, Failure):
        raise ApiError(failure_status(answer), answer.message, answer.kind)


async def all_statuses(app: web.Application) -> list[dict[str, Any]]:
    snap = await app[BRIDGE].snapshot()
    return [{**(snap.statuses.get(s.name) or static_status(s)), **gateway_fields(app, s.name)}
            for s in app[CONFIG].current.servers]


def _stats(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(s["oauth_status"] for s in statuses if s["is_oauth"])
    return {
        "total": len(statuses),
        "oauth": sum(1 for s in statuses if s["is_oauth"]),
        "by_status": {k: counts.get(k, 0) for k in OAUTH_STATUSES},
        "needs_login": sum(1 for s in statuses if s["action"] == "login"),
    }


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    snap = await request.app[BRIDGE].snapshot()
    missing = [s.name for s in request.app[CONFIG].current.servers if s.name not in snap.statuses]
    if missing:
        return web.json_response({"status": "starting", "waiting_for": missing}, status=503)
    return web.json_response({"status": "ready", "servers": len(snap.statuses)})


async def status(request: web.Request) -> web.Response:
    statuses = await all_statuses(request.app)
    stats = _stats(statuses)
    return ok({
        "version": __version__,
        "uptime_seconds": round(time.time() - request.app[STARTED], 1),
        "listen": request.app[CONFIG].current.listen,
        "servers": stats["total"],
        "counts": stats["by_status"],
        "needs_login": stats["needs_login"],
        **config_report(request.app),
        "at_rest": request.app.get(AT_REST, "key_file"),
    })


def config_report(app: web.Application) -> dict[str, Any]:
    """The config's problems for the status: what a refused reload found, then the entries left out at load."""
    ref = app[CONFIG]
    return {
        "config_file": str(ref.current.path) if ref.current.path else None,
        "config_problems": [*ref.refused, *(p for p in ref.current.problems if p not in ref.refused)],
        "config_warnings": list(ref.current.warnings),
        "config_differs": bool(ref.refused),
    }


async def servers(request: web.Request) -> web.Response:
    statuses = await all_statuses(request.app)
    return ok({"servers": statuses, "stats": _stats(statuses)})


async def server(request: web.Request) -> web.Response:
    srv = _server(request)
    bridge = request.app[BRIDGE]
    if srv.name in bridge.actors:
        try:
            status = await bridge.ask_server(srv.name, GetStatus())
        except ActorUnavailable:
            if srv.name in bridge.actors:
                raise
            # A reload stopped its actor while we asked (disabled, or no longer OAuth): the config it runs
            # now says what the server is.
            srv = _server(request)
        else:
            return ok({**status, **gateway_fields(request.app, srv.name)} if isinstance(status, dict) else status)
    return ok({**static_status(srv), **gateway_fields(request.app, srv.name)})


async def login(request: web.Request) -> web.Response:
    srv = _oauth_server(request)
    body = await read_json(request)
    open_browser = body.get("open_browser", False)
    if not isinstance(open_browser, bool):
        raise ApiError(400, "open_browser: expected true or false")
    config = request.app[CONFIG].current
    fixed = srv.oauth.redirect_uri if srv.oauth else None
    redirects = request.app[REDIRECTS]
    if fixed:  # the provider accepts one redirect URI only: listen there for the length of this login
        await redirects.open(request.app, fixed)
    try:
        answer = await cutting(request.app, srv.name, request.app[BRIDGE].ask_server(
            srv.name, StartLogin(fixed or config.redirect_uri, open_browser), LOGIN_TIMEOUT))
        _raise_failure(answer)
    except BaseException:
        if fixed:
            redirects.release(fixed)
        raise
    assert isinstance(answer, LoginStarted)
    if fixed:
        redirects.expect(fixed, answer.state)
    logins: dict[str, tuple[str, float]] = request.app[LOGINS]
    now = time.time()
    for state in [s for s, (_, t) in logins.items() if now - t > LOGIN_ROUTE_TTL]:
        del logins[state]
    logins[answer.state] = (srv.name, now)
    auth_url = answer.auth_url  # written out here, once (LoginStarted carries the checked request)
    opened = False
    if open_browser:
        opened = await asyncio.get_running_loop().run_in_executor(None, webbrowser.open, auth_url)
    return ok({"server": srv.name, "auth_url": auth_url, "browser_opened": bool(opened)})


async def logout(request: web.Request) -> web.Response:
    srv = _oauth_server(request)
    # The lease is cut before the ask and after its answer, before ours: no request after it uses the old token.
    answer = await cutting(request.app, srv.name, request.app[BRIDGE].ask_server(srv.name, Logout("user")))
    _raise_failure(answer)
    assert isinstance(answer, LoggedOut)
    return ok({"server": srv.name, "action": "logout", "revoked": answer.revoked})


async def logout_all(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    names = [s.name for s in request.app[CONFIG].current.servers if s.is_oauth and s.name in bridge.actors]

    async def one(name: str) -> dict[str, Any]:
        try:
            answer = await cutting(request.app, name, bridge.ask_server(name, Logout("user")))
        except Exception as e:  # noqa: BLE001 — one server's failure must not hide the others'
            return {"server": name, "action": "logout", "success": False, "error": str(e)}
        if isinstance(answer, Failure):
            return {"server": name, "action": "logout", "success": False, "error": answer.message}
        return {"server": name, "action": "logout", "success": True, "revoked": answer.revoked}

    results = await asyncio.gather(*(one(n) for n in names))
    return ok({"results": results, "count": len(results),
               "failed": sum(1 for r in results if not r["success"])})


async def refresh(request: web.Request) -> web.Response:
    srv = _oauth_server(request)
    answer = await request.app[BRIDGE].ask_server(srv.name, RefreshNow(), REFRESH_TIMEOUT)
    request.app[LEASES].drop(srv.name)  # the new token's event may come after our answer
    _raise_failure(answer)
    assert isinstance(answer, Refreshed)
    return ok({"server": srv.name, "token_expires_at": answer.token_expires_at})


async def not_found(request: web.Request) -> web.Response:
    """The catch-all under /api: a known path with the wrong method is 405, anything else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        _match, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise ApiError(404, f"no such API path: {request.path}")
