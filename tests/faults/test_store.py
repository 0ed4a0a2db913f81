"""A damaged token store (issue 6): garbage over data.mdb, or a store from a newer mcpproxy.

The service starts anyway, says in its log what it did (moved the store aside), the servers need a
login, and everything else works.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import msgpack
import requests

from tests.faults import figure, oauth_servers
from tests.harness import ServiceHandle, open_store

NAMES = ["st1", "st2"]


def logged_in_then_stopped(service_factory, mcp_server) -> ServiceHandle:
    servers = [*oauth_servers(mcp_server.url, NAMES),
               {"name": "plain", "url": "http://127.0.0.1:9/mcp", "protocol": "http", "oauth": None}]
    svc = service_factory(servers)
    for n in NAMES:
        svc.login(n)
    svc.stop()
    return svc


def check_started_after_moving_aside(svc: ServiceHandle, why: str) -> Path:
    svc.start()
    log = svc.log_path.read_text(errors="replace")
    m = re.search(r"moved it to (\S+store\.unreadable-\S+) and started an empty store", log)
    assert m, log[-3000:]
    assert why in log, log[-3000:]
    aside = Path(m.group(1))
    assert aside.is_dir() and (aside / "data.mdb").exists()
    for n in NAMES:
        st = svc.status(n)
        assert (st["oauth_status"], st["action"]) == ("none", "login"), st
    # Everything else works: the API, health, metrics, the non-OAuth server, a new login and its refresh.
    assert svc.api("GET", "/api/v1/status").status_code == 200
    assert requests.get(svc.base_url + "/healthz", timeout=5).status_code == 200
    assert svc.api("GET", "/metrics").status_code == 200
    assert svc.status("plain")["is_oauth"] is False
    st = svc.login(NAMES[0])
    assert st["oauth_status"] == "authenticated"
    svc.wait_status(NAMES[0], lambda s: s["refresh_count"] >= 1, 10, "a refresh in the new store")
    store = svc.data_dir / "store"
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in store.iterdir())
    return aside


def test_garbage_over_the_store_file(service_factory, mcp_server, auth_server):
    svc = logged_in_then_stopped(service_factory, mcp_server)
    data = svc.data_dir / "store" / "data.mdb"
    size = data.stat().st_size
    data.write_bytes(os.urandom(size))
    aside = check_started_after_moving_aside(svc, "cannot open the token store")
    assert (aside / "data.mdb").stat().st_size == size
    figure("garbage store: moved aside to", aside.name)


def test_a_store_from_a_newer_schema(service_factory, mcp_server, auth_server):
    svc = logged_in_then_stopped(service_factory, mcp_server)
    store = open_store(svc.data_dir)
    with store.env.begin(write=True, db=store._meta) as txn:
        txn.put(b"schema_version", msgpack.packb(99))
    store.close()
    aside = check_started_after_moving_aside(svc, "written by a newer mcpproxy (schema 99")
    figure("future schema: moved aside to", aside.name)
