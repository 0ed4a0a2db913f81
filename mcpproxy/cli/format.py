"""How the CLIs show things: relative times, auth badges, the status table, one line per event."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import click

WARN_UNDER = 300.0  # seconds: an expiry this close shows amber, like the Web UI

BADGES = {
    "authenticated": ("Authenticated", "green"),
    "expired": ("Token Expired", "yellow"),
    "error": ("Auth Error", "red"),
}


def clean(text: object) -> str:
    """What the service sent, fit for a terminal: every control character (ESC, BEL, CR, LF, C1 codes such as
    CSI) and other non-printable one (bidi overrides) left out, so no answer can retitle, clear or write the
    clipboard of the terminal it is printed on (OSC 0, CSI 2J, OSC 52)."""
    return "".join(c for c in str(text) if c.isprintable())


def parse_time(value: str | float | None) -> float | None:
    """An ISO 8601 time from the API ("…Z") or a unix timestamp → unix seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """4m 10s, 2h 5m, 3d 4h, 12s: the two largest units."""
    left = int(round(abs(seconds)))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count or parts or unit == "s":
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])


def relative(value: str | float | None, now: float | None = None, *, past: str = "EXPIRED") -> str:
    """ "in 4m 10s"; `past` (default "EXPIRED") once the time has passed; "—" when there is none."""
    ts = parse_time(value)
    if ts is None:
        return "—"
    now = time.time() if now is None else now
    return past if ts <= now else f"in {duration(ts - now)}"


def expiry_color(value: str | float | None, now: float | None = None) -> str | None:
    ts = parse_time(value)
    if ts is None:
        return None
    left = ts - (time.time() if now is None else now)
    if left <= 0:
        return "red"
    return "yellow" if left < WARN_UNDER else None


def badge(status: dict[str, Any]) -> tuple[str, str | None]:
    """The words and color the Web UI shows for a server's auth state."""
    if not status.get("is_oauth"):
        return "no OAuth", None
    if not status.get("enabled", True):
        return "Disabled", None
    oauth = status.get("oauth_status", "none")
    if oauth in BADGES:
        return BADGES[oauth]
    if status.get("user_logged_out"):
        return "Logged out", None
    return "Not logged in", "yellow"


def error_sentence(status: dict[str, Any]) -> str:
    err = status.get("last_error")
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if status.get("action") == "login" and status.get("is_oauth"):
        return f"log in with: {login_command(str(status.get('name')))}"
    return ""


def login_command(name: str) -> str:
    """The login command in the words of the CLI being used: `mcpproxy auth login -s NAME` or `mcpproxy-ctl login`."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().info_name == "mcpproxy":
        return f"mcpproxy auth login -s {name}"
    return f"mcpproxy-ctl login {name}"


def _cell(text: str, width: int, color: str | None, use_color: bool) -> str:
    padded = text.ljust(width)
    return click.style(padded, fg=color) if color and use_color else padded


def status_table(statuses: list[dict[str, Any]], now: float | None = None, *, color: bool = False) -> str:
    """NAME  STATUS  EXPIRES  NEXT REFRESH  LAST ERROR — one row per server."""
    now = time.time() if now is None else now
    header = ["NAME", "STATUS", "EXPIRES", "NEXT REFRESH", "LAST ERROR"]
    rows: list[list[tuple[str, str | None]]] = []
    for s in statuses:
        words, badge_color = badge(s)
        oauth = bool(s.get("is_oauth"))
        expires = relative(s.get("token_expires_at"), now) if oauth else "—"
        if oauth and s.get("token_expiry") == "unknown":
            expires = "unknown"  # the server gave no lifetime: refreshed when the upstream says 401
        nxt = relative(s.get("next_refresh_at"), now, past="now") if oauth else "—"
        rows.append([
            (clean(s.get("name", "")), None),
            (words, badge_color),
            (expires, expiry_color(s.get("token_expires_at"), now) if oauth else None),
            (nxt, None),
            (clean(error_sentence(s)), "red" if s.get("last_error") else None),
        ])
    widths = [max([len(header[i])] + [len(r[i][0]) for r in rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header[:-1], widths, strict=True)) + "  " + header[-1]]
    for r in rows:
        cells = [_cell(text, widths[i], c, color) for i, (text, c) in enumerate(r[:-1])]
        last_text, last_color = r[-1]
        last = click.style(last_text, fg=last_color) if last_color and color and last_text else last_text
        lines.append(("  ".join(cells) + "  " + last).rstrip())
    if not statuses:
        lines.append("(no servers configured)")
    return "\n".join(lines)


def event_line(name: str, data: dict[str, Any], now: float | None = None) -> str:
    """One human line per SSE event: time, event, server, what happened. Never a token (none is sent)."""
    payload: dict[str, Any] = data.get("payload", {}) if isinstance(data, dict) else {}
    ts = data.get("timestamp") if isinstance(data, dict) else None
    clock = time.strftime("%H:%M:%S", time.localtime(ts if isinstance(ts, int | float) else time.time()))
    server = payload.get("server_name") or payload.get("name") or "-"
    detail = ""
    if name == "servers.changed":
        detail = f"{badge(payload)[0]} ({payload.get('reason', 'changed')})"
        err = error_sentence(payload) if payload.get("last_error") else ""
        if err:
            detail += f": {err}"
    elif name == "oauth.token_refreshed":
        detail = f"token refreshed, expires {relative(payload.get('expires_at'), now)}"
    elif name == "oauth.refresh_failed":
        detail = f"refresh failed: {payload.get('error')}"
        if payload.get("action"):
            detail += f" (action: {payload['action']})"
    elif name == "oauth.login_completed":
        detail = "logged in"
    elif name == "oauth.logout":
        detail = f"logged out ({payload.get('reason', 'user')})" + (
            "; tokens revoked" if payload.get("revoked") else "")
    else:
        detail = ", ".join(f"{k}={v}" for k, v in payload.items() if k not in ("server_name", "name"))
    return clean(f"{clock}  {name:<22} {server:<16} {detail}".rstrip())
