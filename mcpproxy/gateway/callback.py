"""`GET /oauth/callback` — the redirect URI: a small page saying the login worked, or why not."""

from __future__ import annotations

import html

from aiohttp import web

from actors.messages import CompleteLogin, Failure, LoginCompleted
from mcpproxy.gateway.shared import BRIDGE, LOGINS

EXCHANGE_TIMEOUT = 45.0

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} — mcpproxy</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}
h1{{font-size:1.4rem}} .ok{{color:#15803d}} .bad{{color:#b91c1c}}
@media (prefers-color-scheme:dark){{body{{background:#111;color:#eee}}}}</style></head>
<body><h1 class="{cls}">{title}</h1><p>{text}</p></body></html>"""


def page(title: str, text: str, ok: bool, status: int = 200) -> web.Response:
    body = PAGE.format(title=html.escape(title), text=html.escape(text), cls="ok" if ok else "bad")
    # No-store, no-referrer and a CSP without script come from app.secure_headers: the code is in our URL.
    return web.Response(text=body, status=status, content_type="text/html")


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
        return page("Login failed", f"The authorization server sent no code for '{name}'.", False, 400)
    msg = CompleteLogin(state=state, code=q.get("code", ""), iss=q.get("iss"), error=q.get("error"),
                        error_description=q.get("error_description"))
    answer = await request.app[BRIDGE].ask_server(name, msg, EXCHANGE_TIMEOUT)
    if isinstance(answer, LoginCompleted):
        return page("Logged in", f"mcpproxy is now logged in to '{name}' and keeps the session fresh. "
                    "You can close this tab.", True)
    message = answer.message if isinstance(answer, Failure) else "no answer from the service"
    return page("Login failed", f"'{name}': {message}", False, 400)
