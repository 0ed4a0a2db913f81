"""Fixed redirect URIs (`oauth.redirect_uri`, docs/configuration.md): a loopback listener that exists only while
a login waits for it.

Some providers accept one registered redirect URI only (Slack: `http://localhost:3118/callback`). For such a
server the service opens that port and path when a login starts, hands the callback to the same handler as
`/oauth/callback`, and closes the port once every login waiting on it has come back or expired.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from mcpproxy.gateway import callback
from mcpproxy.gateway.lease import LEASES
from mcpproxy.gateway.shared import BRIDGE, LOGINS, ApiError, printable

log = logging.getLogger("mcpproxy.gateway")

Prepare = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


@dataclass
class _Listener:
    runner: web.AppRunner
    path: str
    states: dict[str, float] = field(default_factory=dict)  # state → when the login started


def _bind_hosts(host: str) -> list[str]:
    """Where to listen for a loopback host name: `localhost` may resolve to either family in a browser."""
    host = host.strip("[]").lower()
    return ["127.0.0.1", "::1"] if host == "localhost" else [host]


class RedirectListeners:
    """The fixed-redirect listeners now open, by (host, port)."""

    def __init__(self, ttl: float, on_prepare: Prepare) -> None:
        self.ttl = ttl
        self.on_prepare = on_prepare
        self._open: dict[tuple[str, int], _Listener] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def is_open(self, redirect_uri: str) -> bool:
        return _key(redirect_uri) in self._open

    async def open(self, main: web.Application, redirect_uri: str) -> None:
        """Listens on the redirect URI's loopback port and path (once, however many logins wait on it)."""
        async with self._lock:
            await self._open_locked(main, redirect_uri)

    async def _open_locked(self, main: web.Application, redirect_uri: str) -> None:
        key = _key(redirect_uri)
        if key in self._open:
            return
        host, port = key
        path = urlsplit(redirect_uri).path
        sub = web.Application()
        sub[BRIDGE] = main[BRIDGE]
        sub[LOGINS] = main[LOGINS]  # the same dict: a state is routed once, whichever port brings it back
        sub[LEASES] = main[LEASES]  # a login that comes back here cuts the pass-through's lease as at /oauth/callback
        allowed = {f"{h}:{port}" for h in ("localhost", "127.0.0.1", "[::1]", host)}

        async def handle(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Host", "").lower() not in allowed:
                return web.Response(status=421, text="this listener answers to the redirect URI's host only\n")
            state = request.query.get("state", "")
            try:
                return await callback.handler(request)
            finally:
                self.finished(redirect_uri, state)

        async def headers(request: web.Request, response: web.StreamResponse) -> None:
            await self.on_prepare(request, response)
            response.headers["Cache-Control"] = "no-store"  # the code is in this URL

        sub.router.add_get(path, handle)
        sub.on_response_prepare.append(headers)
        runner = web.AppRunner(sub, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        bound: list[str] = []
        errors: list[str] = []
        for addr in _bind_hosts(host):
            try:
                await web.TCPSite(runner, addr, port, reuse_address=True).start()
                bound.append(addr)
            except OSError as e:
                errors.append(f"{addr}: {e.strerror or e}")
        if not bound:
            await runner.cleanup()
            raise ApiError(409, f"cannot listen on {redirect_uri} for this login ({'; '.join(errors)}); is another "
                                f"program using port {port}? Close it, or change oauth.redirect_uri", "config")
        self._open[key] = _Listener(runner, path)
        log.info("listening on %s for a login (fixed redirect URI)", printable(redirect_uri))

    def expect(self, redirect_uri: str, state: str) -> None:
        """A login now waits on this listener; it closes when the last one returns or expires."""
        listener = self._open.get(_key(redirect_uri))
        if listener is None:
            return
        listener.states[state] = time.monotonic()
        asyncio.get_running_loop().call_later(self.ttl + 1.0, self._expire, redirect_uri)

    def finished(self, redirect_uri: str, state: str) -> None:
        listener = self._open.get(_key(redirect_uri))
        if listener is None:
            return
        listener.states.pop(state, None)
        if not listener.states:
            self._close_soon(redirect_uri)

    def release(self, redirect_uri: str) -> None:
        """Closes a listener no login waits on (the login could not start)."""
        listener = self._open.get(_key(redirect_uri))
        if listener is not None and not listener.states:
            self._close_soon(redirect_uri)

    def _expire(self, redirect_uri: str) -> None:
        listener = self._open.get(_key(redirect_uri))
        if listener is None:
            return
        cutoff = time.monotonic() - self.ttl
        for state in [s for s, t in listener.states.items() if t <= cutoff]:
            del listener.states[state]
        if not listener.states:
            self._close_soon(redirect_uri)

    def _close_soon(self, redirect_uri: str) -> None:
        """After the answer in hand is sent: the runner's cleanup waits for running handlers."""
        listener = self._open.pop(_key(redirect_uri), None)
        if listener is None:
            return
        task = asyncio.get_running_loop().create_task(self._close(listener, redirect_uri))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _close(listener: _Listener, redirect_uri: str) -> None:
        await listener.runner.cleanup()
        log.info("closed the listener on %s", printable(redirect_uri))

    async def close_all(self) -> None:
        for uri_key in list(self._open):
            listener = self._open.pop(uri_key)
            await listener.runner.cleanup()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _key(redirect_uri: str) -> tuple[str, int]:
    parts = urlsplit(redirect_uri)
    return (parts.hostname or "localhost").lower(), int(parts.port or 80)


#: The app's listeners for fixed redirect URIs (issue 11, Slack), beside the class they hold.
REDIRECTS: web.AppKey[RedirectListeners] = web.AppKey("redirects")
