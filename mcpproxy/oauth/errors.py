"""Classified OAuth failures: every function in mcpproxy.oauth returns a result or raises OAuthError."""

from __future__ import annotations

import datetime
import email.utils
import time
from typing import TYPE_CHECKING, Literal, get_args

from oauthlib.oauth2.rfc6749 import errors as rfc6749

if TYPE_CHECKING:
    import requests

ErrorKind = Literal["network", "server", "invalid_grant", "invalid_client", "protocol", "config"]

#: Every kind, in the order the API documents them (docs/architecture.md "Status object").
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

#: The one list of kinds after which retrying cannot help: a person must log in again
#: (docs/architecture.md "Refresh policy"). policy.py and OAuthError.permanent both read it.
PERMANENT_KINDS: frozenset[ErrorKind] = frozenset({"invalid_grant", "invalid_client", "config"})


class OAuthError(Exception):
    """A failure with a kind (what to do about it) and a sentence for people.

    The message never contains a token, code, verifier or secret.
    """

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None,
                 confirm: bool = False) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.retry_after = retry_after
        #: A refusal that a glitch could also explain (`invalid_request`, `unauthorized_client`, a bare 401):
        #: permanent only once one retry has confirmed it (docs/architecture.md "Refresh policy").
        self.confirm = confirm

    @property
    def permanent(self) -> bool:
        return self.kind in PERMANENT_KINDS and not self.confirm

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}

    def __reduce__(self) -> tuple[type[OAuthError], tuple[str, str, float | None, bool]]:
        # Travels between actor processes as a pickle.
        return (OAuthError, (self.kind, self.message, self.retry_after, self.confirm))


#: oauthlib's RFC 6749 §5.2 error classes that need a person, and the kind each one is.
_KIND_OF_ERROR: tuple[tuple[type[rfc6749.OAuth2Error], ErrorKind], ...] = (
    (rfc6749.InvalidGrantError, "invalid_grant"),
    (rfc6749.InvalidClientError, "invalid_client"),
    (rfc6749.UnauthorizedClientError, "invalid_client"),
)


def oauth2_error(code: str | None, description: str | None = None) -> rfc6749.OAuth2Error | None:
    """oauthlib's typed error for an RFC 6749 §5.2 `error` code (CustomOAuth2Error when unknown)."""
    if not code:
        return None
    try:
        rfc6749.raise_from_error(code, {"error_description": description})
    except rfc6749.OAuth2Error as exc:
        return exc
    return None


#: Error codes outside RFC 6749 §5.2 that real servers send, and what they stand for (docs/providers.md).
_KIND_OF_CODE: dict[str, ErrorKind] = {
    "bad_refresh_token": "invalid_grant",  # GitHub, often with HTTP 200
    "bad_verification_code": "invalid_grant",  # GitHub's code exchange
    "server_error": "server",  # RFC 6749 §4.1.2.1 codes some servers also send from /token
    "temporarily_unavailable": "server",
}

#: Codes that are permanent only after one confirming retry (docs/architecture.md "Refresh policy").
CONFIRM_CODES = frozenset({"invalid_request", "unauthorized_client"})


def classify(status: int, error: rfc6749.OAuth2Error | None) -> ErrorKind:
    """The kind of an OAuth endpoint's answer: 5xx and 429 by status, then by the error code (oauthlib's
    class, or a known provider code) whatever the status — GitHub sends errors with HTTP 200 —, and an
    answer without a code by its status alone (an HTML page, an empty body)."""
    if status >= 500 or status == 429:
        return "server"
    if error is not None:
        for cls, kind in _KIND_OF_ERROR:
            if isinstance(error, cls):
                return kind
        return _KIND_OF_CODE.get(error.error, "protocol")
    return "protocol"


def classify_status(status: int, error_code: str | None) -> ErrorKind:
    """The kind of a non-2xx answer from an OAuth endpoint, by status and RFC 6749 §5.2 code."""
    return classify(status, oauth2_error(error_code))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 §10.2.3: delay-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def clean_server_text(text: str, limit: int = 200) -> str:
    """Server-sent text made safe for one log line: no control characters, at most `limit` chars."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ClientUnknown(OAuthError):
    """The authorization server does not know our client (any more): RFC 6749 §5.2 `invalid_client`, or a
    provider's own way of saying so. `certain` is False for an HTML 500, which may also be a plain outage."""

    def __init__(self, message: str, certain: bool = True) -> None:
        super().__init__("invalid_client" if certain else "server", message)
        self.certain = certain

    def __reduce__(self) -> tuple[type[ClientUnknown], tuple[str, bool]]:  # type: ignore[override]
        return (ClientUnknown, (self.message, self.certain))


def client_unknown(resp: requests.Response, what: str) -> ClientUnknown | None:
    """A token endpoint's non-2xx answer that says it does not know the client: Supabase's 422
    `{"message": "Unrecognized client_id"}`, or an HTML 500 (servers that crash on an unknown client)."""
    status = resp.status_code
    kind = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if status == 422 and b"unrecognized client" in resp.content[:4096].lower():
        return ClientUnknown(f"{what}: the authorization server answered HTTP 422 \"Unrecognized client_id\"")
    if status == 500 and kind in ("text/html", "application/xhtml+xml"):
        return ClientUnknown(f"{what}: the authorization server answered HTTP 500 with an HTML page", certain=False)
    return None
