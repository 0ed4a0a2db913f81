"""Provider habits around discovery, registration and the authorization request (issue 11, cases 8–12 and 15).

Each test imitates one provider's habit with the test authorization server (`--habit`, `/_test/config`) or the
test MCP server, logs in through the real service, lets at least two refreshes happen (2 s tokens) and calls a
tool through `/mcp/NAME` — or, where mcpproxy must refuse, asserts the refusal and the words that say what to do.
docs/providers.md lists them.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle, free_port, iter_secrets, wait_until
from tests.mcpserver.control import MCPServerHandle, start_mcp_server
from tests.oauthserver.control import OAuthServerHandle

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = "2025-06-18"
SECRET = "slack-client-secret-0123456789"

MCPFactory = Callable[..., MCPServerHandle]


@pytest.fixture
def mcp_factory(auth_server: OAuthServerHandle) -> Iterator[MCPFactory]:
    """start(issuer=…, habits=(…)) → a test MCP server in front of `auth_server`; all are stopped afterwards."""
    started: list[MCPServerHandle] = []

    def start(*, issuer: str | None = None, habits: tuple[str, ...] = ()) -> MCPServerHandle:
        handle = start_mcp_server(auth_server.base_url, issuer=issuer or auth_server.base_url, habits=habits)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


# ---- driving a case ------------------------------------------------------------------------------


def call_tool(service: ServiceHandle, name: str) -> None:
    """initialize, then `echo` through the pass-through; the text must come back."""
    url = f"{service.base_url}/mcp/{name}"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "habits", "version": "0"}}}
    r = requests.post(url, headers=MCP_HEADERS, json=init, timeout=30)
    assert r.status_code == 200, r.text
    headers = {**MCP_HEADERS, "Mcp-Session-Id": r.headers["Mcp-Session-Id"], "MCP-Protocol-Version": PROTOCOL}
    r = requests.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout=30)
    assert r.status_code == 202, r.text
    text = f"habit-{uuid.uuid4().hex[:8]}"
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}}
    r = requests.post(url, headers=headers, json=call, timeout=30)
    assert r.status_code == 200, r.text
    answer = _jsonrpc_answer(r)
    assert answer.get("result", {}).get("content", [{}])[0].get("text") == text, answer


def _jsonrpc_answer(r: requests.Response) -> dict[str, Any]:
    if r.headers.get("Content-Type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
        return dict(json.loads(data[-1]))
    return dict(r.json())


def refreshes_then_tool(service: ServiceHandle, name: str, at_least: int) -> dict[str, Any]:
    """Waits for the refresh count to reach `at_least`, then calls a tool through the pass-through."""
    status = service.wait_status(name, lambda s: s["refresh_count"] >= at_least and s["last_error"] is None, 30,
                                 f"{at_least} refreshes")
    assert status["oauth_status"] == "authenticated" and status["action"] is None, status
    call_tool(service, name)
    return status


def login_refresh_call(service: ServiceHandle, name: str, refreshes: int = 2) -> dict[str, Any]:
    """The outcome every working case asserts: a login, two refreshes on 2 s tokens, a tool call."""
    status = service.login(name)
    assert status["oauth_status"] == "authenticated", status
    before = status["refresh_count"]
    return refreshes_then_tool(service, name, before + refreshes)


def no_secret_in_logs(service: ServiceHandle, auth: OAuthServerHandle) -> None:
    logs = service.logs()
    assert not [s for s in iter_secrets(auth.issued()) if s in logs]
    assert SECRET not in logs


def start_login_refused(service: ServiceHandle, name: str, status_code: int) -> str:
    r = service.api("POST", f"/api/v1/servers/{name}/login", json={})
    assert r.status_code == status_code, r.text
    return str(r.json()["error"])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# ---- case 8: no registration endpoint ------------------------------------------------------------


def test_no_registration_endpoint_with_client_id_slack(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("no_registration_endpoint")
    mcp = mcp_factory()
    svc = service_factory([{"name": "slack", "url": mcp.url,
                            "oauth": {"client_id": "slack-app", "client_secret": SECRET}}], start=False)
    auth_server.add_client("slack-app", SECRET, [f"{svc.base_url}/oauth/callback"])
    svc.start()
    login_refresh_call(svc, "slack")
    assert auth_server.counters()["registrations"] == 0
    assert svc.status("slack")["oauth_settings"]["client_id"] == "slack-app"
    assert svc.status("slack")["oauth_settings"]["client_secret_set"] is True
    no_secret_in_logs(svc, auth_server)


def test_no_registration_endpoint_without_client_id_says_so(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("no_registration_endpoint")
    mcp = mcp_factory()
    svc = service_factory([{"name": "copilot", "url": mcp.url, "oauth": {}}])
    error = start_login_refused(svc, "copilot", 400)
    assert "client_id" in error and "oauth.client_id of server 'copilot'" in error, error
    assert "no dynamic client registration" in error and f"{svc.base_url}/oauth/callback" in error, error
    status = svc.status("copilot")
    assert status["last_error"] == {"kind": "config", "message": error}  # what the Web UI card shows
    assert status["action"] == "login"
    assert auth_server.counters()["registrations"] == 0


# ---- case 9: the authorization server forgot our client ------------------------------------------


def forgotten_on_refresh(svc: ServiceHandle, name: str, words: str) -> dict[str, Any]:
    status = svc.wait_status(name, lambda s: s["refresh_state"] == "failed", 30, "the refresh to fail for good")
    assert status["oauth_status"] == "error" and status["action"] == "login", status
    assert status["last_error"]["kind"] == "invalid_client", status
    message = status["last_error"]["message"]
    assert words in message and "registration was dropped" in message and "log in again" in message, message
    return status


def test_forgotten_client_reregisters_supabase(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("unrecognized_client_422")
    mcp = mcp_factory()
    svc = service_factory([{"name": "supabase", "url": mcp.url, "oauth": {}}])
    events = svc.events()
    login_refresh_call(svc, "supabase")
    assert auth_server.counters()["registrations"] == 1
    auth_server.forget_clients()  # its clients lived in memory: a restart, or a TTL on registrations
    forgotten_on_refresh(svc, "supabase", "Unrecognized client_id")
    # The status answer can come before the reader thread has the event: wait for it, then count.
    wait_until(lambda: events.failed_for_good("supabase"), 5, "oauth.refresh_failed")
    assert len(events.failed_for_good("supabase")) == 1
    assert "unrecognized_client" in [e["result"] for e in auth_server.counters()["refresh_log"]]
    login_refresh_call(svc, "supabase")  # no manual cleanup: the next login registers afresh
    assert auth_server.counters()["registrations"] == 2
    no_secret_in_logs(svc, auth_server)


def test_forgotten_client_invalid_client_after_restart(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    """The spec-exact way to say it: 401 `invalid_client` from a server that lost its clients in a restart."""
    mcp = mcp_factory()
    svc = service_factory([{"name": "restarted", "url": mcp.url, "oauth": {}}])
    login_refresh_call(svc, "restarted")
    auth_server.forget_clients()
    forgotten_on_refresh(svc, "restarted", "invalid_client")
    login_refresh_call(svc, "restarted")
    assert auth_server.counters()["registrations"] == 2


def test_forgotten_client_seen_only_by_the_browser_supabase(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    """Forgotten while no refresh could tell: the person sees Supabase's 422 page; the next login registers afresh."""
    auth_server.set_habits("unrecognized_client_422")
    mcp = mcp_factory()
    svc = service_factory([{"name": "supabase", "url": mcp.url, "oauth": {}}])
    svc.login("supabase")
    assert svc.api("POST", "/api/v1/servers/supabase/logout").status_code == 200
    auth_server.forget_clients()
    page = requests.get(svc.start_login("supabase"), allow_redirects=False, timeout=10)
    assert page.status_code == 422 and "Unrecognized client_id" in page.text  # all the person sees
    assert auth_server.counters()["registrations"] == 1
    login_refresh_call(svc, "supabase")  # "Login" again: the stored registration is not trusted twice
    assert auth_server.counters()["registrations"] == 2


def test_forgotten_client_html_500(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("unknown_client_html_500")
    mcp = mcp_factory()
    svc = service_factory([{"name": "crashy", "url": mcp.url, "oauth": {}}])
    login_refresh_call(svc, "crashy")
    auth_server.forget_clients()
    forgotten_on_refresh(svc, "crashy", "HTML page")
    results = [e["result"] for e in auth_server.counters()["refresh_log"]]
    assert results.count("html_500") == 2, results  # an HTML 500 may be an outage: one confirming retry
    login_refresh_call(svc, "crashy")
    assert auth_server.counters()["registrations"] == 2

    # At the code exchange: the login fails, the registration goes, the next login registers afresh.
    auth_url = svc.start_login("crashy")
    redirect = requests.get(auth_url, allow_redirects=False, timeout=10)
    assert redirect.status_code == 302
    auth_server.forget_clients()
    page = requests.get(redirect.headers["Location"], timeout=60)
    assert page.status_code == 400 and "registration was dropped" in page.text
    login_refresh_call(svc, "crashy")
    assert auth_server.counters()["registrations"] == 3


# ---- case 10: discovery variants -------------------------------------------------------------------


def test_discovery_issuer_with_path_rfc8414(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("issuer_with_path")
    issuer = auth_server.base_url + "/tenant"
    assert requests.get(auth_server.metadata_url, timeout=10).status_code == 404  # only the path-inserted URI
    mcp = mcp_factory(issuer=issuer)
    svc = service_factory([{"name": "okta", "url": mcp.url, "oauth": {}}])
    inserted = requests.get(auth_server.url("/.well-known/oauth-authorization-server/tenant"), timeout=10)
    assert inserted.json()["issuer"] == issuer
    login_refresh_call(svc, "okta")


def test_discovery_openid_configuration_only(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("openid_configuration_only")
    assert requests.get(auth_server.metadata_url, timeout=10).status_code == 404
    mcp = mcp_factory()
    svc = service_factory([{"name": "keycloak", "url": mcp.url, "oauth": {}}])
    login_refresh_call(svc, "keycloak")


def test_discovery_resource_metadata_path_suffixed(
        service_factory: ServiceFactory, mcp_factory: MCPFactory) -> None:
    mcp = mcp_factory(habits=("resource_metadata_path_suffixed", "no_resource_metadata_in_401"))
    assert requests.get(mcp.metadata_url, timeout=10).status_code == 404
    assert requests.get(mcp.url + "/.well-known/oauth-protected-resource", timeout=10).status_code == 200
    svc = service_factory([{"name": "suffixed", "url": mcp.url, "oauth": {}}])
    login_refresh_call(svc, "suffixed")


def test_discovery_resource_metadata_root_only(
        service_factory: ServiceFactory, mcp_factory: MCPFactory) -> None:
    mcp = mcp_factory(habits=("resource_metadata_root_only", "no_resource_metadata_in_401"))
    assert requests.get(mcp.metadata_url, timeout=10).status_code == 404
    svc = service_factory([{"name": "rooted", "url": mcp.url, "oauth": {}}])
    login_refresh_call(svc, "rooted")


def test_discovery_401_without_resource_metadata(
        service_factory: ServiceFactory, mcp_factory: MCPFactory) -> None:
    mcp = mcp_factory(habits=("no_resource_metadata_in_401",))
    challenge = requests.post(mcp.url, json={}, headers=MCP_HEADERS, timeout=10).headers["WWW-Authenticate"]
    assert "resource_metadata" not in challenge
    svc = service_factory([{"name": "bare401", "url": mcp.url, "oauth": {}}])
    login_refresh_call(svc, "bare401")


def test_discovery_issuer_trailing_slash_google(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("issuer_trailing_slash")
    assert requests.get(auth_server.metadata_url, timeout=10).json()["issuer"] == auth_server.base_url + "/"
    mcp = mcp_factory(issuer=auth_server.base_url)  # the resource metadata names it without the slash
    svc = service_factory([{"name": "google", "url": mcp.url, "oauth": {}}])
    login_refresh_call(svc, "google")  # the callback's `iss` has the slash too: accepted


def test_discovery_mcp_url_trailing_slash(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    mcp = mcp_factory(habits=("resource_trailing_slash",))
    advertised = requests.get(mcp.metadata_url, timeout=10).json()["resource"]
    assert advertised.endswith("/mcp/")
    svc = service_factory([{"name": "slashed", "url": advertised.rstrip("/"), "oauth": {}}])
    login_refresh_call(svc, "slashed")
    assert {g["resource"] for g in auth_server.grants()} == {advertised}  # the indicator the server advertised


def test_discovery_real_issuer_mismatch_refused(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("issuer_mismatch")
    mcp = mcp_factory()
    svc = service_factory([{"name": "mixup", "url": mcp.url, "oauth": {}}])
    error = start_login_refused(svc, "mixup", 502)
    assert f"names issuer '{auth_server.base_url}/someone-else'" in error, error
    assert f"expected '{auth_server.base_url}'" in error, error
    assert svc.status("mixup")["last_error"] == {"kind": "protocol", "message": error}
    assert auth_server.counters()["registrations"] == 0 and auth_server.counters()["token_requests"] == 0


# ---- case 11: `resource` refused -------------------------------------------------------------------


def test_resource_omit_entra(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    mcp = mcp_factory()
    # Entra refuses RFC 8707 `resource`; its tokens' audience comes from the app registration instead.
    auth_server.set_config(habits=["resource_refused_invalid_target"], default_audience=mcp.url)
    svc = service_factory([{"name": "entra", "url": mcp.url, "oauth": {"resource": "omit"}}])
    login_refresh_call(svc, "entra")
    assert "invalid_target" not in [e["result"] for e in auth_server.counters()["refresh_log"]]
    assert svc.status("entra")["oauth_settings"]["resource"] == "omit"


def test_resource_invalid_target_names_setting(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    mcp = mcp_factory()
    auth_server.set_habits("resource_refused_invalid_target")
    svc = service_factory([{"name": "entra", "url": mcp.url, "oauth": {}}])
    redirect = requests.get(svc.start_login("entra"), allow_redirects=False, timeout=10)
    assert redirect.status_code == 302 and "error=invalid_target" in redirect.headers["Location"]
    page = requests.get(redirect.headers["Location"], timeout=60)
    assert page.status_code == 400
    status = svc.status("entra")
    message = status["last_error"]["message"]
    assert "invalid_target" in message and "oauth.resource of server 'entra'" in message and '"omit"' in message
    assert "oauth.resource of server" in page.text


def test_resource_explicit_value(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    mcp = mcp_factory()
    svc = service_factory([{"name": "given", "url": mcp.url, "oauth": {"resource": mcp.url + "/"}}])
    login_refresh_call(svc, "given")
    assert {g["resource"] for g in auth_server.grants()} == {mcp.url + "/"}


# ---- case 12: code_challenge_methods_supported missing ----------------------------------------------


def test_missing_pkce_metadata_refused_entra(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("no_pkce_metadata")
    mcp = mcp_factory()
    svc = service_factory([{"name": "entra", "url": mcp.url, "oauth": {}}])
    error = start_login_refused(svc, "entra", 400)
    assert "does not advertise PKCE S256" in error and "oauth.assume_pkce_s256" in error, error
    assert "server 'entra'" in error
    assert svc.status("entra")["last_error"] == {"kind": "config", "message": error}


def test_missing_pkce_metadata_allowed_by_setting(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    auth_server.set_habits("no_pkce_metadata")
    mcp = mcp_factory()
    svc = service_factory([{"name": "entra", "url": mcp.url, "oauth": {"assume_pkce_s256": True}}])
    auth_url = svc.start_login("entra")
    assert "code_challenge_method=S256" in auth_url
    login_refresh_call(svc, "entra")
    assert svc.status("entra")["oauth_settings"]["assume_pkce_s256"] is True


# ---- case 15: a fixed redirect URI ------------------------------------------------------------------


def test_fixed_redirect_uri_slack(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    port = free_port()
    fixed = f"http://localhost:{port}/callback"
    auth_server.set_config(habits=["no_registration_endpoint", "fixed_redirect_uri"], fixed_redirect_uri=fixed)
    auth_server.add_client("slack-app", SECRET, [fixed])
    mcp = mcp_factory()
    svc = service_factory([{"name": "slack", "url": mcp.url,
                            "oauth": {"client_id": "slack-app", "client_secret": SECRET, "redirect_uri": fixed}}])
    assert svc.status("slack")["oauth_settings"]["redirect_uri"] == fixed
    assert not port_open(port)  # nothing listens before a login
    auth_url = svc.start_login("slack")
    assert port_open(port)  # …while the login waits
    redirect = requests.get(auth_url, allow_redirects=False, timeout=10)
    assert redirect.status_code == 302 and redirect.headers["Location"].startswith(fixed + "?")
    page = requests.get(redirect.headers["Location"], timeout=60)
    assert page.status_code == 200 and "Logged in" in page.text, page.text
    wait_until(lambda: not port_open(port), 10, "the fixed redirect port to close after the login")
    refreshes_then_tool(svc, "slack", 2)
    assert auth_server.counters()["registrations"] == 0
    no_secret_in_logs(svc, auth_server)


def test_fixed_redirect_uri_port_taken_says_so(
        service_factory: ServiceFactory, auth_server: OAuthServerHandle, mcp_factory: MCPFactory) -> None:
    mcp = mcp_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fixed = f"http://127.0.0.1:{port}/callback"
        svc = service_factory([{"name": "slack", "url": mcp.url,
                                "oauth": {"client_id": "slack-app", "redirect_uri": fixed}}])
        error = start_login_refused(svc, "slack", 409)
    assert f"cannot listen on {fixed}" in error and f"port {port}" in error and "oauth.redirect_uri" in error, error
