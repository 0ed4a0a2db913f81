"""Classified OAuth failures: every function in mcpproxy.oauth returns a result or raises OAuthError."""

from __future__ import annotations

import datetime
import email.utils
import time
from typing import Literal, get_args

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

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        return self.kind in PERMANENT_KINDS

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}

    def __reduce__(self) -> tuple[type[OAuthError], tuple[str, str, float | None]]:
        # Travels between actor processes as a pickle.
        return (OAuthError, (self.kind, self.message, self.retry_after))


#: RFC 6749 §5.2 error codes that mean the client itself is not accepted.
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})


def classify_status(status: int, error_code: str | None) -> ErrorKind:
    """The kind of a non-2xx answer from an OAuth endpoint, by status and RFC 6749 §5.2 code."""
    if status >= 500 or status == 429:
        return "server"
    if 400 <= status < 500:
        if error_code == "invalid_grant":
            return "invalid_grant"
        if error_code in _CLIENT_ERRORS:
            return "invalid_client"
    return "protocol"


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
