"""The fault suite (issue 6): real processes, the test AS's fault modes, signals, a damaged store.

Helpers shared by the fault families. Each server in these tests gets its own RFC 8707 resource
(`extra_params.resource`), so the test authorization server can aim a fault at one server and its
refresh log and grants say which server each request was for. The MCP server refuses tokens for
those resources, so `connected` is false here; no test below looks at it.

Measured figures are printed as `FIGURE <name>: <value>` lines: `pytest tests/faults -s | grep FIGURE`.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from tests.harness import ServiceHandle, wait_until


def resource_of(mcp_url: str, name: str) -> str:
    return f"{mcp_url}?server={name}"


def oauth_servers(mcp_url: str, names: list[str]) -> list[dict[str, Any]]:
    """Config entries: one OAuth server per name, all on the same test MCP server, each its own resource."""
    return [{"name": n, "url": mcp_url, "protocol": "http",
             "oauth": {"extra_params": {"resource": resource_of(mcp_url, n)}}} for n in names]


def server_of(resource: str | None) -> str | None:
    """The server name a resource (as the AS logs it) belongs to."""
    if not resource or "?server=" not in resource:
        return None
    return resource.rsplit("?server=", 1)[1]


def all_status(svc: ServiceHandle) -> dict[str, dict[str, Any]]:
    r = svc.api("GET", "/api/v1/servers")
    assert r.status_code == 200, r.text
    return {s["name"]: s for s in r.json()["data"]["servers"]}


def wait_all(svc: ServiceHandle, names: list[str], pred: Any, timeout: float, what: str) -> dict[str, dict[str, Any]]:
    """Waits until pred(status) holds for every named server; returns the statuses."""
    def check() -> dict[str, dict[str, Any]] | None:
        st = all_status(svc)
        return st if all(pred(st[n]) for n in names) else None

    return dict(wait_until(check, timeout, what, interval=0.1))


def named_pids(svc: ServiceHandle, title: str) -> list[int]:
    """PIDs of the service's processes named `title` (actors name themselves, see actors/base.py)."""
    out = []
    for pid in svc.pids():
        try:
            if psutil.Process(pid).name() == title:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def one_pid(svc: ServiceHandle, title: str, timeout: float = 10) -> int:
    pids = wait_until(lambda: named_pids(svc, title), timeout, f"the process named {title}")
    assert len(pids) == 1, f"{title}: {pids}"
    return int(pids[0])


def refreshes_at_as(counters: dict[str, Any], name: str, result: str | None = None,
                    since: float = 0.0) -> list[dict[str, Any]]:
    """The AS's refresh_log entries for one server (optionally one result) at or after `since` (wall clock)."""
    return [e for e in counters["refresh_log"] if server_of(e["resource"]) == name and e["at"] >= since
            and (result is None or e["result"] == result)]


def figure(name: str, value: Any) -> None:
    print(f"FIGURE {name}: {value}", flush=True)


def hold(seconds: float) -> None:
    """Keeps a fault window open for a measured time (the only sleep these tests allow themselves)."""
    time.sleep(seconds)
