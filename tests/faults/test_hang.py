"""A token endpoint that hangs for one server's resource (issue 6): nobody else notices."""

from __future__ import annotations

import time

from tests.faults import all_status, figure, oauth_servers, refreshes_at_as, resource_of, wait_all

HANG = 8.0


def lateness(entry: dict) -> float:
    """How late a refresh reached the AS after its 80 % mark, on the AS's own clock."""
    issued, expires = entry["prev_issued_at"], entry["prev_expires_at"]
    return float(entry["at"] - (issued + 0.8 * (expires - issued)))


def test_one_hanging_resource_leaves_logout_status_and_other_servers_alone(service_factory, mcp_server,
                                                                           auth_server):
    names = ["stuck", "ok1", "ok2"]
    others = names[1:]
    svc = service_factory(oauth_servers(mcp_server.url, names))
    for n in names:
        svc.login(n)
    auth_server.set_fault("hang", resource=resource_of(mcp_server.url, "stuck"), hang_seconds=HANG)
    svc.wait_status("stuck", lambda s: s["refresh_state"] == "refreshing", 5, "the stuck server's refresh hanging")
    hung = time.time()
    base = {n: s["refresh_count"] for n, s in all_status(svc).items()}
    # Status answers fast all through the hang, and the other servers keep refreshing on time.
    slowest = 0.0
    while time.time() < hung + 4.0:
        t0 = time.monotonic()
        st = all_status(svc)
        svc.status("ok1")
        slowest = max(slowest, time.monotonic() - t0)
        assert st["stuck"]["refresh_state"] == "refreshing", st["stuck"]
        time.sleep(0.1)
    wait_all(svc, others, lambda s: s["refresh_count"] >= base[s["name"]] + 2, 5, "two refreshes of the others")
    assert slowest < 1.0, f"a status call took {slowest:.2f}s during the hang"
    late = [lateness(e) for n in others for e in refreshes_at_as(auth_server.counters(), n, "ok", since=hung)]
    assert late and max(late) <= 0.5, late
    t0 = time.monotonic()
    r = svc.api("POST", "/api/v1/servers/stuck/logout")
    took = time.monotonic() - t0
    assert r.status_code == 200 and took < 3.0, (r.text, took)
    st = svc.status("stuck")
    assert (st["oauth_status"], st["user_logged_out"]) == ("none", True)
    assert all(s["oauth_status"] == "authenticated" for n, s in all_status(svc).items() if n in others)
    figure("hang: slowest status call during the hang, s", f"{slowest:.3f}")
    figure("hang: others' refresh lateness during the hang, max s", f"{max(late):.3f}")
    figure("hang: logout of the hanging server, s", f"{took:.3f}")


def test_hanging_resources_do_not_starve_the_other_servers_of_the_same_as(service_factory, mcp_server,
                                                                          auth_server):
    """Four servers share a resource whose backend hangs at the AS; two others of the same AS refresh on time."""
    stuck = [f"stuck{i}" for i in range(4)]
    free = ["free1", "free2"]
    shared = resource_of(mcp_server.url, "shared")
    servers = oauth_servers(mcp_server.url, free) + [
        {"name": n, "url": mcp_server.url, "oauth": {"extra_params": {"resource": shared}}} for n in stuck]
    svc = service_factory(servers)
    for n in stuck + free:
        svc.login(n)
    auth_server.set_fault("hang", resource=shared, hang_seconds=HANG)
    wait_all(svc, stuck, lambda s: s["refresh_state"] == "refreshing", 5, "the four shared-resource refreshes hanging")
    hung = time.time()
    base = {n: s["refresh_count"] for n, s in all_status(svc).items()}
    wait_all(svc, free, lambda s: s["refresh_count"] >= base[s["name"]] + 2, HANG / 2,
             "two refreshes of each free server while the four hang")
    late = [lateness(e) for n in free for e in refreshes_at_as(auth_server.counters(), n, "ok", since=hung)]
    figure("4 hanging resources: free servers' refresh lateness, max s", f"{max(late):.3f}")
    assert max(late) <= 0.5, late
