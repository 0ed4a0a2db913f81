from mcpproxy.config import OAuthSettings, ServerConfig
from mcpproxy.record import Problem, TokenRecord
from mcpproxy.status import Runtime, build_status, static_status

SRV = ServerConfig(name="s", protocol="http", url="https://x.example.com/mcp", oauth=OAuthSettings())
NOW = 1_000_000.0


def rec(**kw):
    return TokenRecord(**{"access_token": "t", "refresh_token": "r", "issued_at": NOW - 10, "expires_at": NOW + 90,
                          **kw})


def test_no_token_means_none_and_login():
    st = build_status(SRV, None, Runtime(), NOW, 0.8)
    assert (st["oauth_status"], st["action"], st["token_expires_at"]) == ("none", "login", None)


def test_valid_token_is_authenticated_without_action():
    st = build_status(SRV, rec(), Runtime(refresh_state="scheduled"), NOW, 0.8)
    assert (st["oauth_status"], st["action"]) == ("authenticated", None)
    assert st["token_expires_at"].endswith("Z")


def test_retrying_stays_authenticated_while_valid_and_says_why():
    rt = Runtime(refresh_state="retrying", retry_count=2, last_error=Problem("server", "m"))
    st = build_status(SRV, rec(), rt, NOW, 0.8)
    assert (st["oauth_status"], st["refresh_state"], st["last_error"]["kind"]) == ("authenticated", "retrying", "server")


def test_expired_and_failed():
    assert build_status(SRV, rec(expires_at=NOW - 1), Runtime(), NOW, 0.8)["oauth_status"] == "expired"
    st = build_status(SRV, rec(), Runtime(failed=True, refresh_state="failed"), NOW, 0.8)
    assert (st["oauth_status"], st["action"]) == ("error", "login")


def test_no_refresh_token_asks_for_login_past_the_threshold_only():
    r = rec(refresh_token=None, issued_at=NOW - 50, expires_at=NOW + 50)
    assert build_status(SRV, r, Runtime(), NOW, 0.8)["action"] is None
    assert build_status(SRV, r, Runtime(), NOW + 31, 0.8)["action"] == "login"


def test_no_secret_fields_in_status():
    st = build_status(SRV, rec(client_secret="cs"), Runtime(), NOW, 0.8)
    assert "t" not in st.values() and "r" not in st.values()
    assert not {"access_token", "refresh_token", "client_secret"} & set(st)


def test_static_status_for_non_oauth():
    st = static_status(ServerConfig(name="p", protocol="http", url="https://p.example.com", oauth=None))
    assert (st["is_oauth"], st["oauth_status"], st["action"]) == (False, "none", None)
