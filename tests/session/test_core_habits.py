"""The session core's rules for provider habits (issue 11, cases 8, 9, 11, 12, 15), step by step with plain values.

tests/providers/test_discovery_habits.py drives the same rules through the real service; these pin each rule
down without processes, so a failure names the rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcpproxy import session as core
from mcpproxy.config import OAuthSettings, ServerConfig
from mcpproxy.oauth.discovery import AuthServerMetadata, Discovery
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.registration import ClientRegistration, ClientUnknown
from mcpproxy.oauth.tokens import TokenResponse
from mcpproxy.record import TokenRecord
from mcpproxy.work import Discover, Exchange, Refresh, Register

NOW = 1_000_000.0
REDIRECT = "http://127.0.0.1:8080/oauth/callback"
META = AuthServerMetadata(issuer="https://as.example.com", authorization_endpoint="https://as.example.com/authorize",
                          token_endpoint="https://as.example.com/token", registration_endpoint="https://as.example.com/reg",
                          revocation_endpoint=None, code_challenge_methods_supported=("S256",), scopes_supported=(),
                          iss_parameter_supported=False)
DISCOVERY = Discovery(resource="https://mcp.example.com/mcp", metadata=META, scopes=())
VERIFIER = "v" * 43


def server(**oauth: Any) -> ServerConfig:
    return ServerConfig(name="s", protocol="http", url="https://mcp.example.com/mcp", oauth=OAuthSettings(**oauth))


class Shell:
    """The smallest shell: keeps the session, the registrations by issuer, and what each step produced."""

    def __init__(self, srv: ServerConfig, metadata: AuthServerMetadata = META) -> None:
        self.s = core.new_session(srv, 0.8, REDIRECT)
        self.discovery = dataclasses.replace(DISCOVERY, metadata=metadata)
        self.clients: dict[str, dict[str, Any]] = {}
        self.effects: list[Any] = []
        self.feed(core.Loaded(None))
        self.seq = 0

    def feed(self, event: Any) -> list[Any]:
        self.s, effects = core.step(self.s, event, NOW)
        self.effects += effects
        for e in effects:
            if isinstance(e, core.LoadClient):
                self.feed(core.ClientLoaded(e.issuer, self.clients.get(e.issuer)))
            elif isinstance(e, core.SaveClient):
                self.clients[e.issuer] = e.client
            elif isinstance(e, core.DropClient):
                self.clients.pop(e.issuer, None)
        return effects

    def work(self, kind: type) -> core.SendWork:
        return [e for e in self.effects if isinstance(e, core.SendWork) and isinstance(e.op, kind)][-1]

    def finish(self, kind: type, result: Any) -> list[Any]:
        w = self.work(kind)
        return self.feed(core.WorkFinished(w.request_id, w.generation, result, NOW, 0.5))

    def login(self) -> Any:
        """LoginWanted through discovery and registration; the answer the asker got."""
        self.seq += 1
        before = len(self.effects)
        self.feed(core.LoginWanted("ui", f"state-{self.seq}", VERIFIER))
        if self.s.discovery is None:
            self.finish(Discover, self.discovery)
        registers = [e for e in self.effects[before:] if isinstance(e, core.SendWork) and isinstance(e.op, Register)]
        if registers:
            op = registers[-1].op
            self.finish(Register, ClientRegistration(f"client-{self.seq}", None, META.issuer, op.redirect_uri))
        return [e.answer for e in self.effects[before:] if isinstance(e, core.Reply) and e.to == "ui"][-1]

    def logged_in(self) -> None:
        started = self.login()
        assert isinstance(started, core.LoginStarted), started
        self.feed(core.CodeReturned("browser", started.state, "code"))
        self.finish(Exchange, TokenResponse("at-1", "Bearer", "rt-1", 10.0, None))
        assert self.s.token is not None


def test_no_registration_endpoint_names_the_config_field() -> None:
    sh = Shell(server(), dataclasses.replace(META, registration_endpoint=None))
    answer = sh.login()
    assert isinstance(answer, core.Failure) and answer.kind == "config"
    assert "oauth.client_id of server 's'" in answer.message and REDIRECT in answer.message
    assert sh.s.rt.last_error is not None and sh.s.rt.last_error.message == answer.message
    assert not [e for e in sh.effects if isinstance(e, core.SendWork) and isinstance(e.op, Register)]


def test_no_registration_endpoint_with_client_id_logs_in() -> None:
    sh = Shell(server(client_id="app", client_secret="secret"), dataclasses.replace(META, registration_endpoint=None))
    assert isinstance(sh.login(), core.LoginStarted)


def test_refresh_invalid_client_drops_a_dynamic_registration_only() -> None:
    sh = Shell(server())
    sh.logged_in()
    assert META.issuer in sh.clients
    sh.feed(core.RefreshWanted("ui"))
    sh.finish(Refresh, ClientUnknown("HTTP 422 Unrecognized client_id"))
    assert META.issuer not in sh.clients and sh.s.rt.failed
    assert "registration was dropped" in sh.s.rt.last_error.message  # type: ignore[union-attr]

    configured = Shell(server(client_id="app"))
    configured.logged_in()
    configured.feed(core.RefreshWanted("ui"))
    configured.finish(Refresh, OAuthError("invalid_client", "bad secret"))
    assert configured.s.rt.failed and not [e for e in configured.effects if isinstance(e, core.DropClient)]


def test_html_500_counts_as_forgotten_only_when_it_repeats() -> None:
    sh = Shell(server())
    sh.logged_in()
    sh.feed(core.RefreshWanted("ui"))
    sh.finish(Refresh, ClientUnknown("HTTP 500 with an HTML page", certain=False))
    assert sh.s.rt.refresh_state == "retrying" and META.issuer in sh.clients
    sh.feed(core.RefreshWanted("ui"))
    sh.finish(Refresh, ClientUnknown("HTTP 500 with an HTML page", certain=False))
    assert sh.s.rt.failed and META.issuer not in sh.clients


def test_html_500_then_success_starts_the_count_again() -> None:
    sh = Shell(server())
    sh.logged_in()
    for result in (ClientUnknown("html", certain=False), TokenResponse("at-2", "Bearer", "rt-2", 10.0, None),
                   ClientUnknown("html", certain=False)):
        sh.feed(core.RefreshWanted("ui"))
        sh.finish(Refresh, result)
    assert not sh.s.rt.failed and META.issuer in sh.clients


def test_an_abandoned_login_link_registers_afresh_next_time() -> None:
    sh = Shell(server())
    assert isinstance(sh.login(), core.LoginStarted)  # the person met "Unrecognized client_id" and came back
    assert isinstance(sh.login(), core.LoginStarted)
    registers = [e for e in sh.effects if isinstance(e, core.SendWork) and isinstance(e.op, Register)]
    assert len(registers) == 2


def test_exchange_refused_with_a_forgotten_client_drops_it() -> None:
    sh = Shell(server())
    started = sh.login()
    sh.feed(core.CodeReturned("browser", started.state, "code"))
    effects = sh.finish(Exchange, ClientUnknown("HTTP 500 with an HTML page", certain=False))
    failure = [e.answer for e in effects if isinstance(e, core.Reply)][-1]
    assert failure.kind == "invalid_client" and "log in again" in failure.message
    assert META.issuer not in sh.clients


def resource_sent(sh: Shell) -> tuple[list[str], str | None]:
    started = sh.login()
    query = parse_qs(urlsplit(started.auth_url).query)
    sh.feed(core.CodeReturned("browser", started.state, "code"))
    return query.get("resource", []), sh.work(Exchange).op.resource


def test_resource_modes() -> None:
    assert resource_sent(Shell(server())) == (["https://mcp.example.com/mcp"], "https://mcp.example.com/mcp")
    assert resource_sent(Shell(server(resource="omit"))) == ([], None)
    given = "https://api.example.com/"
    assert resource_sent(Shell(server(resource=given))) == ([given], given)


def test_invalid_target_names_the_setting() -> None:
    sh = Shell(server())
    started = sh.login()
    effects = sh.feed(core.CodeReturned("browser", started.state, "", error="invalid_target"))
    failure = [e.answer for e in effects if isinstance(e, core.Reply)][-1]
    assert "oauth.resource of server 's'" in failure.message and '"omit"' in failure.message


def test_missing_pkce_metadata_refused_then_assumed() -> None:
    bare = dataclasses.replace(META, code_challenge_methods_supported=())
    refused = Shell(server(), bare).login()
    assert isinstance(refused, core.Failure) and "oauth.assume_pkce_s256" in refused.message
    started = Shell(server(assume_pkce_s256=True), bare).login()
    assert isinstance(started, core.LoginStarted) and "code_challenge_method=S256" in started.auth_url
    plain_only = dataclasses.replace(META, code_challenge_methods_supported=("plain",))
    assert isinstance(Shell(server(assume_pkce_s256=True), plain_only).login(), core.Failure)  # it said no S256


def test_fixed_redirect_uri_is_registered_and_sent() -> None:
    fixed = "http://localhost:3118/callback"
    sh = Shell(server(redirect_uri=fixed))
    started = sh.login()
    assert sh.work(Register).op.redirect_uri == fixed
    assert parse_qs(urlsplit(started.auth_url).query)["redirect_uri"] == [fixed]
    sh.feed(core.CodeReturned("browser", started.state, "code"))
    assert sh.work(Exchange).op.redirect_uri == fixed


def test_status_shows_the_settings_never_the_secret() -> None:
    sh = Shell(server(client_id="app", client_secret="secret", resource="omit"))
    settings = sh.s.status(NOW)["oauth_settings"]
    assert settings == {"client_id": "app", "client_secret_set": True, "resource": "omit", "redirect_uri": None,
                        "assume_pkce_s256": False}
    assert "secret" not in str(TokenRecord(client_secret="secret"))


def test_a_login_during_a_refresh_leaves_that_refresh_nothing_to_retry() -> None:
    # Found by the model after the merge of the lease and the provider habits: a login completing while a
    # refresh was out, then the worker dying, retried the old refresh for a token without a refresh token — a
    # retry point that never moves, so the timer fired in a busy loop.
    sh = Shell(server())
    sh.logged_in()
    started = sh.login()
    sh.feed(core.CodeReturned("browser", started.state, "code"))
    sh.feed(core.RefreshWanted("ui"))  # while the code exchange is out
    assert sh.s.inflight is not None
    sh.finish(Exchange, TokenResponse("at-2", "Bearer", None, None, None))  # no refresh token, no lifetime
    sh.feed(core.WorkerLost(0.0))
    assert sh.s.inflight is None and sh.s.retry_at is None and sh.s.rt.refresh_state != "retrying"
    assert not [e for e in sh.effects[-3:] if isinstance(e, core.SetTimer) and e.delay == 0.0]


def test_a_clean_stop_waits_for_exactly_the_work_whose_answer_carries_tokens() -> None:
    sh = Shell(server())
    started = sh.login()
    assert not core.carrying_tokens(sh.s)  # discovery and registration are done; only a link is out
    sh.feed(core.CodeReturned("browser", started.state, "code"))
    assert core.carrying_tokens(sh.s)  # the code exchange: its answer is the first token
    sh.finish(Exchange, TokenResponse("at-1", "Bearer", "rt-1", 10.0, None))
    assert not core.carrying_tokens(sh.s)  # the probe that follows carries none
    sh.feed(core.RefreshWanted("ui"))
    assert core.carrying_tokens(sh.s)  # a refresh: the AS may have rotated the stored refresh token already
    sh.finish(Refresh, TokenResponse("at-2", "Bearer", "rt-2", 10.0, None))
    assert not core.carrying_tokens(sh.s)
