"""The gateway's token lease (docs/architecture.md "Token lease"): kept between requests, never past a logout the
gateway answered, replaced by a refresh before the old token expires, ended by time when no event comes."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from actors.messages import Published, TokenAnswer
from mcpproxy.gateway.lease import LEASE_MAX, Leases
from tests.cli.helpers import MCPPROXY, run
from tests.gateway.test_passthrough import MCP_HEADERS, mcp_session, raw_initialize, text_of
from tests.harness import ServiceHandle, free_port
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle

LONG_TTL = 120.0  # a lease that would outlive the test if nothing but time ended it
CALLERS = 3
WHOAMI = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}


# ---- the lease's rules, on their own ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_late_answer_never_revives_a_dropped_lease() -> None:
    clock = Clock()
    leases = Leases(clock)
    old = TokenAnswer("s", "old-token", 1, refresh_at=clock.now + 60)
    epoch = leases.epoch("s")  # an ask goes out…
    leases.on_event(Published(1, "oauth.logout", {"server_name": "s"}, clock.now))  # …the logout's event overtakes it
    assert not leases.offer("s", old, epoch) and leases.get("s") is None
    fence = leases.fence("s")
    leases.cut("s")  # a logout through the gateway: an answer asked for before it is not even used
    assert leases.fence("s") != fence
    leases.on_event(Published(2, "servers.changed", {"name": "other"}, clock.now))
    new = TokenAnswer("s", "new-token", 2, refresh_at=clock.now + 60)
    assert leases.offer("s", new, leases.epoch("s")) and leases.get("s") == new


def test_a_lease_ends_by_time_when_no_announcement_comes() -> None:
    clock = Clock()
    leases = Leases(clock)
    assert leases.offer("s", TokenAnswer("s", "t", 1, refresh_at=clock.now + 5), leases.epoch("s"))
    clock.now += 4.9
    assert leases.get("s") is not None
    clock.now += 0.1  # the token's refresh point
    assert leases.get("s") is None
    # No end known (a token without expiry): at most LEASE_MAX; an end already past: not kept at all.
    assert leases.offer("s", TokenAnswer("s", "t", 2, refresh_at=None), leases.epoch("s"))
    clock.now += LEASE_MAX
    assert leases.get("s") is None
    assert not leases.offer("s", TokenAnswer("s", "t", 3, refresh_at=clock.now), leases.epoch("s"))


# ---- against the real service ----------------------------------------------------------------------


@dataclass
class Call:
    started: float
    status: int


class Callers:
    """CALLERS threads calling whoami through the proxy back to back, each call's start time and status kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sids = [raw_initialize(url) for _ in range(CALLERS)]  # a session each: ids never collide
        self.calls: list[Call] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(sid,), daemon=True) for sid in self.sids]
        for t in self.threads:
            t.start()

    def run(self, sid: str) -> None:
        http = requests.Session()
        headers = {**MCP_HEADERS, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
        for n in itertools.count(100):
            if self.stop.is_set():
                return
            started = time.time()
            r = http.post(self.url, headers=headers, json={**WHOAMI, "id": n}, timeout=30)
            self.calls.append(Call(started, r.status_code))

    def wait_for(self, n: int, status: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for c in list(self.calls) if c.status == status) < n:
            assert time.monotonic() < deadline, f"fewer than {n} calls answered {status}: {self.calls[-5:]}"
            time.sleep(0.05)

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def metric(svc: ServiceHandle, name: str) -> int:
    line = next(x for x in svc.api("GET", "/metrics").text.splitlines() if x.startswith(name + " "))
    return int(float(line.split()[1]))


def old_token_after(mcp: MCPServerHandle, fp: str, moment: float) -> int:
    """How many requests reached the MCP server carrying token `fp` after `moment`."""
    return sum(1 for at, seen in mcp.counters()["token_log"] if seen == fp and at > moment)


def test_no_request_after_a_logout_answer_carries_the_old_token(
        service: ServiceHandle, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=LONG_TTL)
    for _ in range(2):  # logged out, then in again: the lease follows the new session too
        service.login("demo")
        url = f"{service.base_url}/mcp/demo"
        asks = metric(service, "mcpproxy_token_asks_total")
        callers = Callers(url)
        try:
            callers.wait_for(30, 200)
            old = mcp_server.counters()["last_authorized_token"]
            # The calls rode on the lease: a handful of asks (one per caller at most), not one per call.
            assert metric(service, "mcpproxy_token_asks_total") - asks <= CALLERS + 1
            assert metric(service, "mcpproxy_token_lease_hits_total") >= 25
            r = service.api("POST", "/api/v1/servers/demo/logout")
            answered = time.time()
            assert r.status_code == 200, r.text
            callers.wait_for(20, 401)  # the calls go on, refused for want of a login
        finally:
            callers.end()
        late = [c for c in callers.calls if c.started > answered]
        assert len(late) >= 20 and all(c.status == 401 for c in late), late[:5]
        # Only a call already past its token when the logout was answered may still arrive with it.
        assert old_token_after(mcp_server, old, answered) <= CALLERS


async def test_a_refresh_replaces_the_lease_before_the_old_token_expires(
        service: ServiceHandle, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=3.0)  # refreshed at 2.4 s
    service.login("demo")
    mcp_server.reset_counters()
    hits = metric(service, "mcpproxy_token_lease_hits_total")
    used: list[str] = []
    async with mcp_session(f"{service.base_url}/mcp/demo") as session:
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            used.append(text_of(await session.call_tool("whoami", {})))
            await asyncio.sleep(0.05)  # the call rate under test
    counters = mcp_server.counters()
    # Never an expired or replaced token upstream: each lease ended at its token's refresh point or event.
    assert counters["rejected_expired"] == counters["rejected_invalid"] == 0, counters
    switches = sum(1 for a, b in zip(used, used[1:], strict=False) if a != b)
    assert switches >= 2 and len(set(used)) == switches + 1, used  # each token used in one stretch, then never
    assert metric(service, "mcpproxy_token_lease_hits_total") - hits >= len(used) // 2


def test_cli_logout_goes_through_the_service_that_owns_the_data_dir(
        service: ServiceHandle, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle, tmp_path: Path) -> None:
    """A CLI whose config names another address (the service was started with --listen, say) used to log out
    standalone behind the running service's back: the actor and the gateway's lease kept the old token."""
    auth_server.set_config(access_ttl=LONG_TTL)
    service.login("demo")
    url = f"{service.base_url}/mcp/demo"
    sid = raw_initialize(url)
    headers = {**MCP_HEADERS, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
    call = {**WHOAMI, "params": {"name": "whoami", "arguments": {}}}
    assert requests.post(url, headers=headers, json=call, timeout=30).status_code == 200  # the lease is taken
    old = mcp_server.counters()["last_authorized_token"]
    other = tmp_path / "elsewhere.json"  # the same data dir, another address
    other.write_text(json.dumps({**json.loads(service.config_path.read_text()), "listen": f"127.0.0.1:{free_port()}"}))

    # A second service on the same data dir refuses to start, naming the first.
    second = subprocess.run([MCPPROXY, "serve", "--config", str(other)], capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and f"(pid {service.proc.pid if service.proc else 0}," in second.stderr, second

    # The owner does not answer: the CLI refuses rather than write the store behind its back.
    assert service.proc is not None
    os.kill(service.proc.pid, signal.SIGSTOP)
    try:
        r = run([MCPPROXY, "auth", "logout", "-s", "demo", "--config", str(other)], timeout=60)
    finally:
        os.kill(service.proc.pid, signal.SIGCONT)
    assert r.returncode == 1 and "owns" in r.stderr and "did not answer" in r.stderr, r
    assert service.status("demo")["token_held"] is True

    r = run([MCPPROXY, "auth", "logout", "-s", "demo", "--config", str(other)], timeout=60)
    answered = time.time()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Logged out of 'demo': token deleted and revoked at the authorization server."
    reply = requests.post(url, headers=headers, json=call, timeout=30)
    assert reply.status_code == 401 and "needs a login" in reply.json()["error"]["message"]
    assert old_token_after(mcp_server, old, answered) == 0
    assert service.status("demo")["user_logged_out"] is True
