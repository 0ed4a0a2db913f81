"""mcpproxy.oauth.revocation (RFC 7009) against a canned server."""

from __future__ import annotations

import base64

import pytest

from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.revocation import revoke
from tests.oauth.test_http import Canned, CannedServer, canned_fixture

canned = pytest.fixture(canned_fixture)


def test_revoke_public_client(canned: CannedServer) -> None:
    canned.add("POST", "/revoke", Canned(200, b""))
    revoke(
        canned.url("/revoke"),
        token="RT-SECRET",
        token_type_hint="refresh_token",
        client_id="cid",
        client_secret=None,
    )
    sent = canned.requests[0]
    assert sent.form() == {
        "token": "RT-SECRET",
        "token_type_hint": "refresh_token",
        "client_id": "cid",
    }


def test_revoke_confidential_client(canned: CannedServer) -> None:
    canned.add("POST", "/revoke", Canned(200, b""))
    revoke(
        canned.url("/revoke"),
        token="AT",
        token_type_hint="access_token",
        client_id="cid",
        client_secret="S&S",
    )
    sent = canned.requests[0]
    assert sent.form() == {"token": "AT", "token_type_hint": "access_token"}
    assert base64.b64decode(sent.headers["authorization"].split()[1]) == b"cid:S%26S"


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (Canned(503, {}, {"Retry-After": "5"}), "server"),
        (Canned(500, {}), "server"),
        (Canned(400, {"error": "unsupported_token_type"}), "protocol"),
        (Canned(401, {"error": "invalid_client"}), "invalid_client"),
        (Canned(404, "no"), "protocol"),
        (Canned(200, b"x" * (2 << 20)), "protocol"),  # an answer over 1 MiB is not read
        (Canned(307, b"", {"Location": "https://elsewhere.example/revoke"}), "protocol"),
    ],
)
def test_revoke_failures(canned: CannedServer, answer: Canned, kind: str) -> None:
    canned.add("POST", "/revoke", answer)
    with pytest.raises(OAuthError) as info:
        revoke(
            canned.url("/revoke"),
            token="RT-SECRET",
            token_type_hint="refresh_token",
            client_id="c",
            client_secret=None,
        )
    assert info.value.kind == kind
    assert "RT-SECRET" not in info.value.message
