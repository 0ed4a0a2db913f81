"""mcpproxy.oauth.errors: the pure classification helpers."""

from __future__ import annotations

import pickle

import pytest
from oauthlib.oauth2.rfc6749 import errors as rfc6749

from mcpproxy.oauth.errors import (
    ERROR_KINDS,
    PERMANENT_KINDS,
    OAuthError,
    classify,
    classify_status,
    clean_server_text,
    oauth2_error,
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


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_grant", rfc6749.InvalidGrantError),
        ("invalid_client", rfc6749.InvalidClientError),
        ("unauthorized_client", rfc6749.UnauthorizedClientError),
        ("invalid_scope", rfc6749.InvalidScopeError),
        ("temporarily_unavailable", rfc6749.TemporarilyUnavailableError),
        ("made_up", rfc6749.CustomOAuth2Error),
    ],
)
def test_codes_map_to_oauthlibs_error_classes(code: str, cls: type) -> None:
    err = oauth2_error(code, "why")
    assert type(err) is cls and err.error == code
    assert oauth2_error(None) is None and oauth2_error("") is None


def test_classify_puts_the_status_before_the_error_class() -> None:
    grant = rfc6749.InvalidGrantError()
    assert classify(503, grant) == "server"
    assert classify(400, grant) == "invalid_grant"
    assert classify(200, grant) == "invalid_grant"  # by its code whatever the status: GitHub errors come with 200
    assert classify(200, rfc6749.CustomOAuth2Error("bad_refresh_token")) == "invalid_grant"  # GitHub's spelling
    assert classify(400, rfc6749.TemporarilyUnavailableError()) == "server"
    assert classify(400, rfc6749.InvalidClientIdError()) == "protocol"  # invalid_request, not invalid_client
    assert classify(400, None) == "protocol"
