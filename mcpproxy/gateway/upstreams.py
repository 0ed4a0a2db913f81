"""The gateway's MCP clients (docs/architecture.md "Upstreams and the aggregated /mcp"): one SDK client session per
reachable server — a stdio server through its supervised child, an HTTP server with its current token — and the
union of their tools that the aggregated `/mcp` serves.

A stdio server's supervision rules are the pure core in `mcpproxy/stdio/supervision.py`; `StdioUpstream` only
carries its effects out (spawn through the SDK's stdio transport, kill, timers, reports). An HTTP server's token
comes from the gateway's lease (`lease.current_token`), exactly as the pass-through's does; an upstream 401
makes the TokenActor refresh and the request is replayed once, as the pass-through does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
import mcp_types as types
from aiohttp import web
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from actors.messages import Failure, TokenAnswer, UpstreamStatus
from mcpproxy.config import Config, ServerConfig
from mcpproxy.gateway import lease
from mcpproxy.gateway.bridge import ActorBridge, ActorUnavailable
from mcpproxy.gateway.shared import printable
from mcpproxy.stdio import supervision as sv
from mcpproxy.stdio.launch import PID_LINE, child_env, launcher_argv

log = logging.getLogger("mcpproxy.upstream")

UPSTREAMS = web.AppKey("upstreams", object)  # an Upstreams; typed at its readers (set by aggregate.py)

INIT_TIMEOUT = 30.0
LIST_TIMEOUT = 30.0
CALL_TIMEOUT = 300.0  # a tool may think for minutes
HTTP_RETRY_FIRST = 2.0
HTTP_RETRY_CAP = 60.0  # an unreachable server is tried again at most once a minute
PID_POLL = 1.0
STOP_WAIT = 3.0
#: The first /mcp request waits this long for HTTP servers to connect, so its tools/list is whole.
ACTIVATE_WAIT = 5.0
IDLE_NOTE = "connects when /mcp is first used"
#: stderr of a child goes to the log line by line: long lines are cut, a flood is counted, not logged.
STDERR_LINE_MAX = 1000
STDERR_LINES_PER_WINDOW = 100
STDERR_WINDOW = 10.0


class UpstreamError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Upstream:
    """One server's MCP client side: its session (while connected), its tools, and why it is left out."""

    def __init__(self, owner: Upstreams, server: ServerConfig) -> None:
        self.owner = owner
        self.server = server
        self.name = server.name
        self.session: ClientSession | None = None
        self.tools: list[types.Tool] | None = None
        self.note: str | None = "starting"
        self.broken = asyncio.Event()  # set when a call finds the connection gone: reconnect

    @property
    def included(self) -> bool:
        return self.session is not None and self.tools is not None

    def fields(self) -> dict[str, Any]:
        return {
            "tools": len(self.tools) if self.tools is not None else None,
            "in_aggregate": self.included,
            "aggregate_note": None if self.included else self.note,
        }

    async def call(self, tool: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        session = self.session
        if session is None:
            raise UpstreamError("unavailable", f"server '{self.name}' is not connected: {self.note or 'starting'}")
        try:
            result = await session.call_tool(tool, arguments, read_timeout_seconds=CALL_TIMEOUT)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, httpx2.TransportError) as e:
            self.broken.set()
            raise UpstreamError("upstream", f"server '{self.name}': the connection broke ({type(e).__name__})") from e
        if not isinstance(result, types.CallToolResult):
            raise UpstreamError("upstream", f"server '{self.name}' answered tools/call with {type(result).__name__}")
        return result

    async def _connected(self, stack: AsyncExitStack, read: Any, write: Any) -> ClientSession:
        session = await stack.enter_async_context(ClientSession(read, write, message_handler=self._on_message))
        with anyio.fail_after(INIT_TIMEOUT):
            await session.initialize()
        self.session = session
        await self.relist()
        return session

    async def relist(self) -> None:
        session = self.session
        if session is None:
            return
        tools: list[types.Tool] = []
        cursor: str | None = None
        with anyio.fail_after(LIST_TIMEOUT):
            for _ in range(100):  # a paginator that never ends cannot hang us
                page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        self.tools = tools
        self.note = None
        log.info("server=%s %d tools", self.name, len(tools))
        self.owner.tools_changed(self, "tools_listed")

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            # Relisting here would wait on the session's own reader: let it run beside.
            asyncio.get_running_loop().create_task(self._relist_logged())

    async def _relist_logged(self) -> None:
        try:
            await self.relist()
        except Exception as e:  # noqa: BLE001 — a failed relist keeps the previous list; the log says why
            log.warning("server=%s could not list its tools again: %s", self.name, type(e).__name__)

    def _lost(self, note: str) -> None:
        had = self.tools is not None
        self.session = None
        self.tools = None
        self.note = note
        if had:
            self.owner.tools_changed(self, "disconnected")

    def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def on_status(self, status: dict[str, Any]) -> None:
        """A servers.changed from the server's TokenActor."""


# ---- stdio --------------------------------------------------------------------------------------


class StderrLog:
    """A child's stderr to the log, one line per line, bounded in length and in rate."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.window_start = time.monotonic()
        self.logged = 0
        self.dropped = 0
        self.last = ""

    def line(self, text: str) -> None:
        text = text.rstrip("\r")
        if not text:
            return
        self.last = printable(text, 200)
        now = time.monotonic()
        if now - self.window_start >= STDERR_WINDOW:
            if self.dropped:
                log.warning("server=%s stderr: %d lines not logged (more than %d in %.0fs)", self.name, self.dropped,
                            STDERR_LINES_PER_WINDOW, STDERR_WINDOW)
            self.window_start, self.logged, self.dropped = now, 0, 0
        if self.logged >= STDERR_LINES_PER_WINDOW:
            self.dropped += 1
            return
        self.logged += 1
        log.info("server=%s stderr: %s", self.name, printable(text, STDERR_LINE_MAX))


class StdioUpstream(Upstream):
    def __init__(self, owner: Upstreams, server: ServerConfig) -> None:
        super().__init__(owner, server)
        self.child = sv.Child()
        self.task: asyncio.Task[None] | None = None
        self.stopped = asyncio.Event()
        self.stopped.set()
        self.process_error: str | None = None

    def fields(self) -> dict[str, Any]:
        error = self.child.last_error if self.child.phase != "running" or self.session is None else None
        return {
            **super().fields(),
            **sv.status_fields(self.child),
            "connected": self.included,  # its MCP session is up and its tools are listed
            "last_error": {"kind": "process", "message": error} if error else None,
        }

    def feed(self, event: sv.Event) -> None:
        self.child, effects = sv.step(self.child, event, time.monotonic())
        loop = asyncio.get_running_loop()
        for effect in effects:
            if isinstance(effect, sv.Spawn):
                self.stopped.clear()
                self.task = loop.create_task(self._run(effect.generation), name=f"stdio:{self.name}")
            elif isinstance(effect, sv.Kill):
                if self.task is not None:
                    self.task.cancel()
            elif isinstance(effect, sv.SetTimer):
                loop.call_later(effect.delay, self.feed, sv.TimerFired(effect.seq))
            elif isinstance(effect, sv.Report):
                if self.child.phase == "failed":
                    self.note = "its process keeps exiting: " + (self.child.last_error or "")
                    log.error("server=%s %s", self.name, self.child.last_error)
                elif self.child.phase == "waiting":
                    self.note = f"restarting after its process exited ({self.child.last_error})"
                elif self.child.phase in ("stopped", "stopping"):
                    self.note = "stopped"
                self.owner.report(self, effect.reason)

    def start(self) -> None:
        self.feed(sv.Wanted())

    def changed(self, server: ServerConfig) -> None:
        self.server = server
        self.feed(sv.Changed())

    async def stop(self) -> None:
        self.feed(sv.Unwanted())
        await self.stopped.wait()

    async def _run(self, generation: int) -> None:
        message = "exited"
        stderr = StderrLog(self.name)
        gone = asyncio.Event()
        pid: list[int] = []
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        try:
            reader = asyncio.StreamReader(limit=STDERR_LINE_MAX * 4)
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb"))
            errlog = os.fdopen(w, "w")
            w = -1
            pump = loop.create_task(self._pump_stderr(reader, stderr, generation, pid, gone))
            try:
                program, argv = launcher_argv(self.server.command or "", self.server.args,
                                              [*child_env(dict(self.server.env))], self.server.working_dir)
                params = StdioServerParameters(command=program, args=argv, env=child_env(dict(self.server.env)))
                async with AsyncExitStack() as stack:
                    try:
                        read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
                    finally:
                        errlog.close()  # the child holds its own copy: EOF on our end means it is gone
                    watch = loop.create_task(self._watch_pid(pid, gone))
                    try:
                        await self._connected(stack, read, write)
                        self.owner.report(self, "connected")
                        await gone.wait()
                    finally:
                        watch.cancel()
                message = f"exited ({stderr.last})" if stderr.last else "exited"
            finally:
                pump.cancel()
                transport.close()
        except asyncio.CancelledError:
            message = "stopped"
        except OSError as e:
            message = f"cannot start {self.server.command}: {e.strerror or type(e).__name__}"
        except TimeoutError:
            message = f"no MCP answer within {INIT_TIMEOUT:.0f}s ({stderr.last or 'nothing on stderr'})"
        except Exception as e:  # noqa: BLE001 — every failure is reported and restarted with the backoff
            message = f"{type(e).__name__}: {stderr.last or printable(str(e), 200)}"
        finally:
            if w != -1:
                os.close(w)
            self._lost(message)
            if message != "stopped":
                log.warning("server=%s process %s", self.name, message)
            if not pid:
                self.feed(sv.SpawnFailed(generation, message))
            else:
                self.feed(sv.Exited(generation, message))
            if not self.child.alive:
                self.stopped.set()

    async def _pump_stderr(self, reader: asyncio.StreamReader, stderr: StderrLog, generation: int, pid: list[int],
                           gone: asyncio.Event) -> None:
        buffer = b""
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > STDERR_LINE_MAX * 2:
                    lines.append(buffer)
                    buffer = b""
                for raw in lines:
                    text = raw.decode("utf-8", "replace")
                    if not pid and text.startswith(PID_LINE):
                        pid.append(int(text[len(PID_LINE):]))
                        self.feed(sv.Spawned(generation, pid[0]))
                        continue
                    stderr.line(text)
            if buffer:
                stderr.line(buffer.decode("utf-8", "replace"))
        finally:
            gone.set()

    async def _watch_pid(self, pid: list[int], gone: asyncio.Event) -> None:
        """A server whose own children keep its stderr open still ends when its process does."""
        while not gone.is_set():
            await asyncio.sleep(PID_POLL)
            if pid:
                try:
                    os.kill(pid[0], 0)
                except ProcessLookupError:
                    gone.set()
                except PermissionError:
                    pass


# ---- HTTP ---------------------------------------------------------------------------------------


class TokenAuth(httpx2.Auth):
    """The server's current token on every request to it, asked exactly as the pass-through asks; a 401 makes the
    TokenActor refresh (single flight) and the request is replayed once."""

    requires_request_body = True

    def __init__(self, upstream: HttpUpstream) -> None:
        self.upstream = upstream

    async def _token(self, ask: Awaitable[TokenAnswer | Failure]) -> TokenAnswer:
        up = self.upstream
        try:
            answer = await ask
        except ActorUnavailable as e:
            raise httpx2.RequestError(f"server '{up.name}': its token actor is unavailable ({e})") from None
        if isinstance(answer, TokenAnswer):
            return answer
        up.needs_login = bool(answer.needs_login)
        raise httpx2.RequestError(f"server '{up.name}': no usable token ({answer.kind})")

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        app, name = self.upstream.owner.app, self.upstream.name
        token = await self._token(lease.current_token(app, name))
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code != 401:
            return
        token = await self._token(lease.rejected_token(app, name, token))
        log.info("server=%s upstream refused the token; replaying with a fresh one", name)
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code == 401:
            await lease.refused_token(app, name, token)
            log.warning("server=%s upstream refused a fresh token too", name)


class HttpUpstream(Upstream):
    def __init__(self, owner: Upstreams, server: ServerConfig) -> None:
        super().__init__(owner, server)
        self.task: asyncio.Task[None] | None = None
        self.needs_login = server.is_oauth  # until its TokenActor's status says otherwise
        self.note = self._login_note() if server.is_oauth else IDLE_NOTE
        self.settled = asyncio.Event()  # the first connection attempt ended, one way or the other

    def _login_note(self) -> str:
        return f"needs a login: run `mcpproxy-ctl login {self.name}`"

    def start(self) -> None:
        if not self.owner.active:
            return  # nobody uses /mcp yet: no session to hold (activate() starts it)
        if self.task is None and not self.needs_login:
            self.note = "connecting"
            self.settled.clear()
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"http:{self.name}")
        else:
            self.settled.set()

    async def stop(self) -> None:
        task, self.task = self.task, None
        self.settled.set()
        if task is not None:
            task.cancel()
            # Bounded: the SDK's transport may still be closing (its task is left to finish by itself).
            await asyncio.wait({task}, timeout=STOP_WAIT)

    def on_status(self, status: dict[str, Any]) -> None:
        if not self.server.is_oauth:
            return
        needs = status.get("action") == "login" or not status.get("token_held")
        if needs == self.needs_login:
            return
        self.needs_login = needs
        if needs:
            log.info("server=%s needs a login; its tools leave the aggregate", self.name)
            asyncio.get_running_loop().create_task(self._logged_out())
        else:
            log.info("server=%s has a token%s", self.name, "; connecting for /mcp" if self.owner.active else "")
            self.note = IDLE_NOTE
            self.start()
            self.owner.report(self, "connecting")

    async def _logged_out(self) -> None:
        await self.stop()
        self._lost(self._login_note())
        self.owner.report(self, "login_needed")

    async def _run(self) -> None:
        attempt = 0
        while True:
            self.broken.clear()
            try:
                auth = TokenAuth(self) if self.server.is_oauth else None
                timeout = httpx2.Timeout(30.0, read=CALL_TIMEOUT)
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(
                        httpx2.AsyncClient(auth=auth, timeout=timeout, trust_env=False, follow_redirects=False))
                    read, write = await stack.enter_async_context(
                        # No DELETE on close: it would ask for a token while the service stops (the upstream's
                        # session ends by its own idle timeout).
                        streamable_http_client(self.server.url or "", http_client=client, terminate_on_close=False))
                    await self._connected(stack, read, write)
                    attempt = 0
                    self.settled.set()
                    self.owner.report(self, "connected")
                    await self.broken.wait()
                why = "the connection broke"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — classified in the note, retried with a bound
                why = _why(e)
            self.settled.set()
            if self.needs_login:
                self._lost(self._login_note())
            else:
                self._lost(f"unreachable: {why}")
                log.warning("server=%s aggregate session: %s", self.name, why)
            self.owner.report(self, "disconnected")
            attempt += 1
            await asyncio.sleep(min(HTTP_RETRY_CAP, HTTP_RETRY_FIRST * 2 ** (attempt - 1)))
            if self.needs_login:
                self.task = None
                return


def _why(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        inner = e.exceptions[0] if e.exceptions else e
        return _why(inner)
    if isinstance(e, TimeoutError):
        return "no answer in time"
    text = printable(str(e), 160)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ---- all of them --------------------------------------------------------------------------------


def apply_config(app: web.Application, config: Config) -> None:
    """After a reload: start, stop and restart the MCP clients to match."""
    upstreams = app.get(UPSTREAMS)
    if isinstance(upstreams, Upstreams):
        upstreams.apply(config)


def gateway_fields(app: web.Application, name: str) -> dict[str, Any]:
    upstreams = app.get(UPSTREAMS)
    return upstreams.fields_for(name) if isinstance(upstreams, Upstreams) else {}


class Upstreams:
    """Every configured server's client side, the aggregated tool names, and who hears when they change."""

    def __init__(self, app: web.Application, bridge: ActorBridge, config: Config) -> None:
        self.app = app
        self.bridge = bridge
        self.separator = config.tool_separator
        self.items: dict[str, Upstream] = {}
        self.reported: dict[str, dict[str, Any]] = {}
        self.listeners: list[Callable[[str | None], Coroutine[Any, Any, None]]] = []
        self.catalog: dict[str, tuple[str, types.Tool]] = {}  # exposed name → (server, its tool)
        #: HTTP servers get a session only once /mcp is used: a user of the pass-through alone pays nothing.
        self.active = False

    async def activate(self) -> None:
        """The first /mcp request: connect to the HTTP servers, and wait a moment for them."""
        if self.active:
            return
        self.active = True
        https = [up for up in self.items.values() if isinstance(up, HttpUpstream)]
        for up in https:
            up.start()
            self.report(up, "connecting")
        waits = [asyncio.ensure_future(up.settled.wait()) for up in https if up.task is not None]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=ACTIVATE_WAIT)
            for w in pending:
                w.cancel()

    def apply(self, config: Config) -> None:
        """Start, stop and restart clients to match the config (at start and after each reload)."""
        self.separator = config.tool_separator
        wanted = {s.name: s for s in config.servers if s.enabled}
        loop = asyncio.get_running_loop()
        for name in [n for n in self.items if n not in wanted]:
            gone = self.items.pop(name)
            self.reported.pop(name, None)
            loop.create_task(gone.stop())
            log.info("server=%s left the configuration; its client stops", name)
            self._rebuild(name)
        for name, server in wanted.items():
            up = self.items.get(name)
            if up is not None and up.server == server:
                continue
            if up is not None and isinstance(up, StdioUpstream) and server.protocol == "stdio":
                up.changed(server)
                continue
            if up is not None:
                self.items.pop(name)
                loop.create_task(up.stop())
            new: Upstream = StdioUpstream(self, server) if server.protocol == "stdio" else HttpUpstream(self, server)
            self.items[name] = new
            new.start()
            self.report(new, "config")
        self._rebuild(None)

    def fields_for(self, name: str) -> dict[str, Any]:
        """The gateway's part of a server's status object (merged over the actors' part)."""
        up = self.items.get(name)
        if up is None:
            return {"tools": None, "in_aggregate": False, "aggregate_note": "disabled"}
        return up.fields()

    def hub_moved(self) -> None:
        """A new EventHub knows nothing of the gateway's part: tell it everything again."""
        self.reported.clear()
        for up in self.items.values():
            self.report(up, "hub_restarted")

    def on_status(self, status: dict[str, Any]) -> None:
        up = self.items.get(status.get("name", ""))
        if up is not None:
            up.on_status(status)

    def report(self, up: Upstream, reason: str) -> None:
        if self.items.get(up.name) is not up:
            return  # replaced or removed: its last words are stale
        fields = up.fields()
        if self.reported.get(up.name) == fields:
            return
        self.reported[up.name] = fields
        msg = UpstreamStatus(up.name, fields, reason, time.time())
        asyncio.get_running_loop().run_in_executor(self.bridge.teller, self.bridge.tell_sync, self.bridge.hub, msg)

    def tools_changed(self, up: Upstream, reason: str) -> None:
        self.report(up, reason)
        self._rebuild(up.name)

    def _rebuild(self, name: str | None) -> None:
        catalog: dict[str, tuple[str, types.Tool]] = {}
        for server_name, up in sorted(self.items.items()):
            if not up.included or up.tools is None:
                continue
            for tool in up.tools:
                exposed = f"{server_name}{self.separator}{tool.name}"
                if exposed in catalog:
                    log.warning("server=%s tool %s is named like another server's; left out", server_name,
                                printable(tool.name, 80))
                    continue
                catalog[exposed] = (server_name, tool)
        if catalog.keys() == self.catalog.keys() and all(
                catalog[k][1] == self.catalog[k][1] for k in catalog):
            self.catalog = catalog
            return
        self.catalog = catalog
        loop = asyncio.get_running_loop()
        for listener in list(self.listeners):
            loop.create_task(listener(name))

    def aggregated_tools(self) -> list[types.Tool]:
        tools = []
        for exposed, (server_name, tool) in self.catalog.items():
            description = f"[{server_name}] {tool.description}" if tool.description else f"[{server_name}]"
            tools.append(tool.model_copy(update={"name": exposed, "description": description}))
        return tools

    async def call_aggregated(self, exposed: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        found = self.catalog.get(exposed)
        if found is None:
            raise UpstreamError("unknown_tool", f"no tool named {printable(exposed, 120)!r} (tools/list names them)")
        server_name, tool = found
        up = self.items.get(server_name)
        if up is None:
            raise UpstreamError("unavailable", f"server '{server_name}' left the configuration")
        return await up.call(tool.name, arguments)

    async def close(self) -> None:
        items, self.items = list(self.items.values()), {}
        await asyncio.gather(*(up.stop() for up in items), return_exceptions=True)
