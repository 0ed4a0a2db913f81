"""The gateway's way into the actors: blocking asks in a thread pool, events from a listener thread.

An ActorSystem handle shared between threads mixes up replies, so every ask opens its own
`private()` context. The listener thread owns one context subscribed to the EventHub and never
blocks on anyone: it hands each event to the event loop, where bounded per-client queues live.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from thespian.actors import ActorSystem, PoisonMessage

from actors.messages import (
    GetActors,
    GetSnapshot,
    Published,
    Snapshot,
    Subscribe,
    Subscribed,
    Unsubscribe,
)

log = logging.getLogger("mcpproxy.gateway")

ASK_TIMEOUT = 10.0
HUB_CHECK = 5.0
#: servers.changed reasons after which an actor lives at a new address.
MOVED = frozenset({"actor_restarted", "config_added", "config_changed", "worker_restarted", "hub_restarted"})


class ActorUnavailable(RuntimeError):
    """An actor did not answer in time."""


class ActorBridge:
    def __init__(self, asys: ActorSystem, supervisor: Any, hub: Any, actors: dict[str, Any],
                 actors_version: int = 0) -> None:
        self.asys = asys
        self.supervisor = supervisor
        self.hub = hub
        self.actors = dict(actors)
        self.actors_version = actors_version
        self._actors_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ask")
        #: One thread for tells, so that they arrive in the order they were made (statuses must not overtake).
        self.teller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tell")
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        #: Called on the event loop after the hub was restarted (it forgot what others told it).
        self.on_hub_moved: Callable[[], None] | None = None

    def ask_sync(self, addr: Any, msg: Any, timeout: float = ASK_TIMEOUT) -> Any:
        with self.asys.private() as ctx:
            answer = ctx.ask(addr, msg, timeout)
        if answer is None:
            raise ActorUnavailable(f"no answer to {type(msg).__name__} within {timeout:.0f}s")
        if isinstance(answer, PoisonMessage):
            raise ActorUnavailable(f"{type(msg).__name__} could not be handled")
        return answer

    def tell_sync(self, addr: Any, msg: Any) -> None:
        with self.asys.private() as ctx:
            ctx.tell(addr, msg)

    async def ask(self, addr: Any, msg: Any, timeout: float = ASK_TIMEOUT) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.ask_sync, addr, msg, timeout)

    async def ask_server(self, name: str, msg: Any, timeout: float = ASK_TIMEOUT) -> Any:
        addr = self.actors.get(name)
        if addr is None:
            raise ActorUnavailable(f"server {name!r} has no running actor")
        try:
            return await self.ask(addr, msg, timeout)
        except ActorUnavailable:
            # The Supervisor may have restarted it at a new address: ask once more there.
            await self.refresh_addresses()
            new = self.actors.get(name)
            if new is None or new == addr:
                raise
            return await self.ask(new, msg, timeout)

    def take_actors(self, actors: dict[str, Any], version: int) -> bool:
        """Keeps this list of actor addresses unless a newer one is held already; whether it was kept. The
        event listener's GetActors and a reload's answer may cross: the older must not undo the newer."""
        with self._actors_lock:
            if version < self.actors_version:
                return False
            self.actors, self.actors_version = dict(actors), version
            return True

    async def refresh_addresses(self) -> None:
        answer = await self.ask(self.supervisor, GetActors())
        self.take_actors(answer.actors, answer.actors_version)

    def _refresh_addresses_sync(self) -> None:
        try:
            answer = self.ask_sync(self.supervisor, GetActors())
            self.take_actors(answer.actors, answer.actors_version)
            self.hub = answer.hub or self.hub
        except ActorUnavailable as e:
            log.error("could not refresh actor addresses: %s", e)

    async def snapshot(self, since_id: int | None = None) -> Snapshot:
        answer = await self.ask(self.hub, GetSnapshot(since_id))
        assert isinstance(answer, Snapshot)
        return answer

    def start_listener(self, loop: asyncio.AbstractEventLoop, on_event: Callable[[Published], None]) -> None:
        ready = threading.Event()

        def run() -> None:
            with self.asys.private() as ctx:
                answer = ctx.ask(self.hub, Subscribe(), ASK_TIMEOUT)
                if not isinstance(answer, Subscribed):
                    log.error("could not subscribe to events: %r", type(answer).__name__)
                ready.set()
                next_check = time.monotonic() + HUB_CHECK
                while not self._stop.is_set():
                    if time.monotonic() >= next_check:
                        # A restarted hub has a new address: follow it, or the UI would go quiet.
                        next_check = time.monotonic() + HUB_CHECK
                        hub = self.hub
                        self._refresh_addresses_sync()
                        if self.hub != hub:
                            log.warning("the event hub was restarted; subscribing again")
                            ctx.tell(self.hub, Subscribe())
                            if self.on_hub_moved is not None:
                                loop.call_soon_threadsafe(self.on_hub_moved)
                    msg = ctx.listen(0.5)
                    if isinstance(msg, Published):
                        if msg.payload.get("reason") in MOVED:
                            # Before anyone hears of it, so whoever reacts reaches the actor's new address.
                            self._refresh_addresses_sync()
                        loop.call_soon_threadsafe(on_event, msg)
                ctx.tell(self.hub, Unsubscribe())

        self._listener = threading.Thread(target=run, name="event-listener", daemon=True)
        self._listener.start()
        ready.wait(ASK_TIMEOUT)

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=2)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.teller.shutdown(wait=False, cancel_futures=True)
