"""The status object (docs/architecture.md "Status object"): one pure function from a server's state to its JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mcpproxy.config import ServerConfig
from mcpproxy.policy import refresh_due_at
from mcpproxy.record import Problem, TokenRecord

OAUTH_STATUSES = ("none", "authenticated", "expired", "error")
#: Where `token_expires_at` comes from: the answer's `expires_in`, the access token's JWT `exp` (a hint),
#: or nowhere — then there is no proactive refresh and an upstream 401 triggers one (docs/providers.md).
TOKEN_EXPIRY_SOURCES = ("expires_in", "jwt_exp", "unknown")


def token_expiry(record: TokenRecord | None) -> str | None:
    if record is None or not record.has_token:
        return None
    if record.expires_at is None:
        return "unknown"
    return "jwt_exp" if record.expires_from_jwt else "expires_in"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Runtime:
    """What a session knows besides its persisted record; never holds a secret."""

    refresh_state: str = "idle"
    retry_count: int = 0
    last_error: Problem | None = None
    retrying_since: float | None = None  # when the current failing streak began
    failed: bool = False
    user_logged_out: bool = False
    next_refresh_at: float | None = None
    connected: bool | None = None
    last_probe_at: float | None = None
    missing_scopes: tuple[str, ...] = field(default_factory=tuple)


def oauth_status(record: TokenRecord | None, rt: Runtime, now: float) -> str:
    if record is None or not record.has_token:
        return "error" if rt.failed else "none"
    if rt.failed:
        return "error"
    if record.expires_at is not None and now >= record.expires_at:
        return "expired"
    return "authenticated"


def login_due_at(record: TokenRecord, threshold: float) -> float | None:
    """When a token without a refresh token asks for a login: at its refresh point (never past 95 %)."""
    return refresh_due_at(record.issued_at, record.expires_at, min(threshold, 0.95))


def needs_login(record: TokenRecord | None, rt: Runtime, now: float, threshold: float) -> bool:
    status = oauth_status(record, rt, now)
    if status in ("none", "error") or rt.refresh_state == "failed" or rt.missing_scopes:
        return True
    assert record is not None
    if not record.refresh_token:
        due = login_due_at(record, threshold)
        return due is not None and now >= due
    return False


def build_status(server: ServerConfig, record: TokenRecord | None, rt: Runtime, now: float,
                 threshold: float) -> dict[str, Any]:
    held = record if record is not None and record.has_token else None
    return {
        "name": server.name,
        "url": server.url,
        "protocol": server.protocol,
        "enabled": server.enabled,
        "is_oauth": True,
        "oauth_status": oauth_status(record, rt, now),
        "token_held": held is not None,
        "refresh_state": rt.refresh_state,
        "token_expires_at": iso(held.expires_at) if held else None,
        "token_expiry": token_expiry(held),
        "next_refresh_at": iso(rt.next_refresh_at),
        "last_refresh_at": iso(record.last_refresh_at) if record else None,
        "refresh_count": record.refresh_count if record else 0,
        "retry_count": rt.retry_count,
        "retrying_since": iso(rt.retrying_since),
        "last_error": rt.last_error.as_dict() if rt.last_error else None,
        "action": "login" if needs_login(record, rt, now, threshold) else None,
        "user_logged_out": rt.user_logged_out,
        "connected": rt.connected,
        "last_probe_at": iso(rt.last_probe_at),
        "scopes": list(held.scopes) if held else [],
        "missing_scopes": list(rt.missing_scopes),
        "oauth_settings": server.oauth.describe() if server.oauth else None,
    }


def static_status(server: ServerConfig) -> dict[str, Any]:
    """A server without a TokenActor: not OAuth, or disabled."""
    return {
        "name": server.name,
        "url": server.url,
        "protocol": server.protocol,
        "enabled": server.enabled,
        "is_oauth": server.is_oauth,
        "oauth_status": "none",
        "token_held": False,
        "refresh_state": "idle",
        "token_expires_at": None,
        "token_expiry": None,
        "next_refresh_at": None,
        "last_refresh_at": None,
        "refresh_count": 0,
        "retry_count": 0,
        "retrying_since": None,
        "last_error": None,
        "action": None,
        "user_logged_out": False,
        "connected": None,
        "last_probe_at": None,
        "scopes": [],
        "missing_scopes": [],
        "oauth_settings": server.oauth.describe() if server.is_oauth and server.oauth else None,
    }
