"""requests-oauthlib's OAuth2Session over mcpproxy's transport, for one token request (RFC 6749 §4.1.3, §6).

Imported by `mcpproxy.oauth.tokens` inside its functions, so only the OAuth worker's threads load
and run it: an OAuth2Session in every TokenActor cost 0.4 MB PSS each (docs/architecture.md "OAuth").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from oauthlib.oauth2 import WebApplicationClient
from requests_oauthlib import OAuth2Session

from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.http import basic_auth, request, safe_url


def alias(url: str) -> str:
    """The URL with https: oauthlib refuses plain http unless OAUTHLIB_INSECURE_TRANSPORT is set for the
    whole process; `require_secure` has already allowed plain http for loopback hosts only, and
    `TokenSession.request` sends to the real URL."""
    parts = urlsplit(url)
    return urlunsplit(("https", parts.netloc, parts.path, parts.query, ""))


class Basic(requests.auth.AuthBase):
    """client_secret_basic with RFC 6749 §2.3.1's form-encoding of id and secret (requests'
    HTTPBasicAuth, which requests-oauthlib would use, skips it)."""

    def __init__(self, client_id: str, client_secret: str | None) -> None:
        self.header = basic_auth(client_id, client_secret)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.update(self.header)
        return r


class TokenSession(OAuth2Session):  # type: ignore[misc]
    """An OAuth2Session that sends only to its token endpoint, through `mcpproxy.oauth.http.request`: no
    redirect followed, the answer read streamed and refused past 1 MiB before requests-oauthlib (which
    logs `r.text`) or a compliance hook sees it, every failure classified.

    `on_answer(normalize)` registers the access- and refresh-token response compliance hooks: `normalize`
    turns the answer into the one JSON shape oauthlib parses (or raises the classified error), and
    `answer` keeps it.
    """

    def __init__(self, transport: requests.Session, endpoint: str, what: str, client_id: str, *,
                 redirect_uri: str | None = None, scope: list[str] | None = None) -> None:
        super().__init__(client=WebApplicationClient(client_id), redirect_uri=redirect_uri, scope=scope)
        self.trust_env = False
        self.transport = transport
        self.endpoint = endpoint
        self.what = what
        self.answer: dict[str, Any] = {}

    def on_answer(self, normalize: Callable[[requests.Response], dict[str, Any]]) -> None:
        def hook(r: requests.Response) -> requests.Response:
            import json

            self.answer = normalize(r)
            r._content = json.dumps(self.answer).encode("utf-8")
            r.encoding = "utf-8"
            return r

        for kind in ("access_token_response", "refresh_token_response"):
            self.register_compliance_hook(kind, hook)

    def request(self, method: str, url: str, data: Any = None, headers: Any = None, withhold_token: bool = False,
                client_id: Any = None, client_secret: Any = None, files: Any = None, **kw: Any) -> requests.Response:
        if url != alias(self.endpoint):
            raise OAuthError("protocol", f"{self.what}: an unexpected request to {safe_url(url)}")
        sent = {k: kw[k] for k in ("auth", "timeout") if kw.get(k) is not None}
        return request(self.transport, method, self.endpoint, what=self.what, data=data, headers=headers, **sent)
