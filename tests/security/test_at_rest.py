"""Tokens sealed at rest (issue 12.3, 12.4; docs/security.md "Tokens at rest"), with the real service, the real
test authorization server, and a real Secret Service (gnome-keyring-daemon under dbus-run-session)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psutil

from mcpproxy.store import TokenStore
from tests.cli.helpers import CTL, run
from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle, key_file_of, open_store
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle

SECRET_SERVICE = "keyring.backends.SecretService.Keyring"


# ---- helpers ---------------------------------------------------------------------------------------


def issued_secrets(auth_server: OAuthServerHandle) -> dict[str, str]:
    """Every token, code and client secret the test authorization server issued, with a label each."""
    issued = auth_server.issued()
    out = {}
    for kind in ("access_tokens", "refresh_tokens", "codes", "client_secrets"):
        for i, value in enumerate(issued[kind]):
            if value:
                out[value] = f"{kind[:-1].replace('_', ' ')} #{i}"
    return out


def scan(data_dir: Path, wanted: dict[str, str]) -> list[str]:
    """Every issued secret found in any file under the data dir, as "label in file".

    The config file is left out: the harness writes it into the data dir, and the configured client secret in
    it is the user's own writing, not something mcpproxy stores."""
    found = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and p.name != "mcp_config.json"):
        data = path.read_bytes()
        found += [f"{label} in {path.relative_to(data_dir)}" for value, label in wanted.items()
                  if value.encode() in data]
    return found


def two_servers(svc: ServiceHandle, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    """demo (discovered and registered) and conf (a configured confidential client, its secret in the record)."""
    conf_secret = "conf-secret-" + secrets.token_urlsafe(24)
    auth_server.add_client("conf-client", conf_secret, [f"{svc.base_url}/oauth/callback"])
    doc = json.loads(svc.config_path.read_text())
    doc["mcpServers"] = [
        {"name": "demo", "url": mcp_server.url, "oauth": {}},
        {"name": "conf", "url": mcp_server.url, "oauth": {"client_id": "conf-client", "client_secret": conf_secret}},
    ]
    svc.config_path.write_text(json.dumps(doc))


def logged_in_and_refreshed(svc: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    """Both logged in and refreshed with 2 s tokens (rotated refresh tokens too), then settled on hour-long
    tokens, so that no refresh is in flight when the test stops the service."""
    for name in ("demo", "conf"):
        svc.login(name)
    for name in ("demo", "conf"):
        svc.wait_status(name, lambda s: s["refresh_count"] >= 1, 20, f"a refresh of {name}")
    auth_server.set_config(access_ttl=3600)
    for name in ("demo", "conf"):
        svc.wait_status(name, lambda s: _expires_in(s) > 600, 20, f"{name} on an hour-long token")


def _expires_in(status: dict[str, object]) -> float:
    at = status.get("token_expires_at")
    return datetime.fromisoformat(str(at)).timestamp() - time.time() if at else 0.0


def at_rest(svc: ServiceHandle) -> str:
    r = svc.api("GET", "/api/v1/status")
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["at_rest"])


@contextmanager
def secret_service() -> Iterator[dict[str, str]]:
    """A Secret Service of its own: gnome-keyring-daemon, its login keyring unlocked, under dbus-run-session.

    Yields the environment that makes `keyring` use it."""
    home = Path(tempfile.mkdtemp(prefix="mcpproxy-kr-"))  # short: it holds unix sockets
    script = ('echo -n test | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1; '
              'echo "$DBUS_SESSION_BUS_ADDRESS"; exec sleep 600')
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "XDG_DATA_HOME": str(home / "share")}
    proc = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("unix:"), f"dbus-run-session gave no bus address: {address!r}"
        yield {"DBUS_SESSION_BUS_ADDRESS": address, "PYTHON_KEYRING_BACKEND": SECRET_SERVICE}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def keyring_entry(env: dict[str, str], data_dir: Path) -> str | None:
    """What the Secret Service holds for this data dir, read by `keyring` in a process of its own."""
    code = ("import keyring, sys; from mcpproxy.datakey import keyring_user; from pathlib import Path; "
            "print(keyring.get_password('mcpproxy', keyring_user(Path(sys.argv[1]))) or '')")
    r = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, timeout=30,
                       env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() or None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- the key file ------------------------------------------------------------------------------------


def test_key_file_path_leaves_no_issued_secret_at_rest(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                                       auth_server: OAuthServerHandle) -> None:
    svc = service_factory([], start=False)
    two_servers(svc, mcp_server, auth_server)
    svc.start()
    logged_in_and_refreshed(svc, auth_server)
    assert at_rest(svc) == "key_file"
    r = run([CTL, "--config", str(svc.config_path), "status"])
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == \
        "Tokens at rest: sealed, with the data key from a key file.", r.stdout + r.stderr
    key_file = key_file_of(svc.data_dir)
    assert _mode(key_file) == 0o600 and svc.data_dir not in key_file.parents
    svc.stop()

    wanted = issued_secrets(auth_server)
    assert sum("refresh token" in label for label in wanted.values()) >= 4 and \
        sum("client secret" in label for label in wanted.values()) == 1, wanted.values()
    found = scan(svc.data_dir, wanted)
    assert found == [], found
    print(f"\nkey file: {len(wanted)} issued secrets, {len(found)} found at rest in {svc.data_dir}")
    # The key in the file is the one that opens them: the newest refresh token is there, sealed.
    store = open_store(svc.data_dir)
    try:
        record = store.get_token("conf")
        assert record is not None and record.refresh_token in wanted and record.client_secret in wanted
    finally:
        store.close()


def test_a_plaintext_store_from_before_is_sealed_on_first_start_and_no_login_is_lost(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    svc = service_factory([], start=False)
    two_servers(svc, mcp_server, auth_server)
    svc.start()
    logged_in_and_refreshed(svc, auth_server)
    svc.stop()
    # What today's version leaves: the same records and registrations, unsealed, and no key anywhere.
    sealed = open_store(svc.data_dir)
    records = {name: sealed.get_token(name) for name in ("demo", "conf")}
    issuer = records["demo"].issuer if records["demo"] else None
    assert issuer is not None
    client = sealed.get_client(issuer)
    sealed.close()
    shutil.rmtree(svc.data_dir / "store")
    key_file_of(svc.data_dir).unlink()
    plain = TokenStore(svc.data_dir, sealer=None)
    plain.check_schema()
    for name, record in records.items():
        assert record is not None
        plain.put_token(name, record)
    assert client is not None
    plain.put_client(issuer, client)
    plain.close()
    wanted = issued_secrets(auth_server)
    assert any(label.startswith("refresh token") for label in (f.split(" in ")[0] for f in scan(svc.data_dir, wanted))), \
        "the plaintext store holds no refresh token: the scan below would prove nothing"

    svc.start()
    for name in ("demo", "conf"):
        status = svc.status(name)
        assert status["oauth_status"] == "authenticated" and status["action"] is None, status
    # The refresh token read from the migrated record still works: the login was not lost.
    for name in ("demo", "conf"):
        r = svc.api("POST", f"/api/v1/servers/{name}/refresh")
        assert r.status_code == 200, r.text
    assert "store: sealed 3 plaintext record(s) with the data key from " in svc.logs()
    svc.stop()
    found = scan(svc.data_dir, issued_secrets(auth_server))
    assert found == [], found  # freed pages too: the store file was rewritten after sealing


def test_a_wrong_key_costs_a_login_says_so_once_and_the_service_runs(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=3600)
    svc = service_factory([{"name": "demo", "url": mcp_server.url, "oauth": {}}])
    svc.login("demo")
    svc.stop()
    key_file = key_file_of(svc.data_dir)
    key_file.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")  # another valid key

    svc.start()
    status = svc.status("demo")
    assert (status["oauth_status"], status["action"], status["token_held"]) == ("none", "login", False), status
    assert "sealed with another data key" in status["last_error"]["message"]
    lines = [line for line in svc.logs().splitlines() if "were sealed with another data key" in line]
    assert len(lines) == 1, lines
    assert f"the token records of demo were sealed with another data key, not the one from {key_file}; those " \
           "servers need login" in lines[0]
    assert svc.login("demo")["oauth_status"] == "authenticated"  # a new login is sealed with the new key


# ---- the OS keyring (a real Secret Service) ------------------------------------------------------------


def test_keyring_path_against_a_real_secret_service(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                                    auth_server: OAuthServerHandle) -> None:
    svc = service_factory([], start=False)
    two_servers(svc, mcp_server, auth_server)
    key_file = key_file_of(svc.data_dir)
    with secret_service() as env:
        svc.extra_env.update(env)
        svc.start()
        logged_in_and_refreshed(svc, auth_server)
        assert at_rest(svc) == "keyring"
        r = run([CTL, "--config", str(svc.config_path), "status"])
        assert r.stdout.splitlines()[-1] == "Tokens at rest: sealed, with the data key from the OS keyring."
        assert not key_file.exists(), "a key file was written though the keyring answered"
        # The key was asked for before the actors were forked: none of them inherited the D-Bus connection.
        for pid in svc.pids()[1:]:
            proc = psutil.Process(pid)
            if proc.name().startswith("mcpproxy:"):
                held = [f for f in (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
                        if f.startswith("socket:")]
                assert held == [], f"{proc.name()} holds sockets {held}"
        entry = keyring_entry(env, svc.data_dir)
        assert entry is not None and len(base64.urlsafe_b64decode(entry)) == 32

        svc.stop()
        found = scan(svc.data_dir, issued_secrets(auth_server))
        assert found == [], found
        print(f"\nkeyring: {len(issued_secrets(auth_server))} issued secrets, {len(found)} found at rest")
        svc.start()  # the key comes back from the keyring: still logged in
        for name in ("demo", "conf"):
            assert svc.status(name)["oauth_status"] == "authenticated"
        svc.stop()

    # A keyring that lost the key (a new, empty one): those servers need login, the service runs.
    with secret_service() as env:
        svc.extra_env.update(env)
        svc.start()
        status = svc.status("demo")
        assert (status["oauth_status"], status["action"]) == ("none", "login"), status
        assert sum("were sealed with another data key" in line for line in svc.logs().splitlines()) == 1
        assert keyring_entry(env, svc.data_dir) != entry
        svc.stop()


def test_a_store_keeps_the_key_that_sealed_it_when_the_keyring_comes_and_goes(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    """A service started once while the keyring did not answer (a unit started before the desktop login)."""
    auth_server.set_config(access_ttl=3600)
    svc = service_factory([{"name": "demo", "url": mcp_server.url, "oauth": {}}], start=False)
    key_file = key_file_of(svc.data_dir)
    with secret_service() as env:
        svc.extra_env.update(env)
        svc.start()
        svc.login("demo")
        assert at_rest(svc) == "keyring"
        svc.stop()

        svc.extra_env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # the keyring does not answer
        svc.start()
        assert at_rest(svc) == "key_file" and key_file.exists()
        assert svc.status("demo")["action"] == "login"  # its key is out of reach: one login
        svc.login("demo")
        svc.stop()

        svc.extra_env["PYTHON_KEYRING_BACKEND"] = SECRET_SERVICE  # back: the key that sealed the store wins
        svc.start()
        assert at_rest(svc) == "key_file"
        status = svc.status("demo")
        assert status["oauth_status"] == "authenticated" and status["token_held"], status
        assert "which sealed the store; using the key file" in svc.logs()
        svc.stop()

    # A key file from before there was a keyring moves into a keyring that holds no key: no login lost.
    with secret_service() as env:
        svc.extra_env.update(env)
        svc.start()
        assert at_rest(svc) == "keyring"
        assert svc.status("demo")["oauth_status"] == "authenticated"
        assert keyring_entry(env, svc.data_dir) == key_file.read_text().strip()
        assert f"the data key from {key_file} is now kept in the OS keyring (SecretService)" in svc.logs()
