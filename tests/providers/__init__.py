"""Real providers' habits (issue 11, docs/providers.md): each habit is a mode of the test authorization
server (tests/oauthserver/README.md "Habits"), and each test logs in through the real service, lets at
least two refreshes happen, and calls a tool through `/mcp/NAME`.

Helpers shared by the provider test files.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from tests.harness import ServiceHandle, wait_until
from tests.oauthserver.control import OAuthServerHandle

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = "2025-06-18"


def one_server(mcp_url: str, name: str, **oauth: Any) -> list[dict[str, Any]]:
    """The config of one discovered OAuth server (oauth settings as given)."""
    return [{"name": name, "url": mcp_url, "protocol": "http", "oauth": dict(oauth)}]


def rpc_result(r: requests.Response) -> dict[str, Any]:
    """The JSON-RPC message of an answer, JSON or SSE."""
    assert r.status_code == 200, (r.status_code, r.text[:500])
    if r.headers.get("Content-Type", "").startswith("text/event-stream"):
        data = next(line[5:].strip() for line in r.text.splitlines() if line.startswith("data:"))
        return dict(json.loads(data))
    return dict(r.json())


def call_tool(svc: ServiceHandle, name: str, tool: str = "whoami", arguments: dict[str, Any] | None = None) -> str:
    """An MCP client through `/mcp/NAME`: initialize, then one tool call; fails on any error it would see."""
    url = f"{svc.base_url}/mcp/{name}"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "provider-habits", "version": "0"}}}
    r = requests.post(url, headers=MCP_HEADERS, json=init, timeout=60)
    assert "error" not in rpc_result(r), r.text[:500]
    headers = {**MCP_HEADERS, "Mcp-Session-Id": r.headers["Mcp-Session-Id"], "MCP-Protocol-Version": PROTOCOL}
    r = requests.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                      timeout=60)
    assert r.status_code == 202, (r.status_code, r.text[:500])
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments or {}}}
    msg = rpc_result(requests.post(url, headers=headers, json=call, timeout=60))
    assert "error" not in msg and not msg["result"].get("isError"), msg
    return str(msg["result"]["content"][0]["text"])


def refreshed(svc: ServiceHandle, name: str, at_least: int, timeout: float = 30) -> dict[str, Any]:
    return svc.wait_status(name, lambda s: s["refresh_count"] >= at_least, timeout,
                           f"{at_least} refreshes of {name}")


def refresh_results(auth: OAuthServerHandle, since: float = 0.0) -> list[str]:
    """The AS's verdict on every refresh request since `since` (wall clock), in order."""
    return [e["result"] for e in auth.counters()["refresh_log"] if e["at"] >= since]


def refresh_attempts_stay(auth: OAuthServerHandle, seconds: float) -> int:
    """No further refresh request reaches the AS for `seconds` (several token lifetimes: no loop)."""
    before = int(auth.counters()["grants"]["refresh_token"])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert auth.counters()["grants"]["refresh_token"] == before, "a refresh was tried again"
        time.sleep(0.25)
    return before


def wait_past_expiry(auth: OAuthServerHandle, margin: float = 0.3) -> None:
    """Until the newest access token the AS issued has expired (the AS's own clock)."""
    exp = max(g["last_expires_at"] or 0 for g in auth.grants())
    wait_until(lambda: time.time() > exp + margin, exp - time.time() + 10, "the access token to expire")
