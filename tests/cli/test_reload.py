"""Config reload without a restart: servers added and removed while the others keep refreshing."""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle, wait_until, write_config
from tests.mcpserver.control import MCPServerHandle


def _edit(svc: ServiceHandle, servers: list[dict[str, Any]]) -> None:
    write_config(svc.data_dir, svc.port, servers)


def _known(svc: ServiceHandle) -> set[str]:
    return {s["name"] for s in svc.api("GET", "/api/v1/servers").json()["data"]["servers"]}


def _refreshes(svc: ServiceHandle, name: str, more_than: int) -> int:
    return int(svc.wait_status(name, lambda s: s["refresh_count"] > more_than, 15,
                               f"{name} refreshing past {more_than}")["refresh_count"])


def test_reload_adds_and_removes_servers_while_others_keep_refreshing(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle) -> None:
    a = {"name": "alpha", "url": mcp_server.url, "protocol": "http", "oauth": {}}
    b = {"name": "beta", "url": mcp_server.url, "protocol": "http", "oauth": {}}
    svc = service_factory([a])
    svc.login("alpha")
    n = _refreshes(svc, "alpha", 0)

    _edit(svc, [a, b])
    wait_until(lambda: "beta" in _known(svc), 15, "beta added by the reload")
    svc.wait_status("beta", lambda s: s["is_oauth"] and s["action"] == "login", 10, "beta's actor")
    assert svc.login("beta")["oauth_status"] == "authenticated"
    n = _refreshes(svc, "alpha", n)
    _refreshes(svc, "beta", 0)

    _edit(svc, [b])
    wait_until(lambda: _known(svc) == {"beta"}, 15, "alpha removed by the reload")
    assert svc.api("GET", "/api/v1/servers/alpha").status_code == 404
    m = _refreshes(svc, "beta", svc.status("beta")["refresh_count"])

    # A broken edit is reported (file and field) and the running set kept.
    svc.config_path.write_text('{"listen": 5}')
    wait_until(lambda: "listen: expected a string" in svc.logs(), 10, "the broken edit in the log")
    assert str(svc.config_path) in next(x for x in svc.logs().splitlines() if "listen: expected a string" in x)
    doc = {"listen": f"127.0.0.1:{svc.port}", "data_dir": str(svc.data_dir), "api_key": svc.api_key,
           "mcpServers": [b, {"name": "gamma", "url": "http://example.com/mcp"}]}
    svc.config_path.write_text(json.dumps(doc))
    wait_until(lambda: "mcpServers[1] (gamma).url" in svc.logs(), 10, "the broken server in the log")
    assert _known(svc) == {"beta"}
    _refreshes(svc, "beta", m)

    # alpha comes back with its stored token: removing a server does not log it out.
    _edit(svc, [a, b])
    wait_until(lambda: "alpha" in _known(svc), 15, "alpha added again")
    svc.wait_status("alpha", lambda s: s["oauth_status"] == "authenticated", 15, "alpha back, still logged in")
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config reload (SIGHUP): nothing changed" in svc.logs(), 10, "the SIGHUP reload")
    assert svc.proc.poll() is None
