"""Classified OAuth failures: every function in mcpproxy.oauth returns a result or raises OAuthError."""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["network", "server", "invalid_grant", "invalid_client", "protocol", "config"]

#: Kinds after which retrying cannot help: a person must log in again.
PERMANENT_KINDS: frozenset[str] = frozenset({"invalid_grant", "invalid_client", "config"})


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
