"""`/mcp/{name}` against real processes: the SDK client → mcpproxy → the test MCP server, tokens from the test AS."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import requests
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle, free_port, iter_secrets
from tests.mcpserver.control import MCPServerHandle, start_mcp_server
from tests.oauthserver.control import OAuthServerHandle

ACCESS_TTL = 2.0
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "passthrough-test", "version": "0"}}}
CLIENT_SECRET = "Bearer the-clients-own-credential"


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def refreshes(auth: OAuthServerHandle) -> int:
    return int(auth.counters()["grants"].get("refresh_token", 0))


@asynccontextmanager
async def mcp_session(url: str) -> AsyncIterator[ClientSession]:
    """The official SDK client, configured the way a user would: a bare URL (plus a credential to be dropped)."""
    async with httpx2.AsyncClient(headers={"Authorization": CLIENT_SECRET}, timeout=httpx2.Timeout(10, read=60)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def text_of(result: Any) -> str:
    assert not result.is_error, result
    return str(result.content[0].text)


async def call_every(session: ClientSession, seconds: float, period: float = 0.3) -> set[str]:
    """whoami through the proxy every `period` s for `seconds`; every call must succeed. Returns the tokens used."""
    used: set[str] = set()
    calls = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        used.add(text_of(await session.call_tool("whoami", {})))
        calls += 1
        await asyncio.sleep(period)  # the call rate under test, not a wait for a condition
    assert calls >= seconds / (period + 0.5), calls
    return used


def raw_initialize(url: str) -> str:
    """A raw initialize through the proxy; returns the Mcp-Session-Id (after notifications/initialized)."""
    r = requests.post(url, headers=MCP_HEADERS, json=INIT, timeout=30)
    assert r.status_code == 200, r.text
    sid = r.headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    r = requests.post(url, headers={**MCP_HEADERS, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"},
                      json=note, timeout=30)
    assert r.status_code == 202, r.text
    return sid


async def concurrent_list_tools(url: str, sid: str, n: int) -> list[int]:
    headers = {**MCP_HEADERS, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one(i: int) -> int:
            r = await client.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 100 + i, "method": "tools/list"})
            assert r.status_code != 200 or '"slow_count"' in r.text, r.text
            return r.status_code

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def revoke_current_token(auth: OAuthServerHandle, proxy_url: str) -> None:
    """Revokes (RFC 7009) the access token the proxy is using now, behind the proxy's back."""
    sid = raw_initialize(proxy_url)
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    r = requests.post(proxy_url, headers={**MCP_HEADERS, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"},
                      json=call, timeout=30)
    current = json.loads(r.text.split("data: ", 1)[1].split("\n", 1)[0])["result"]["content"][0]["text"]
    token = next(t for t in auth.issued()["access_tokens"] if fingerprint(t) == current)
    client_id = auth.grants()[-1]["client_id"]
    requests.post(auth.url("/revoke"), data={"token": token, "token_type_hint": "access_token",
                                             "client_id": client_id}, timeout=10).raise_for_status()


# ---- the happy path: a client that works for days without meeting OAuth -------------------------


async def test_sdk_client_never_meets_an_expired_token(service: ServiceHandle, mcp_server: MCPServerHandle,
                                                       auth_server: OAuthServerHandle) -> None:
    service.login("demo")
    mcp_server.reset_counters()
    before = refreshes(auth_server)
    async with mcp_session(f"{service.base_url}/mcp/demo") as session:
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {"echo", "whoami", "slow_count"} <= tools
        used = await call_every(session, 4 * ACCESS_TTL + 0.7)
    counters = mcp_server.counters()
    assert counters["rejected_expired"] == 0, counters  # proactive refresh: no expired token is ever sent
    assert counters["rejected_missing"] == counters["rejected_invalid"] == 0, counters
    assert fingerprint(CLIENT_SECRET.split()[1]) not in used  # the client's own Authorization never passes
    assert len(used) >= 4, used  # the calls rode on at least four tokens
    assert refreshes(auth_server) - before >= 4
    status = service.wait_status("demo", lambda s: s["connected"] is True and s["last_probe_at"], 10, "a probe")
    assert status["oauth_status"] == "authenticated" and status["action"] is None
    logs = service.logs()
    assert not [s for s in iter_secrets(auth_server.issued()) if s in logs]


async def test_streaming_answer_arrives_incrementally(service: ServiceHandle) -> None:
    service.login("demo")
    async with mcp_session(f"{service.base_url}/mcp/demo") as session:
        start = time.monotonic()
        steps: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            steps.append(time.monotonic() - start)

        result = await session.call_tool("slow_count", {"n": 4, "delay": 0.4}, progress_callback=on_progress)
        finished = time.monotonic() - start
    assert text_of(result) == "counted 4"
    assert len(steps) == 4
    # The first progress arrives while three more steps (1.2 s) are still to come: nothing is buffered.
    assert finished - steps[0] >= 0.8, (steps, finished)
    assert steps[1] - steps[0] >= 0.2, steps


# ---- the reactive path: proactive refresh off ------------------------------------------------------


async def test_reactive_refresh_and_single_flight(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                                  auth_server: OAuthServerHandle) -> None:
    svc = service_factory([{"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}}], threshold=1.0)
    svc.login("demo")
    url = f"{svc.base_url}/mcp/demo"
    mcp_server.reset_counters()
    before = refreshes(auth_server)
    async with mcp_session(url) as session:
        used = await call_every(session, 2 * ACCESS_TTL + 0.7)
    assert len(used) >= 2 and refreshes(auth_server) - before >= 2  # refreshed on use, every call succeeded
    assert svc.status("demo")["next_refresh_at"] is None

    # A hundred concurrent requests once the token has expired: one refresh.
    sid = raw_initialize(url)
    svc.wait_status("demo", lambda s: s["oauth_status"] == "expired", 10, "the token to expire")
    before = refreshes(auth_server)
    assert await concurrent_list_tools(url, sid, 100) == [200] * 100
    assert refreshes(auth_server) - before == 1

    # A hundred concurrent requests at an upstream 401 (the token revoked behind our back): one refresh, replayed.
    auth_server.set_config(access_ttl=60)
    assert svc.api("POST", "/api/v1/servers/demo/refresh").status_code == 200
    revoke_current_token(auth_server, url)
    mcp_server.reset_counters()
    before = refreshes(auth_server)
    assert await concurrent_list_tools(url, sid, 100) == [200] * 100
    assert refreshes(auth_server) - before == 1
    counters = mcp_server.counters()
    assert counters["rejected_invalid"] >= 1 and counters["authorized"] >= 100, counters
    assert counters["rejected_expired"] == 0, counters


# ---- refusals and errors ---------------------------------------------------------------------------


def test_errors_are_json_rpc_and_say_why(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                         auth_server: OAuthServerHandle) -> None:
    closed = f"http://127.0.0.1:{free_port()}/mcp"
    svc = service_factory([
        {"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}},
        {"name": "open", "url": mcp_server.url, "protocol": "http", "oauth": None},
        {"name": "down", "url": closed, "protocol": "http", "oauth": None},
        {"name": "off", "url": mcp_server.url, "protocol": "http", "enabled": False, "oauth": {}},
        {"name": "elsewhere", "url": mcp_server.url, "protocol": "http",
         "oauth": {"extra_params": {"resource": mcp_server.base_url + "/elsewhere"}}},
    ])
    base = svc.base_url + "/mcp/"

    def post(name: str, **kw: Any) -> requests.Response:
        headers = {**MCP_HEADERS, **kw.pop("headers", {})}
        return requests.post(base + name, headers=headers, json=INIT, timeout=30, **kw)

    r = post("nope")
    assert r.status_code == 404 and "'nope'" in r.json()["error"]["message"]
    r = post("off")
    assert r.status_code == 409 and "disabled" in r.json()["error"]["message"]
    r = post("down")
    assert r.status_code == 502
    err = r.json()["error"]
    assert "'down'" in err["message"] and "unreachable" in err["message"] and r.json()["id"] is None

    # No token yet: 401 naming the login command.
    r = post("demo")
    assert r.status_code == 401
    assert r.json()["error"] == {"code": -32001, "message": "server 'demo' needs a login: run `mcpproxy-ctl login demo`",
                                 "data": {"server": "demo", "kind": "login_required"}}

    # Not OAuth: passed through without a token, and the client's own Authorization is dropped.
    mcp_server.reset_counters()
    r = post("open", headers={"Authorization": CLIENT_SECRET, "Cookie": "a=b"})
    assert r.status_code == 401 and "WWW-Authenticate" not in r.headers
    assert mcp_server.counters()["rejected_missing"] == 1

    # DNS rebinding and cross-origin pages cannot drive /mcp.
    assert post("demo", headers={"Host": "evil.example:80"}).status_code == 421
    assert post("demo", headers={"Origin": "http://evil.example"}).status_code == 403
    assert requests.put(base + "demo", timeout=10).status_code == 405

    # An upstream that refuses even a freshly refreshed token: 401, and the status asks for a login.
    svc.login("demo")
    svc.login("elsewhere")
    before = refreshes(auth_server)
    mcp_server.reset_counters()
    r = post("elsewhere")
    assert r.status_code == 401 and "mcpproxy-ctl login elsewhere" in r.json()["error"]["message"]
    assert refreshes(auth_server) - before == 1  # refreshed once, replayed once, then gave up
    assert mcp_server.counters()["rejected_audience"] >= 2  # the request and its replay (and the probes)
    status = svc.status("elsewhere")
    assert status["action"] == "login" and status["refresh_state"] == "failed"
    assert post("elsewhere").status_code == 401
    assert refreshes(auth_server) - before == 1  # no refresh loop
    assert post("demo").status_code == 200  # the other server is untouched


def test_insufficient_scope_asks_for_a_login_with_the_union(service_factory: ServiceFactory,
                                                            auth_server: OAuthServerHandle) -> None:
    with start_mcp_server(auth_server.base_url, scopes="mcp:read", required_scope="mcp:write",
                          name="strict") as strict:
        svc = service_factory([{"name": "strict", "url": strict.url, "protocol": "http", "oauth": {}}])
        svc.login("strict")
        svc.wait_status("strict", lambda s: s["connected"] is False, 10, "a failed probe (403)")
        url = f"{svc.base_url}/mcp/strict"
        r = requests.post(url, headers=MCP_HEADERS, json=INIT, timeout=30)
        assert r.status_code == 403
        status = svc.status("strict")
        assert status["missing_scopes"] == ["mcp:write"] and status["action"] == "login"
        auth_url = svc.start_login("strict")
        assert parse_qs(urlsplit(auth_url).query)["scope"] == ["mcp:read mcp:write"]  # the union
        status = svc.login("strict")
        assert status["missing_scopes"] == [] and status["action"] is None
        assert requests.post(url, headers=MCP_HEADERS, json=INIT, timeout=30).status_code == 200
        svc.wait_status("strict", lambda s: s["connected"] is True, 10, "a good probe")


def test_get_and_delete_pass_the_session_header(service: ServiceHandle) -> None:
    service.login("demo")
    url = f"{service.base_url}/mcp/demo"
    sid = raw_initialize(url)
    headers = {"Accept": "text/event-stream", "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
    with requests.get(url, headers=headers, stream=True, timeout=30) as r:  # the server-to-client stream
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/event-stream")
    r = requests.delete(url, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(url, headers={**MCP_HEADERS, "Mcp-Session-Id": sid}, json=INIT, timeout=30)
    assert r.status_code == 404, r.text  # the session is gone upstream
    assert requests.options(url, timeout=10).status_code == 204
