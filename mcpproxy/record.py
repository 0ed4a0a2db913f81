"""One server's persisted token record (docs/architecture.md "Store"): a frozen value with its own encoding.

The store, the session core, the status builder and the CLI all read and write this one type. The
encoding is msgpack of a flat map whose keys have not changed since the first store schema, so a
record written by any earlier version reads back; unknown keys are ignored, wrong types refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import msgpack


class RecordError(Exception):
    """One record cannot be decoded; the others are fine."""


@dataclass(frozen=True)
class Problem:
    """Why a server needs attention: a kind from docs/architecture.md "Status object" and a sentence."""

    kind: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class TokenRecord:
    """The token of one server and what a refresh needs without discovery; a tombstone has no access token."""

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"
    scopes: tuple[str, ...] = ()
    issued_at: float = 0.0
    expires_at: float | None = None  # wall clock, epoch seconds; None: the server gave no lifetime
    expires_from_jwt: bool = False  # expires_at is the access token's JWT `exp`, read as a hint
    issuer: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    #: How the client authenticates at the token endpoint (none, client_secret_basic, client_secret_post);
    #: None in a record from before it was kept: then by the secret (docs/architecture.md "Store").
    auth_method: str | None = None
    resource: str | None = None
    url: str | None = None  # the MCP server's URL at login: a token never follows a changed URL
    refresh_count: int = 0
    last_refresh_at: float | None = None
    logged_in_at: float | None = None
    # Session facts that outlive a restart.
    generation: int = 0
    user_logged_out: bool = False
    failed: Problem | None = None  # a permanent failure: a person must log in

    @property
    def has_token(self) -> bool:
        return bool(self.access_token)

    def tombstone(self) -> TokenRecord:
        """This record without any token: what a logout or a dropped token leaves."""
        return TokenRecord(generation=self.generation, user_logged_out=self.user_logged_out, failed=self.failed)

    def secrets(self) -> tuple[tuple[str, str], ...]:
        """(token, RFC 7009 type hint) to revoke, the refresh token first (RFC 7009 §2.1)."""
        out = []
        if self.refresh_token:
            out.append((self.refresh_token, "refresh_token"))
        if self.access_token:
            out.append((self.access_token, "access_token"))
        return tuple(out)

    def encode(self) -> bytes:
        doc = asdict(self)
        doc["scopes"] = list(self.scopes)
        doc["failed"] = self.failed.as_dict() if self.failed else None
        return bytes(msgpack.packb(doc, use_bin_type=True))

    @classmethod
    def decode(cls, raw: bytes, what: str = "token record") -> TokenRecord:
        return cls.from_dict(decode_map(raw, what), what)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], what: str = "token record") -> TokenRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known and v is not None}
        try:
            if "scopes" in values:
                values["scopes"] = tuple(str(s) for s in values["scopes"])
            failed = values.get("failed")
            if failed is not None:
                values["failed"] = Problem(str(failed["kind"]), str(failed["message"]))
            record = cls(**values)
            _check_types(record)
        except (TypeError, KeyError, ValueError) as e:
            raise RecordError(f"the {what} is malformed ({type(e).__name__})") from None
        return record

    def but(self, **changes: Any) -> TokenRecord:
        return replace(self, **changes)


def decode_map(raw: bytes, what: str) -> dict[str, Any]:
    """A msgpack map as the store writes it; RecordError names `what` when it is not one."""
    try:
        doc = msgpack.unpackb(raw, raw=False)
    except Exception:
        raise RecordError(f"the {what} is unreadable") from None
    if not isinstance(doc, dict):
        raise RecordError(f"the {what} is not a record")
    return doc


_STR = ("access_token", "refresh_token", "token_type", "issuer", "token_endpoint", "revocation_endpoint",
        "client_id", "client_secret", "auth_method", "resource", "url")
_NUM = ("issued_at", "expires_at", "last_refresh_at", "logged_in_at")


def _check_types(r: TokenRecord) -> None:
    for name in _STR:
        v = getattr(r, name)
        if v is not None and not isinstance(v, str):
            raise TypeError(name)
    for name in _NUM:
        v = getattr(r, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise TypeError(name)
    if not isinstance(r.generation, int) or not isinstance(r.refresh_count, int):
        raise TypeError("generation")
    if not isinstance(r.expires_from_jwt, bool):
        raise TypeError("expires_from_jwt")
