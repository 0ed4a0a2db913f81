"""Events from the hub to every SSE client: a bounded queue per client, so a slow one never holds the others."""

from __future__ import annotations

import asyncio

from actors.messages import Published

CLIENT_QUEUE = 1000


class EventFanout:
    """Bounded queue per SSE client; a client that falls that far behind is dropped (it reconnects and replays)."""

    def __init__(self) -> None:
        self.clients: set[asyncio.Queue[Published | None]] = set()

    def add(self) -> asyncio.Queue[Published | None]:
        q: asyncio.Queue[Published | None] = asyncio.Queue(CLIENT_QUEUE)
        self.clients.add(q)
        return q

    def remove(self, q: asyncio.Queue[Published | None]) -> None:
        self.clients.discard(q)

    def publish(self, ev: Published) -> None:
        for q in list(self.clients):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                self.clients.discard(q)
                q.get_nowait()
                q.put_nowait(None)  # tells that stream to end

    def close_all(self) -> None:
        for q in list(self.clients):
            while not q.empty():
                q.get_nowait()
            q.put_nowait(None)
        self.clients.clear()
