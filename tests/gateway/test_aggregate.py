"""The aggregated `/mcp` and supervised stdio servers against real processes (docs/architecture.md "Upstreams and
the aggregated /mcp"): the SDK client → mcpproxy → two OAuth test MCP servers behind the test AS (2 s tokens)
and a stdio test server on the SDK (tests/stdioserver) that mcpproxy runs as its child.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import psutil
import pytest
import requests
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle, wait_until
from tests.mcpserver.control import MCPServerHandle, start_mcp_server
from tests.oauthserver.control import OAuthServerHandle

ROOT = Path(__file__).resolve().parents[2]
SEP = "__"
GREETING = "hello from the config"
SERVICE_SECRET = "the-service-environment-must-not-leak"


def stdio_entry(name: str, *extra: str) -> dict[str, Any]:
    return {"name": name, "protocol": "stdio", "command": sys.executable,
            "args": ["-m", "tests.stdioserver", "--name", name, *extra],
            "env": {"STDIO_GREETING": GREETING}, "working_dir": str(ROOT)}


@pytest.fixture
def two_servers(auth_server: OAuthServerHandle) -> Iterator[tuple[MCPServerHandle, MCPServerHandle]]:
    with start_mcp_server(auth_server.base_url, name="alpha") as a, start_mcp_server(auth_server.base_url,
                                                                                        name="beta") as b:
        yield a, b


@pytest.fixture
def svc(service_factory: ServiceFactory, two_servers: tuple[MCPServerHandle, MCPServerHandle]) -> ServiceHandle:
    a, b = two_servers
    return service_factory([
        {"name": "alpha", "url": a.url, "protocol": "http", "oauth": {}},
        {"name": "beta", "url": b.url, "protocol": "http", "oauth": {}},
        stdio_entry("local"),
    ], start=True)


class Notes:
    """Notifications the client heard."""

    def __init__(self) -> None:
        self.list_changed = 0

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.list_changed += 1


@asynccontextmanager
async def client(url: str, notes: Notes | None = None) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=60)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, message_handler=notes) as session:
                await session.initialize()
                yield session


async def names(session: ClientSession) -> set[str]:
    return {t.name for t in (await session.list_tools()).tools}


async def wait_names(session: ClientSession, pred: Any, timeout: float, what: str) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        got = await names(session)
        if pred(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; tools: {sorted(got)}")
        await asyncio.sleep(0.1)


async def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def text_of(result: Any) -> str:
    assert not result.is_error, result
    return str(result.content[0].text)


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def login_both(svc: ServiceHandle) -> None:
    for name in ("alpha", "beta"):
        svc.login(name)
    # HTTP servers get their aggregate session once /mcp is first used.
    assert requests.post(svc.base_url + "/mcp", json=INIT, headers=MCP_HEADERS, timeout=30).status_code == 200
    for name in ("alpha", "beta"):
        svc.wait_status(name, lambda s: s.get("in_aggregate") is True, 30, f"{name} in the aggregate")


def test_every_tool_of_every_server_through_one_endpoint(svc: ServiceHandle) -> None:
    local = svc.wait_status("local", lambda s: s.get("connected") is True, 30, "the stdio child connected")
    assert local["pid"] and local["restarts"] == 0 and local["tools"] == 5 and local["in_aggregate"] is True
    alpha = svc.status("alpha")
    assert alpha["in_aggregate"] is False and "login" in alpha["aggregate_note"]  # why it is left out
    svc.login("alpha")
    # Until /mcp is used, a logged-in HTTP server holds no aggregate session (the pass-through alone costs
    # nothing more), and its status says so.
    svc.wait_status("alpha", lambda s: s["aggregate_note"] == "connects when /mcp is first used", 10,
                    "alpha waiting for /mcp to be used")
    login_both(svc)

    async def run() -> None:
        async with client(svc.base_url + "/mcp") as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            for server in ("alpha", "beta"):
                for tool in ("echo", "whoami", "slow_count"):
                    assert f"{server}{SEP}{tool}" in tools
                    assert (tools[f"{server}{SEP}{tool}"].description or "").startswith(f"[{server}]")
            for tool in ("echo", "pid", "getenv", "environ_names", "cwd"):
                assert f"local{SEP}{tool}" in tools
            assert len(tools) == 11
            for server in ("alpha", "beta", "local"):
                assert text_of(await session.call_tool(f"{server}{SEP}echo", {"text": f"hi {server}"})) == f"hi {server}"
            assert text_of(await session.call_tool(f"local{SEP}pid", {})) == str(local["pid"])
            unknown = await session.call_tool("nobody__echo", {"text": "x"})
            assert unknown.is_error and "no tool named" in unknown.content[0].text
        # /mcp/NAME for a stdio server: the child's own tools, unprefixed.
        async with client(svc.base_url + "/mcp/local") as session:
            assert await names(session) == {"echo", "pid", "getenv", "environ_names", "cwd"}
            assert text_of(await session.call_tool("echo", {"text": "direct"})) == "direct"

    asyncio.run(run())


def test_soak_over_three_token_lifetimes_no_failed_call_no_upstream_401(
        svc: ServiceHandle, two_servers: tuple[MCPServerHandle, MCPServerHandle]) -> None:
    login_both(svc)
    svc.wait_status("local", lambda s: s.get("in_aggregate") is True, 30, "the stdio child in the aggregate")
    for server in two_servers:
        server.reset_counters()
    failures: list[str] = []
    seen: dict[str, set[str]] = {"alpha": set(), "beta": set()}

    async def run() -> int:
        calls = 0
        async with client(svc.base_url + "/mcp") as session:
            deadline = time.monotonic() + 3 * 2.0 + 1.0  # three lifetimes of the AS's 2 s tokens
            while time.monotonic() < deadline:
                for server in ("alpha", "beta"):
                    result = await session.call_tool(f"{server}{SEP}whoami", {})
                    if result.is_error:
                        failures.append(str(result.content))
                    else:
                        seen[server].add(result.content[0].text)
                result = await session.call_tool(f"local{SEP}echo", {"text": "x"})
                if result.is_error:
                    failures.append(str(result.content))
                calls += 3
        return calls

    calls = asyncio.run(run())
    assert failures == [] and calls > 30
    for name, server in zip(("alpha", "beta"), two_servers, strict=True):
        counters = server.counters()
        assert counters["rejected_expired"] == 0 and counters["rejected_invalid"] == 0, counters
        assert counters["rejected_missing"] == 0, counters
        assert len(seen[name]) >= 3, f"{name}: the calls used {len(seen[name])} tokens; refreshes did not happen"


def test_the_stdio_child_killed_is_restarted_and_calls_resume(svc: ServiceHandle) -> None:
    first = svc.wait_status("local", lambda s: s.get("connected") is True, 30, "the stdio child connected")
    notes = Notes()

    async def run() -> None:
        async with client(svc.base_url + "/mcp", notes) as session:
            assert text_of(await session.call_tool(f"local{SEP}echo", {"text": "before"})) == "before"
            os.kill(first["pid"], signal.SIGKILL)
            await wait_names(session, lambda n: f"local{SEP}echo" not in n, 20, "local's tools to leave")
            await wait_for(lambda: notes.list_changed >= 1, 20, "list_changed after the exit")
            await wait_names(session, lambda n: f"local{SEP}echo" in n, 30, "local's tools to come back")
            await wait_for(lambda: notes.list_changed >= 2, 20, "list_changed after the restart")
            new_pid = text_of(await session.call_tool(f"local{SEP}pid", {}))
            assert new_pid != str(first["pid"])
            assert text_of(await session.call_tool(f"local{SEP}echo", {"text": "after"})) == "after"

    asyncio.run(run())
    after = svc.wait_status("local", lambda s: s.get("connected") is True, 30, "connected again")
    assert after["restarts"] == 1 and after["pid"] != first["pid"]
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE


def test_logout_takes_the_servers_tools_out_and_tells_the_client(svc: ServiceHandle) -> None:
    login_both(svc)
    notes = Notes()

    async def run() -> None:
        async with client(svc.base_url + "/mcp", notes) as session:
            assert f"alpha{SEP}echo" in await names(session)
            r = svc.api("POST", "/api/v1/servers/alpha/logout")
            assert r.status_code == 200, r.text
            await wait_names(session, lambda n: not any(x.startswith(f"alpha{SEP}") for x in n) and
                             f"beta{SEP}echo" in n, 20, "alpha's tools to leave")
            await wait_for(lambda: notes.list_changed >= 1, 20, "list_changed after the logout")
            gone = await session.call_tool(f"alpha{SEP}echo", {"text": "x"})
            assert gone.is_error
            # Logged in again: its tools come back, and the client hears of it.
            heard = notes.list_changed
            await asyncio.to_thread(svc.login, "alpha")
            await wait_names(session, lambda n: f"alpha{SEP}echo" in n, 30, "alpha's tools to come back")
            await wait_for(lambda: notes.list_changed > heard, 20, "list_changed after the login")

    asyncio.run(run())
    status = svc.status("alpha")
    assert status["in_aggregate"] is True


def test_a_reload_that_adds_a_server_adds_its_tools(svc: ServiceHandle) -> None:
    svc.wait_status("local", lambda s: s.get("connected") is True, 30, "the stdio child connected")
    notes = Notes()

    async def run() -> None:
        async with client(svc.base_url + "/mcp", notes) as session:
            assert f"extra{SEP}echo" not in await names(session)
            doc = json.loads(svc.config_path.read_text())
            doc["mcpServers"].append(stdio_entry("extra"))
            svc.config_path.write_text(json.dumps(doc))
            await wait_names(session, lambda n: f"extra{SEP}echo" in n, 30, "the new server's tools")
            await wait_for(lambda: notes.list_changed >= 1, 20, "list_changed after the reload")
            assert text_of(await session.call_tool(f"extra{SEP}echo", {"text": "new"})) == "new"
            # And removed again: its tools leave, its process stops.
            pid = svc.status("extra")["pid"]
            doc["mcpServers"] = [s for s in doc["mcpServers"] if s["name"] != "extra"]
            svc.config_path.write_text(json.dumps(doc))
            await wait_names(session, lambda n: f"extra{SEP}echo" not in n, 30, "the removed server's tools to leave")
            await wait_for(lambda: not psutil.pid_exists(pid), 20, "the removed server's process to end")

    asyncio.run(run())


def test_the_child_sees_only_its_own_environment(service_factory: ServiceFactory) -> None:
    svc = service_factory([stdio_entry("local")], start=False)
    svc.extra_env = {"SERVICE_SECRET": SERVICE_SECRET, "MCPPROXY_API_KEY": svc.api_key}
    svc.start()
    svc.wait_status("local", lambda s: s.get("connected") is True, 30, "the stdio child connected")

    async def run() -> None:
        async with client(svc.base_url + "/mcp/local") as session:
            assert text_of(await session.call_tool("getenv", {"name": "MCPPROXY_API_KEY"})) == "<unset>"
            assert text_of(await session.call_tool("getenv", {"name": "SERVICE_SECRET"})) == "<unset>"
            assert text_of(await session.call_tool("getenv", {"name": "STDIO_GREETING"})) == GREETING
            seen = set(text_of(await session.call_tool("environ_names", {})).split(","))
            assert seen <= {"PATH", "HOME", "LANG", "STDIO_GREETING", "LC_CTYPE"}, seen
            assert text_of(await session.call_tool("cwd", {})) == str(ROOT)

    asyncio.run(run())


def test_a_crashing_child_is_told_with_its_stderr_and_restarted_with_backoff(service_factory: ServiceFactory) -> None:
    svc = service_factory([stdio_entry("broken", "--crash-at-start")])
    status = svc.wait_status("broken", lambda s: s.get("restarts", 0) >= 2, 30, "two restarts")
    assert status["connected"] is False and status["in_aggregate"] is False
    assert "crashing on purpose" in (status["last_error"] or {}).get("message", ""), status
    assert "crashing on purpose" in svc.logs()  # its stderr reached the log


def test_a_kill_9_of_the_service_takes_the_child_along(service_factory: ServiceFactory) -> None:
    svc = service_factory([stdio_entry("local")])
    pid = svc.wait_status("local", lambda s: s.get("connected") is True, 30, "the stdio child connected")["pid"]
    tree = svc.pids()
    assert pid in tree
    assert svc.proc is not None
    os.kill(svc.proc.pid, signal.SIGKILL)  # the service alone: the child must go by itself
    svc.proc.wait(10)
    svc.proc = None
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10,
               "the stdio child to die with the service")
    ServiceHandle._kill([p for p in tree if psutil.pid_exists(p)])


def test_mcp_gets_the_same_host_origin_and_fetch_checks(svc: ServiceHandle) -> None:
    init, headers = INIT, MCP_HEADERS
    url = svc.base_url + "/mcp"
    assert requests.post(url, json=init, headers={**headers, "Origin": "http://evil.example"}, timeout=10).status_code == 403
    assert requests.post(url, json=init, headers={**headers, "Host": "evil.example"}, timeout=10).status_code == 421
    assert requests.post(url, json=init, headers={**headers, "Sec-Fetch-Site": "cross-site"},
                         timeout=10).status_code == 403
    ok = requests.post(url, json=init, headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.headers.get("Mcp-Session-Id")
    assert ok.headers["Content-Security-Policy"].startswith("sandbox")
