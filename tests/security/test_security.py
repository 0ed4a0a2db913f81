"""Security (docs/architecture.md "Security", issue 6): who can reach the service, what it refuses, what it never lets out.

Every test drives the real `mcpproxy serve` on loopback; docs/security.md points at each of them.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import os
import re
import secrets
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest
import requests

from tests.conftest import ServiceFactory
from tests.harness import MCPPROXY, ServiceHandle, free_port, wait_until, write_config
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle

EVIL = "http://evil.example"
INITIALIZE = ('{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", '
              '"capabilities": {}, "clientInfo": {"name": "leak-test", "version": "0"}}}')


# ---- who can reach it ----------------------------------------------------------------------------


def _inet_sockets(pids: list[int]) -> list[tuple[int, Any]]:
    out = []
    for pid in pids:
        try:
            out += [(pid, c) for c in psutil.Process(pid).net_connections(kind="inet")]
        except psutil.NoSuchProcess:
            continue
    return out


def test_only_the_gateway_listens_and_only_on_loopback(service: ServiceHandle) -> None:
    service.login("demo")  # the OAuth worker actors exist now too
    pids = service.pids()
    assert len(pids) > 1, f"expected the service and its actor processes, got {pids}"
    conns = _inet_sockets(pids)
    listening = sorted((pid, c.laddr.ip, c.laddr.port) for pid, c in conns if c.status == psutil.CONN_LISTEN)
    assert listening == [(service.proc.pid if service.proc else -1, "127.0.0.1", service.port)], (
        f"listening sockets of the service's processes: {listening} (only the gateway on 127.0.0.1 expected; "
        "Thespian's TCP base would add one per actor on 0.0.0.0)")
    udp = [(pid, c.laddr) for pid, c in conns if c.type == socket.SOCK_DGRAM and c.laddr]
    assert not udp, f"bound UDP sockets: {udp}"
    foreign = [(pid, c.laddr, c.raddr) for pid, c in conns if c.laddr and c.laddr.ip not in ("127.0.0.1", "::1")]
    named_unix = []  # socketpairs between the processes are fine; a socket with a path is reachable by others
    for pid in pids:
        try:
            named_unix += [(pid, c.laddr) for c in psutil.Process(pid).net_connections(kind="unix") if c.laddr]
        except psutil.NoSuchProcess:
            continue
    assert not named_unix, f"Unix sockets bound to a path: {named_unix}"
    assert not foreign, f"sockets off loopback: {foreign}"


@pytest.mark.parametrize(("how", "host"), [("flag", "0.0.0.0"), ("env", "0.0.0.0"), ("config", "0.0.0.0"),
                                           ("flag", "[::]"), ("config", "192.0.2.10")])
def test_non_loopback_listen_without_api_key_is_refused(tmp_path: Path, how: str, host: str) -> None:
    port = free_port()
    listen = f"{host}:{port}"
    extra: dict[str, Any] = {"listen": listen} if how == "config" else {}
    config = write_config(tmp_path, port, [], api_key=None, **extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPPROXY_")}
    args = [MCPPROXY, "serve", "--config", str(config)]
    if how == "flag":
        args += ["--listen", listen]
    elif how == "env":
        env["MCPPROXY_LISTEN"] = listen
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, start_new_session=True)
    assert done.returncode == 2, f"exit {done.returncode}; stderr:\n{done.stderr[-2000:]}"
    assert "listen" in done.stderr and "api_key" in done.stderr, done.stderr
    assert not (tmp_path / "store").exists(), "the store was opened before the listen address was checked"
    assert not (tmp_path / "api_key").exists(), "an API key was generated for a service that refused to start"


# ---- Host and Origin -----------------------------------------------------------------------------


def test_foreign_host_is_misdirected_everywhere(service: ServiceHandle) -> None:
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host: evil.example:PORT."""
    port = service.port
    wrong = []
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", f"localhost.evil.example:{port}", ""):
        for method, path in (("GET", "/api/v1/status"), ("GET", "/api/v1/servers/demo"),
                             ("POST", "/api/v1/servers/demo/logout"), ("GET", "/events"), ("GET", "/metrics"),
                             ("GET", "/"), ("GET", "/oauth/callback?state=x&code=y"), ("POST", "/mcp/demo"),
                             ("GET", "/api/v1/openapi.json")):
            r = service.api(method, path, headers={"Host": host}, timeout=10)
            if r.status_code != 421:
                wrong.append(f"{method} {path} Host={host!r} → {r.status_code}")
    assert not wrong, "requests with a foreign Host were served:\n" + "\n".join(wrong)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert service.api("GET", "/api/v1/status", headers={"Host": host}).status_code == 200


def test_cross_origin_requests_change_nothing(service: ServiceHandle) -> None:
    svc = service
    svc.login("demo")
    events = svc.events()
    before = svc.status("demo")
    assert before["oauth_status"] == "authenticated"
    refused = []
    for origin in (EVIL, f"http://127.0.0.1:{svc.port + 1}", f"http://localhost:{svc.port + 1}",
                   "http://localhost.evil.example"):
        for path in ("/api/v1/servers/demo/logout", "/api/v1/servers/logout", "/api/v1/servers/demo/login",
                     "/api/v1/servers/demo/refresh"):
            r = svc.api("POST", path, headers={"Origin": origin})
            if r.status_code != 403 or r.json()["success"] is not False:
                refused.append(f"POST {path} Origin={origin} → {r.status_code}")
        # A cross-origin HTML form: urlencoded body, the key guessed into the query string.
        r = requests.post(f"{svc.base_url}/api/v1/servers/demo/logout?apikey={svc.api_key}",
                          data={"x": "1"}, headers={"Origin": origin}, timeout=10)
        if r.status_code != 403:
            refused.append(f"form POST logout Origin={origin} → {r.status_code}")
        r = svc.api("GET", "/events", headers={"Origin": origin}, timeout=10, stream=True)
        if r.status_code != 403:
            refused.append(f"GET /events Origin={origin} → {r.status_code}")
        r.close()
    assert not refused, "cross-origin requests not refused:\n" + "\n".join(refused)

    # Same-origin (the Web UI) still works: its refresh arrives as an event, and no logout came before it.
    r = svc.api("POST", "/api/v1/servers/demo/refresh", headers={"Origin": svc.base_url})
    assert r.status_code == 200, r.text
    events.wait_for(lambda e: e.event == "oauth.token_refreshed", 15, "oauth.token_refreshed")
    after = svc.status("demo")
    assert after["oauth_status"] == "authenticated" and not after["user_logged_out"], after
    assert not events.named("oauth.logout"), "a cross-origin request logged the server out"

    # Reading is refused by the browser, not granted by us: no CORS header for a foreign origin.
    for method in ("GET", "OPTIONS"):
        r = svc.api(method, "/api/v1/status", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in r.headers, (method, dict(r.headers))


def test_opaque_origin_cannot_reach_the_pass_through(service: ServiceHandle) -> None:
    # A sandboxed iframe or a data: page sends `Origin: null`. /mcp needs no key on loopback, so the Origin
    # check is all that stands between such a page and a tool call made with the user's token. The request is
    # a CORS "simple request" (text/plain, safelisted Accept): a browser sends it without a preflight.
    service.login("demo")
    for origin in ("null", EVIL):
        r = requests.post(f"{service.base_url}/mcp/demo", data=INITIALIZE, timeout=30,
                          headers={"Origin": origin, "Content-Type": "text/plain",
                                   "Accept": "application/json, text/event-stream"})
        assert r.status_code == 403, f"POST /mcp/demo with Origin {origin} → {r.status_code} {r.text[:200]}"


# ---- the API key ---------------------------------------------------------------------------------


KEYED_ROUTES = [
    ("GET", "/api/v1/status"), ("GET", "/api/v1/servers"), ("GET", "/api/v1/servers/demo"),
    ("POST", "/api/v1/servers/demo/login"), ("POST", "/api/v1/servers/demo/logout"),
    ("POST", "/api/v1/servers/logout"), ("POST", "/api/v1/servers/demo/refresh"),
    ("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/nope"), ("GET", "/metrics"), ("GET", "/events"),
]


def test_api_key_is_required_and_checked(service: ServiceHandle) -> None:
    svc = service
    key = svc.api_key
    bad_keys = ["", "wrong", key[:-1], key[1:], key + "x", key.upper(), "x" * len(key)]
    wrong = []
    for method, path in KEYED_ROUTES:
        tries: list[tuple[str, dict[str, str], str]] = [("no key", {}, "")]
        for bad in bad_keys:
            tries += [(f"X-API-Key {bad!r}", {"X-API-Key": bad}, ""),
                      (f"Bearer {bad!r}", {"Authorization": f"Bearer {bad}"}, ""),
                      (f"?apikey={bad!r}", {}, f"?apikey={bad}")]
        tries.append(("Basic auth", {"Authorization": "Basic " + base64.b64encode(f"x:{key}".encode()).decode()}, ""))
        for what, headers, query in tries:
            r = requests.request(method, svc.base_url + path + query, headers=headers, timeout=10, stream=True)
            body = r.raw.read(4096).decode(errors="replace")
            r.close()
            if r.status_code != 401 or '"success": false' not in body:
                wrong.append(f"{method} {path} with {what} → {r.status_code}")
            elif key in body:
                wrong.append(f"{method} {path} with {what}: the 401 echoes the key")
    assert not wrong, "requests without the right key were not refused:\n" + "\n".join(wrong)
    assert svc.status("demo")["user_logged_out"] is False

    for what, headers, query in (("X-API-Key", {"X-API-Key": key}, ""),
                                 ("Bearer", {"Authorization": f"Bearer {key}"}, ""),
                                 ("bearer, lower case", {"Authorization": f"bearer {key}"}, ""),
                                 ("?apikey=", {}, f"?apikey={key}")):
        for path in ("/api/v1/status", "/metrics", "/events"):
            r = requests.get(svc.base_url + path + query, headers=headers, timeout=10, stream=True)
            r.close()
            assert r.status_code == 200, f"GET {path} with the key as {what} → {r.status_code}"

    for path in ("/healthz", "/readyz", "/", "/oauth/callback"):
        assert requests.get(svc.base_url + path, timeout=10).status_code != 401, f"{path} should need no key"


def test_api_key_is_compared_in_constant_time() -> None:
    from mcpproxy.gateway import app

    source = inspect.getsource(app.security)
    assert "hmac.compare_digest(" in source
    assert not re.search(r"key\s*[!=]=\s*request\.app\[API_KEY\]|request\.app\[API_KEY\]\s*[!=]=", source)


# ---- secrets never leave -------------------------------------------------------------------------


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


VERIFIER_CHARS = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


class Haystacks:
    """Everything the service let out during the session, by where it came from."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.items.append((where, text))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)


def _leaks(haystacks: Haystacks, secrets_: dict[str, str], challenges: set[str]) -> list[str]:
    found = []
    for where, text in haystacks:
        for secret, what in secrets_.items():
            for piece in {secret, secret[:16], secret[-16:]}:
                if piece in text:
                    found.append(f"{what} ({'whole' if piece == secret else 'part'}) in {where}")
                    break
        for word in set(VERIFIER_CHARS.findall(text)):  # a PKCE verifier: its S256 is a challenge we saw
            if _s256(word) in challenges:
                found.append(f"a PKCE code verifier in {where}")
    return found


def test_no_secret_leaves_the_service(auth_server: OAuthServerHandle, mcp_server: MCPServerHandle,
                                      service_factory: ServiceFactory) -> None:
    conf_secret = "conf-secret-" + secrets.token_urlsafe(24)
    svc = service_factory([], start=False)
    auth_server.add_client("conf-client", conf_secret, [f"{svc.base_url}/oauth/callback"])
    write_config(svc.data_dir, svc.port, [
        {"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}},
        {"name": "conf", "url": mcp_server.url, "protocol": "http",
         "oauth": {"client_id": "conf-client", "client_secret": conf_secret}},
        {"name": "plain", "url": "http://127.0.0.1:9/mcp", "protocol": "http", "oauth": None},
    ])
    svc.start()
    seen = Haystacks()
    challenges: set[str] = set()

    def call(method: str, path: str, **kw: Any) -> requests.Response:
        r = svc.api(method, path, **kw)
        seen.add(f"answer to {method} {path}", f"{r.status_code} {dict(r.headers)} {r.text}")
        return r

    def login(name: str) -> None:
        r = call("POST", f"/api/v1/servers/{name}/login", json={"open_browser": False})
        assert r.status_code == 200, r.text
        auth_url = r.json()["data"]["auth_url"]
        challenges.add(parse_qs(urlsplit(auth_url).query)["code_challenge"][0])
        to_callback = requests.get(auth_url, allow_redirects=False, timeout=10)
        assert to_callback.status_code == 302, to_callback.text
        callback_url = to_callback.headers["Location"]
        for attempt in ("first", "replayed"):  # the replay carries a real, used code: it must not echo it
            page = requests.get(callback_url, timeout=60)
            assert page.status_code == (200 if attempt == "first" else 400), page.text
            seen.add(f"{attempt} callback page for {name}", f"{page.status_code} {dict(page.headers)} {page.text}")

    events = svc.events()
    login("demo")
    login("conf")
    for name in ("demo", "conf"):  # the pass-through adds the token upstream; it must not come back out
        r = requests.post(f"{svc.base_url}/mcp/{name}", data=INITIALIZE, timeout=30,
                          headers={"Accept": "application/json, text/event-stream", "Content-Type": "application/json"})
        seen.add(f"pass-through answer from {name}", f"{r.status_code} {dict(r.headers)} {r.text}")
    wait_until(lambda: call("GET", "/api/v1/servers/demo").json()["data"]["refresh_count"] >= 2, 20,
               "two background refreshes of demo", interval=0.3)
    assert call("POST", "/api/v1/servers/demo/refresh").status_code == 200
    assert call("POST", "/api/v1/servers/demo/logout").status_code == 200
    events.wait_for(lambda e: e.event == "oauth.logout", 10, "oauth.logout")
    login("demo")
    auth_server.set_fault("invalid_grant", count=1)
    failed = events.wait_for(lambda e: e.event == "oauth.refresh_failed", 20, "oauth.refresh_failed")
    name = failed.data["payload"]["server_name"]
    svc.wait_status(name, lambda s: s["action"] == "login", 10, f"{name} needing a login")
    assert call("POST", f"/api/v1/servers/{name}/refresh").status_code == 409
    forged = requests.get(f"{svc.base_url}/oauth/callback?state={secrets.token_urlsafe(16)}&code=forged", timeout=10)
    seen.add("callback page for an unknown state", forged.text)

    for path in ("/api/v1/status", "/api/v1/servers", "/api/v1/servers/demo", "/api/v1/servers/conf",
                 "/api/v1/servers/plain", "/api/v1/openapi.json", "/metrics", "/api/v1/nope"):
        call("GET", path)
    call("GET", f"/api/v1/status?apikey={svc.api_key}", headers={"X-API-Key": ""})
    call("GET", "/api/v1/status", headers={"X-API-Key": "", "Authorization": f"Bearer {svc.api_key}"})

    # The Web UI: the page (also when opened with ?apikey=) and every asset it references.
    for query in ("", f"?apikey={svc.api_key}"):
        page = requests.get(f"{svc.base_url}/{query}", timeout=10)
        assert page.status_code in (200, 503), page.status_code
        seen.add(f"Web UI page /{query and '?apikey=…'}", page.text)
    assets = sorted(set(re.findall(r"""(?:src|href)=["'](/assets/[^"'?#]+)""", page.text)))
    if page.status_code == 200:
        assert assets, "the Web UI page references no /assets/ file"
    for asset in assets:
        r = requests.get(svc.base_url + asset, timeout=10)
        assert r.status_code == 200, asset
        seen.add(f"Web UI asset {asset}", r.text)

    assert call("POST", "/api/v1/servers/logout").status_code == 200
    for name in ("demo", "conf"):
        svc.wait_status(name, lambda s: s["user_logged_out"], 10, f"{name} logged out")
    svc.stop()  # flushes every log line, shutdown included

    for ev in events.events:
        seen.add(f"SSE event {ev.event} #{ev.id}", repr(ev.data))
    seen.add("the service's output (stdout+stderr)", svc.logs())
    for f in sorted(svc.data_dir.glob("mcpproxy.log*")):
        seen.add(f"log file {f.name}", f.read_text(errors="replace"))

    issued = auth_server.issued()
    assert len(issued["access_tokens"]) >= 6 and len(issued["refresh_tokens"]) >= 6 and len(issued["codes"]) >= 3, \
        {k: len(v) for k, v in issued.items()}
    assert len(challenges) == 3
    found: dict[str, str] = {svc.api_key: "the API key", conf_secret: "the configured client secret"}
    for kind in ("access_tokens", "refresh_tokens", "codes", "client_secrets"):
        for i, value in enumerate(issued[kind]):
            if value:
                found[value] = f"{kind[:-1].replace('_', ' ')} #{i}"
    leaks = _leaks(seen, found, challenges)
    assert not leaks, "secrets leaked:\n" + "\n".join(sorted(set(leaks)))
    assert any(w.startswith("SSE event oauth.refresh_failed") for w, _ in seen)


def test_the_leak_scanner_finds_what_it_looks_for() -> None:
    verifier = secrets.token_urlsafe(48)
    token = secrets.token_urlsafe(32)
    seen = Haystacks()
    seen.add("log", f"refreshing with {token[:20]}…")
    seen.add("event", f'{{"verifier": "{verifier}"}}')
    seen.add("clean", "nothing here " + secrets.token_urlsafe(48))
    leaks = _leaks(seen, {token: "access token #0"}, {_s256(verifier)})
    assert leaks == ["access token #0 (part) in log", "a PKCE code verifier in event"]


# ---- files at rest -------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _check_private(data_dir: Path, when: str) -> None:
    store = data_dir / "store"
    modes = {"data dir": (data_dir, 0o700), "store folder": (store, 0o700),
             "store data.mdb": (store / "data.mdb", 0o600), "store lock.mdb": (store / "lock.mdb", 0o600),
             "api_key": (data_dir / "api_key", 0o600), "log file": (data_dir / "mcpproxy.log", 0o600)}
    wrong = [f"{what} {path} is {oct(_mode(path))}, expected {oct(want)}"
             for what, (path, want) in modes.items() if _mode(path) != want]
    others = [f"{f.name} is {oct(_mode(f))}" for f in store.iterdir() if _mode(f) & 0o077]
    assert not wrong and not others, f"{when}: " + "; ".join(wrong + others)


def _start_with_umask(svc: ServiceHandle, umask: int) -> None:
    old = os.umask(umask)  # the child inherits it: the modes must not depend on the user's umask
    try:
        svc.start()
    finally:
        os.umask(old)


def test_data_dir_store_and_key_are_private_also_after_a_crash(service_factory: ServiceFactory,
                                                                mcp_server: MCPServerHandle) -> None:
    svc = service_factory([{"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}}],
                          api_key=None, start=False)
    os.chmod(svc.data_dir, 0o755)
    _start_with_umask(svc, 0)
    key = (svc.data_dir / "api_key").read_text().strip()
    assert len(key) >= 32
    svc.api_key = key
    svc.login("demo")
    _check_private(svc.data_dir, "after the first start and a login")

    svc.kill9()
    _check_private(svc.data_dir, "after kill -9")
    _start_with_umask(svc, 0)
    assert svc.status("demo")["is_oauth"]  # the store opened; whether the token survived is tests/faults' business
    _check_private(svc.data_dir, "after kill -9 and a restart")

    # Loosened by hand (a backup restore, a careless chmod): the next start makes them private again.
    svc.kill9()
    os.chmod(svc.data_dir, 0o755)
    os.chmod(svc.data_dir / "store", 0o755)
    os.chmod(svc.data_dir / "store" / "data.mdb", 0o644)
    _start_with_umask(svc, 0)
    _check_private(svc.data_dir, "after a restart with loosened modes")
    assert svc.api("GET", "/api/v1/status").status_code == 200

