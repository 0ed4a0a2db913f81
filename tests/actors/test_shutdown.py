"""SIGTERM stops every process promptly, even while an OAuth request hangs on a dead server."""

from __future__ import annotations

import time


def test_sigterm_during_a_hanging_refresh_leaves_no_process(service, auth_server):
    service.login("demo")
    auth_server.set_fault("hang", hang_seconds=30)
    service.wait_status("demo", lambda s: s["refresh_state"] == "refreshing", 10, "a refresh hanging")
    t0 = time.monotonic()
    service.stop(timeout=10)  # asserts that no process is left behind
    assert time.monotonic() - t0 < 10
