"""The test MCP server: its bearer gate (pure rules) and, against the real test AS, the whole dance."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.mcpserver.auth import challenge, judge
from tests.mcpserver.control import MCPServerHandle, obtain_token, start_mcp_server, wait_until

RESOURCE = "http://127.0.0.1:5000/mcp"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def challenge_params(header: str) -> dict[str, str]:
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


# --- pure rules -------------------------------------------------------------------------


def active(**extra: Any) -> dict[str, Any]:
    return {"active": True, "aud": RESOURCE, "scope": "mcp:read", "exp": 2000.0, **extra}


@pytest.mark.parametrize(
    ("answer", "required", "outcome", "status"),
    [
        (active(), None, "authorized", 200),
        (active(aud=[RESOURCE + "/", "other"]), None, "authorized", 200),
        ({"active": False, "reason": "expired"}, None, "rejected_expired", 401),
        ({"active": False, "reason": "revoked"}, None, "rejected_invalid", 401),
        ({"active": False}, None, "rejected_invalid", 401),
        (active(exp=1000.0), None, "rejected_expired", 401),
        (active(aud="http://127.0.0.1:5001/mcp"), None, "rejected_audience", 401),
        (active(aud=None), None, "rejected_audience", 401),
        (active(), "mcp:write", "rejected_scope", 403),
        (active(scope="mcp:read mcp:write"), "mcp:write", "authorized", 200),
    ],
)
def test_judge(answer: dict[str, Any], required: str | None, outcome: str, status: int) -> None:
    verdict = judge(answer, resource=RESOURCE, required_scope=required, now=1500.0)
    assert (verdict.outcome, verdict.status) == (outcome, status)


def test_challenge_shapes() -> None:
    meta = "http://127.0.0.1:5000/.well-known/oauth-protected-resource/mcp"
    assert challenge(metadata_url=meta, scope="mcp:read") == (
        f'Bearer resource_metadata="{meta}", scope="mcp:read"'
    )
    assert challenge_params(challenge(metadata_url=meta, scope="mcp:read", error="invalid_token")) == {
        "error": "invalid_token",
        "resource_metadata": meta,
        "scope": "mcp:read",
    }
    assert challenge(metadata_url=meta, scope="mcp:write", error="insufficient_scope") == (
        f'Bearer error="insufficient_scope", scope="mcp:write", resource_metadata="{meta}"'
    )


# --- against the real test authorization server -----------------------------------------


@pytest.fixture(scope="module")
def auth_server() -> Iterator[Any]:
    control = pytest.importorskip("tests.oauthserver.control")
    handle = control.start_oauth_server()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def mcp_server(auth_server: Any) -> Iterator[MCPServerHandle]:
    with start_mcp_server(auth_server.base_url, name="demo") as handle:
        yield handle


@pytest.fixture
def server(mcp_server: MCPServerHandle) -> MCPServerHandle:
    mcp_server.reset_counters()
    return mcp_server


@asynccontextmanager
async def mcp_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10, read=30)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def test_no_token_is_401_with_challenge(server: MCPServerHandle) -> None:
    for method in ("POST", "GET", "DELETE"):
        response = httpx.request(method, server.url, headers=MCP_HEADERS, json=INIT if method == "POST" else None)
        assert response.status_code == 401, method
        header = response.headers["WWW-Authenticate"]
        assert header == f'Bearer resource_metadata="{server.metadata_url}", scope="mcp:read"'
    counters = server.counters()
    assert counters["requests"] == 3
    assert counters["rejected_missing"] == 3
    assert counters["authorized"] == 0


def test_unknown_token_is_401_invalid_token(server: MCPServerHandle) -> None:
    response = httpx.post(server.url, headers={**MCP_HEADERS, "Authorization": "Bearer not-a-token"}, json=INIT)
    assert response.status_code == 401
    assert challenge_params(response.headers["WWW-Authenticate"]) == {
        "error": "invalid_token",
        "resource_metadata": server.metadata_url,
        "scope": "mcp:read",
    }
    counters = server.counters()
    assert counters["rejected_invalid"] == 1
    assert counters["tokens_seen"] == 1


def test_protected_resource_metadata(server: MCPServerHandle, auth_server: Any) -> None:
    issuer = httpx.get(f"{auth_server.base_url}/.well-known/oauth-authorization-server").json()["issuer"]
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        doc = httpx.get(server.base_url + path).json()
        assert doc["resource"] == server.url
        assert doc["authorization_servers"] == [issuer]
        assert doc["scopes_supported"] == ["mcp:read"]
        assert doc["bearer_methods_supported"] == ["header"]


def test_raw_initialize_opens_a_session_answered_over_sse(server: MCPServerHandle, auth_server: Any) -> None:
    token = obtain_token(auth_server.base_url, server.url, "mcp:read")["access_token"]
    response = httpx.post(server.url, headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}, json=INIT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["mcp-session-id"]
    assert '"serverInfo"' in response.text and '"demo"' in response.text
    assert server.counters()["authorized"] == 1


async def test_sdk_client_calls_tools_with_a_real_token(server: MCPServerHandle, auth_server: Any) -> None:
    token = obtain_token(auth_server.base_url, server.url, "mcp:read")["access_token"]
    async with mcp_session(server.url, token) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert {"echo", "whoami", "slow_count"} <= tools

        echo = await session.call_tool("echo", {"text": "hello"})
        assert echo.content[0].text == "hello"  # type: ignore[union-attr]

        whoami = await session.call_tool("whoami", {})
        assert whoami.content[0].text == fingerprint(token)  # type: ignore[union-attr]

        start = time.monotonic()
        steps: list[tuple[float, float]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            steps.append((time.monotonic() - start, progress))

        counted = await session.call_tool("slow_count", {"n": 4, "delay": 0.3}, progress_callback=on_progress)
        finished = time.monotonic() - start
        assert counted.content[0].text == "counted 4"  # type: ignore[union-attr]
        assert [value for _, value in steps] == [1, 2, 3, 4]
        # The first step is reported while three more steps (0.9 s) are still to come.
        assert finished - steps[0][0] >= 0.3, (steps, finished)

    counters = server.counters()
    assert counters["tool_calls"] == 3
    assert counters["tokens_authorized"] == 1
    assert counters["last_authorized_token"] == fingerprint(token)
    assert counters["authorized"] == counters["requests"]


def test_token_for_another_resource_is_401(server: MCPServerHandle, auth_server: Any) -> None:
    other = server.base_url + "/elsewhere"
    token = obtain_token(auth_server.base_url, other, "mcp:read")["access_token"]
    response = httpx.post(server.url, headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}, json=INIT)
    assert response.status_code == 401
    assert challenge_params(response.headers["WWW-Authenticate"])["error"] == "invalid_token"
    assert server.counters()["rejected_audience"] == 1


def test_expired_token_is_401_and_counted(server: MCPServerHandle, auth_server: Any) -> None:
    auth_server.set_config(access_ttl=1)
    try:
        token = obtain_token(auth_server.base_url, server.url, "mcp:read")["access_token"]
    finally:
        auth_server.set_config(access_ttl=3600)
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}

    def refused() -> httpx.Response | None:
        response = httpx.post(server.url, headers=headers, json=INIT)
        return response if response.status_code == 401 else None

    response = wait_until(refused, timeout=10, interval=0.2, what="token expiry")
    assert challenge_params(response.headers["WWW-Authenticate"])["error"] == "invalid_token"
    assert server.counters()["rejected_expired"] == 1


def test_required_scope_is_403_insufficient_scope(auth_server: Any) -> None:
    with start_mcp_server(auth_server.base_url, required_scope="mcp:write", name="strict") as strict:
        read_only = obtain_token(auth_server.base_url, strict.url, "mcp:read")["access_token"]
        response = httpx.post(strict.url, headers={**MCP_HEADERS, "Authorization": f"Bearer {read_only}"}, json=INIT)
        assert response.status_code == 403
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer error="insufficient_scope", scope="mcp:write", resource_metadata="{strict.metadata_url}"'
        )
        both = obtain_token(auth_server.base_url, strict.url, "mcp:read mcp:write")["access_token"]
        response = httpx.post(strict.url, headers={**MCP_HEADERS, "Authorization": f"Bearer {both}"}, json=INIT)
        assert response.status_code == 200
        counters = strict.counters()
        assert (counters["rejected_scope"], counters["authorized"]) == (1, 1)
    assert strict.process.returncode == 0  # SIGTERM is a graceful stop


@pytest.mark.parametrize("habits,metadata_path", [
    (("resource_metadata_path_suffixed", "no_resource_metadata_in_401"), "/mcp/.well-known/oauth-protected-resource"),
    (("resource_metadata_root_only",), "/.well-known/oauth-protected-resource"),
    (("resource_trailing_slash",), "/.well-known/oauth-protected-resource/mcp"),
])
def test_habits_move_the_resource_metadata(habits: tuple[str, ...], metadata_path: str) -> None:
    with start_mcp_server("http://127.0.0.1:9", issuer="http://127.0.0.1:9/tenant", habits=habits) as srv:
        base = srv.base_url
        prm = httpx.get(base + metadata_path, timeout=10)
        assert prm.status_code == 200 and prm.json()["authorization_servers"] == ["http://127.0.0.1:9/tenant"]
        others = {"/mcp/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"}
        for path in others - {metadata_path}:
            assert httpx.get(base + path, timeout=10).status_code == 404
        header = httpx.post(base + "/mcp", json={}, timeout=10).headers["WWW-Authenticate"]
        if "no_resource_metadata_in_401" in habits:
            assert "resource_metadata" not in header
        else:
            assert f'resource_metadata="{base}{metadata_path}"' in header
        if "resource_trailing_slash" in habits:
            assert prm.json()["resource"] == base + "/mcp/"
            assert httpx.post(base + "/mcp/", json={}, timeout=10).status_code == 401  # served, not redirected
