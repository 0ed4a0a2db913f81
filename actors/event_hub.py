"""EventHub: numbers events, keeps a ring of recent ones and every server's latest status, fans out.

TokenActors never send to the gateway; they send here. Subscribers are the gateway's listener
contexts, which read continuously, so a send from here does not block.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Any

from actors.base import GuardedActor, name_process
from actors.messages import (
    Event,
    GetSnapshot,
    LogLine,
    Published,
    RefreshMeasured,
    ServerRemoved,
    Snapshot,
    StatusUpdate,
    Subscribe,
    Subscribed,
    Unsubscribe,
    UpstreamStatus,
)

RING = 2000
#: Upper bounds (seconds) of the refresh lateness histogram in /metrics.
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class EventHub(GuardedActor):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.name = "hub"
        # Ids keep growing across restarts, so a browser's old Last-Event-ID never hides new events.
        self.next_id = int(time.time() * 1000)
        self.ring: deque[Published] = deque(maxlen=RING)
        self.statuses: dict[str, dict[str, Any]] = {}
        #: The gateway's part of each status (tools, a stdio process): merged into every status of that server.
        self.upstream: dict[str, dict[str, Any]] = {}
        self.subscribers: list[Any] = []
        self.refreshes: Counter[str] = Counter()
        self.lateness_buckets = [0] * (len(LATENESS_BUCKETS) + 1)
        self.lateness_sum = 0.0
        self.lateness_count = 0

    def receiveMsg_Event(self, msg: Event, sender: Any) -> None:
        payload = msg.payload
        if msg.name == "servers.changed":
            payload = {**payload, **self.upstream.get(payload["name"], {})}
            status = {k: v for k, v in payload.items() if k != "reason"}
            self.statuses[status["name"]] = status
        self._publish(msg.name, payload, msg.timestamp)

    def _publish(self, name: str, payload: dict[str, Any], timestamp: float) -> None:
        self.next_id += 1
        ev = Published(self.next_id, name, payload, timestamp)
        self.ring.append(ev)
        for sub in self.subscribers:
            self.send(sub, ev)

    def receiveMsg_StatusUpdate(self, msg: StatusUpdate, sender: Any) -> None:
        self.statuses[msg.name] = {**msg.status, **self.upstream.get(msg.name, {})}

    def receiveMsg_UpstreamStatus(self, msg: UpstreamStatus, sender: Any) -> None:
        self.upstream[msg.name] = dict(msg.fields)
        status = self.statuses.get(msg.name)
        if status is None:
            return  # not (or no longer) configured: merged if it comes back
        status = {**status, **msg.fields}
        self.statuses[msg.name] = status
        self._publish("servers.changed", {**status, "reason": msg.reason}, msg.timestamp)

    def receiveMsg_ServerRemoved(self, msg: ServerRemoved, sender: Any) -> None:
        self.statuses.pop(msg.name, None)
        self.upstream.pop(msg.name, None)

    def receiveMsg_LogLine(self, msg: LogLine, sender: Any) -> None:
        logging.getLogger(msg.logger).log(msg.level, "%s", msg.message)

    def receiveMsg_RefreshMeasured(self, msg: RefreshMeasured, sender: Any) -> None:
        self.refreshes[msg.result] += 1
        if msg.lateness is not None:
            late = max(0.0, msg.lateness)
            self.lateness_sum += late
            self.lateness_count += 1
            i = next((i for i, b in enumerate(LATENESS_BUCKETS) if late <= b), len(LATENESS_BUCKETS))
            self.lateness_buckets[i] += 1

    def receiveMsg_Subscribe(self, msg: Subscribe, sender: Any) -> None:
        name_process("mcpproxy-hub")
        if sender not in self.subscribers:
            self.subscribers.append(sender)
        self.send(sender, Subscribed(self.next_id))

    def receiveMsg_Unsubscribe(self, msg: Unsubscribe, sender: Any) -> None:
        self.subscribers = [s for s in self.subscribers if s != sender]

    def receiveMsg_GetSnapshot(self, msg: GetSnapshot, sender: Any) -> None:
        since = msg.since_id
        events = tuple(e for e in self.ring if since is not None and e.id > since)
        metrics = {
            "refreshes": dict(self.refreshes),
            "lateness_buckets": list(zip((*LATENESS_BUCKETS, float("inf")), self.lateness_buckets, strict=True)),
            "lateness_sum": self.lateness_sum,
            "lateness_count": self.lateness_count,
        }
        self.send(sender, Snapshot(dict(self.statuses), events, self.next_id, metrics))
