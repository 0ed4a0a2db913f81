"""SSE `GET /events` (docs/architecture.md "Events"): ids, a ping every 15 s, Last-Event-ID replay from the hub's ring."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from actors.messages import Published
from mcpproxy.gateway.shared import BRIDGE, FANOUT, ApiError

PING_EVERY = 15.0


def frame(ev: Published) -> bytes:
    data = json.dumps({"payload": ev.payload, "timestamp": ev.timestamp}, separators=(",", ":"))
    return f"id: {ev.id}\nevent: {ev.name}\ndata: {data}\n\n".encode()


def _ping() -> bytes:
    return f"event: ping\ndata: {json.dumps({'payload': {}, 'timestamp': time.time()})}\n\n".encode()


def _matches(ev: Published, server: str | None) -> bool:
    if server is None:
        return True
    p: dict[str, Any] = ev.payload
    return p.get("server_name") == server or p.get("name") == server


async def handler(request: web.Request) -> web.StreamResponse:
    raw_last = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    last_id: int | None = None
    if raw_last:
        try:
            last_id = int(raw_last)
        except ValueError:
            raise ApiError(400, "Last-Event-ID must be an event id given by this service") from None
    server = request.query.get("server")
    fanout = request.app[FANOUT]
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    q = fanout.add()  # subscribe before asking for the replay, so nothing falls between the two
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 2000\n: connected\n\n")
        sent = last_id or 0
        snap = await request.app[BRIDGE].snapshot(since_id=last_id)
        for old in snap.events:
            if _matches(old, server):
                await resp.write(frame(old))
            sent = max(sent, old.id)
        if last_id is None:
            # An id with no data sets the client's last-event-id (HTML SSE §9.2.6) without an event: a client
            # that hears nothing before the service restarts still resumes from here, and misses nothing.
            await resp.write(f"id: {snap.last_id}\n\n".encode())
        while True:
            try:
                ev: Published | None = await asyncio.wait_for(q.get(), PING_EVERY)
            except TimeoutError:
                await resp.write(_ping())
                continue
            if ev is None:
                break
            if ev.id <= sent or not _matches(ev, server):
                continue
            sent = ev.id
            await resp.write(frame(ev))
    except ConnectionResetError:
        pass
    finally:
        fanout.remove(q)
    return resp
