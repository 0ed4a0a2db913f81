"""`GET /oauth/callback` — the redirect URI: a small page saying the login worked, or why not."""

from __future__ import annotations

import base64
import hashlib
import html
import re

from aiohttp import web

from actors.messages import CompleteLogin, Failure, LoginCompleted
from mcpproxy.gateway.lease import cutting
from mcpproxy.gateway.shared import BRIDGE, LOGINS, OTHER_CSP
from mcpproxy.oauth.errors import clean_server_text

EXCHANGE_TIMEOUT = 45.0
#: RFC 6749 §4.1.2.1: `error` is 1*( %x20-21 / %x23-5B / %x5D-7E ); no real code is longer than this.
ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")
DESCRIPTION_LIMIT = 200

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} — mcpproxy</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}
h1{{font-size:1.4rem}} .ok{{color:#15803d}} .bad{{color:#b91c1c}}
@media (prefers-color-scheme:dark){{body{{background:#111;color:#eee}}}}</style></head>
<body><h1 class="{cls}">{title}</h1><p>{text}</p>{script}</body></html>"""
#: A failed login's tab closes itself when a script opened it (the Web UI's sign-in tab, whose toast then names
#: the server and the reason); a tab the person opened stays, showing why. The opener cannot close it: the Web UI
#: cuts the opener link (the authorization server's page must not reach it), so Chromium moves the tab apart.
CLOSE_SCRIPT = "window.close()"
CLOSE_CSP = (OTHER_CSP + "; script-src 'sha256-"
             + base64.b64encode(hashlib.sha256(CLOSE_SCRIPT.encode()).digest()).decode() + "'")


def page(title: str, text: str, ok: bool, status: int = 200, close: bool = False) -> web.Response:
    script = f"<script>{CLOSE_SCRIPT}</script>" if close else ""
    body = PAGE.format(title=html.escape(title), text=html.escape(text), cls="ok" if ok else "bad", script=script)
    # No-store, no-referrer and a CSP without script come from app.secure_headers: the code is in our URL. The
    # closing page allows that one script, by its hash.
    resp = web.Response(text=body, status=status, content_type="text/html")
    if close:
        resp.headers["Content-Security-Policy"] = CLOSE_CSP
    return resp


def authorization_error(error: str | None, description: str | None) -> tuple[str | None, str | None]:
    """The redirect's `error` and `error_description` as the actor may keep and show them: a code outside
    RFC 6749's characters is replaced, the description loses its control characters and is cut short."""
    if not error:
        return None, None
    if not ERROR_CODE.fullmatch(error):
        return "malformed", "its error code has characters RFC 6749 does not allow"
    return error, clean_server_text(description, DESCRIPTION_LIMIT) or None if description else None


async def handler(request: web.Request) -> web.Response:
    q = request.query
    state = q.get("state", "")
    route = request.app[LOGINS].pop(state, None) if state else None  # single use
    if route is None:
        return page("Login link not recognised",
                    "This login link is unknown, already used or expired. Start the login again "
                    "from the Web UI or with `mcpproxy-ctl login NAME`.", False, 400)
    name = route[0]
    if not q.get("code") and not q.get("error"):
        return page("Login failed", f"The authorization server sent no code for '{name}'.", False, 400, close=True)
    error, description = authorization_error(q.get("error"), q.get("error_description"))
    msg = CompleteLogin(state=state, code=q.get("code", ""), iss=q.get("iss"), error=error,
                        error_description=description)
    answer = await cutting(request.app, name, request.app[BRIDGE].ask_server(name, msg, EXCHANGE_TIMEOUT))
    if isinstance(answer, LoginCompleted):
        return page("Logged in", f"mcpproxy is now logged in to '{name}' and keeps the session fresh. "
                    "You can close this tab.", True)
    message = answer.message if isinstance(answer, Failure) else "no answer from the service"
    return page("Login failed", f"'{name}': {message}", False, 400, close=True)
