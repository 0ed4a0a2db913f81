"""The status object of DESIGN §2 "Status": one pure function from a server's state to its JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mcpproxy.config import ServerConfig
from mcpproxy.policy import refresh_due_at

OAUTH_STATUSES = ("none", "authenticated", "expired", "error")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Runtime:
    """What a TokenActor knows besides its persisted record; never holds a secret."""

    refresh_state: str = "idle"
    retry_count: int = 0
    last_error: dict[str, str] | None = None
    failed: bool = False
    user_logged_out: bool = False
    next_refresh_at: float | None = None
    connected: bool | None = None
    last_probe_at: float | None = None
    missing_scopes: tuple[str, ...] = field(default_factory=tuple)


def oauth_status(record: dict[str, Any] | None, rt: Runtime, now: float) -> str:
    if not record or not record.get("access_token"):
        return "error" if rt.failed else "none"
    if rt.failed:
        return "error"
    expires_at = record.get("expires_at")
    if expires_at is not None and now >= expires_at:
        return "expired"
    return "authenticated"


def needs_login(record: dict[str, Any] | None, rt: Runtime, now: float, threshold: float) -> bool:
    status = oauth_status(record, rt, now)
    if status in ("none", "error") or rt.refresh_state == "failed" or rt.missing_scopes:
        return True
    assert record is not None
    if not record.get("refresh_token"):
        # Nothing to refresh with: ask for a login once the token passes its refresh point.
        due = refresh_due_at(record["issued_at"], record.get("expires_at"), min(threshold, 0.95))
        return due is not None and now >= due
    return False


def build_status(server: ServerConfig, record: dict[str, Any] | None, rt: Runtime, now: float,
                 threshold: float) -> dict[str, Any]:
    has_token = bool(record and record.get("access_token"))
    return {
        "name": server.name,
        "url": server.url,
        "protocol": server.protocol,
        "enabled": server.enabled,
        "is_oauth": True,
        "oauth_status": oauth_status(record, rt, now),
        "token_held": has_token,
        "refresh_state": rt.refresh_state,
        "token_expires_at": iso(record.get("expires_at")) if has_token and record else None,
        "next_refresh_at": iso(rt.next_refresh_at),
        "last_refresh_at": iso(record.get("last_refresh_at")) if record else None,
        "refresh_count": int(record.get("refresh_count", 0)) if record else 0,
        "retry_count": rt.retry_count,
        "last_error": rt.last_error,
        "action": "login" if needs_login(record, rt, now, threshold) else None,
        "user_logged_out": rt.user_logged_out,
        "connected": rt.connected,
        "last_probe_at": iso(rt.last_probe_at),
        "scopes": list(record.get("scopes") or []) if has_token and record else [],
        "missing_scopes": list(rt.missing_scopes),
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
        "next_refresh_at": None,
        "last_refresh_at": None,
        "refresh_count": 0,
        "retry_count": 0,
        "last_error": None,
        "action": None,
        "user_logged_out": False,
        "connected": None,
        "last_probe_at": None,
        "scopes": [],
        "missing_scopes": [],
    }
