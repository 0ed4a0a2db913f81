"""mcpproxy.oauth.errors: the pure classification helpers."""

from __future__ import annotations

import pickle

import pytest

from mcpproxy.oauth.errors import (
    ERROR_KINDS,
    PERMANENT_KINDS,
    OAuthError,
    classify_status,
    clean_server_text,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (500, None, "server"),
        (503, "temporarily_unavailable", "server"),
        (429, None, "server"),
        (429, "invalid_grant", "server"),
        (400, "invalid_grant", "invalid_grant"),
        (401, "invalid_grant", "invalid_grant"),
        (401, "invalid_client", "invalid_client"),
        (400, "unauthorized_client", "invalid_client"),
        (400, "invalid_request", "protocol"),
        (400, "invalid_scope", "protocol"),
        (400, "unsupported_grant_type", "protocol"),
        (401, None, "protocol"),
        (404, None, "protocol"),
        (302, None, "protocol"),
    ],
)
def test_classify_status(status: int, code: str | None, kind: str) -> None:
    assert classify_status(status, code) == kind


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("-1", None),
        ("soon", None),
        ("1.5", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(value, now=now) == seconds


def test_clean_server_text() -> None:
    assert clean_server_text("a\nb\r\n\tc\x1b[31m") == "a b c [31m"
    long = clean_server_text("y" * 300)
    assert len(long) == 200 and long.endswith("…")


def test_oauth_error_pickles_with_retry_after() -> None:
    err = pickle.loads(pickle.dumps(OAuthError("server", "w: HTTP 503", 3.0)))
    assert (err.kind, err.message, err.retry_after) == ("server", "w: HTTP 503", 3.0)


def test_kinds_and_the_permanent_ones() -> None:
    assert ERROR_KINDS == ("network", "server", "invalid_grant", "invalid_client", "protocol", "config")
    assert PERMANENT_KINDS == {"invalid_grant", "invalid_client", "config"}
    assert PERMANENT_KINDS < set(ERROR_KINDS)
    for kind in ERROR_KINDS:
        assert OAuthError(kind, "x").permanent == (kind in PERMANENT_KINDS)
