"""Relative times, badges and the status table, with plain numbers."""

from __future__ import annotations

from mcpproxy.cli.format import badge, duration, event_line, expiry_color, relative, status_table
from mcpproxy.status import iso

NOW = 1_700_000_000.0


def test_duration_shows_the_two_largest_units() -> None:
    assert duration(250) == "4m 10s"
    assert duration(12) == "12s"
    assert duration(0) == "0s"
    assert duration(2 * 3600 + 5 * 60 + 7) == "2h 5m"
    assert duration(3 * 86400 + 4 * 3600) == "3d 4h"


def test_relative_counts_down_then_says_expired() -> None:
    assert relative(iso(NOW + 250), NOW) == "in 4m 10s"
    assert relative(NOW + 250, NOW) == "in 4m 10s"
    assert relative(iso(NOW - 1), NOW) == "EXPIRED"
    assert relative(iso(NOW), NOW) == "EXPIRED"
    assert relative(None, NOW) == "—"
    assert relative("not a time", NOW) == "—"
    assert relative(iso(NOW - 5), NOW, past="now") == "now"


def test_expiry_is_amber_under_five_minutes_and_red_after() -> None:
    assert expiry_color(iso(NOW + 3600), NOW) is None
    assert expiry_color(iso(NOW + 299), NOW) == "yellow"
    assert expiry_color(iso(NOW - 1), NOW) == "red"
    assert expiry_color(None, NOW) is None


def _status(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "demo", "is_oauth": True, "enabled": True, "oauth_status": "none",
                               "token_expires_at": None, "next_refresh_at": None, "last_error": None,
                               "action": None, "user_logged_out": False}
    return {**base, **kw}


def test_badges_match_the_web_ui() -> None:
    assert badge(_status(oauth_status="authenticated"))[0] == "Authenticated"
    assert badge(_status(oauth_status="expired"))[0] == "Token Expired"
    assert badge(_status(oauth_status="error"))[0] == "Auth Error"
    assert badge(_status(user_logged_out=True))[0] == "Logged out"
    assert badge(_status())[0] == "Not logged in"
    assert badge(_status(is_oauth=False))[0] == "no OAuth"


def test_status_table_has_a_row_per_server_with_expiry_and_error() -> None:
    rows = [
        _status(oauth_status="authenticated", token_expires_at=iso(NOW + 250), next_refresh_at=iso(NOW + 200)),
        _status(name="broken", oauth_status="error", action="login",
                last_error={"kind": "invalid_grant", "message": "log in again"}),
        _status(name="plain", is_oauth=False),
    ]
    text = status_table(rows, NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "EXPIRES", "NEXT", "REFRESH", "LAST", "ERROR"]
    assert "in 4m 10s" in lines[1] and "in 3m 20s" in lines[1] and "Authenticated" in lines[1]
    assert "Auth Error" in lines[2] and lines[2].endswith("log in again")
    assert lines[3].startswith("plain") and "no OAuth" in lines[3]
    assert "\x1b[" not in text  # no color unless asked
    assert "\x1b[" in status_table(rows, NOW, color=True)
    assert "no servers" in status_table([], NOW)


def test_a_token_without_a_lifetime_shows_its_expiry_as_unknown() -> None:
    row = _status(oauth_status="authenticated", token_expiry="unknown")
    line = status_table([row], NOW).splitlines()[1]
    assert line.split()[:3] == ["demo", "Authenticated", "unknown"], line


def test_event_lines_name_the_server_and_what_happened() -> None:
    line = event_line("oauth.token_refreshed",
                      {"payload": {"server_name": "demo", "expires_at": iso(NOW + 60)}, "timestamp": NOW}, NOW)
    assert "demo" in line and "token refreshed, expires in 1m 0s" in line
    line = event_line("oauth.logout", {"payload": {"server_name": "demo", "revoked": True, "reason": "user"},
                                       "timestamp": NOW})
    assert "logged out (user); tokens revoked" in line
