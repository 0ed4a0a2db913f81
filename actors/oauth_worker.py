"""OAuthWorker: runs the blocking OAuth HTTP calls so that no TokenActor ever waits on the network.

A thread pool does the calls (bounded in total and per authorization server); the actor itself
only hands out work and, while any is pending, polls for finished calls every few milliseconds —
Thespian lets only the actor's own thread send messages.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from thespian.actors import WakeupMessage

from actors.base import GuardedActor, name_process
from actors.messages import Work, WorkDone
from mcpproxy.oauth import http
from mcpproxy.oauth.errors import OAuthError

log = logging.getLogger("mcpproxy.worker")

MAX_THREADS = 32
#: Concurrent requests to one authorization server. Each server is single-flight already, so this
#: only bounds the load on a shared AS; it is wide enough that a few hanging requests cannot starve the rest.
PER_HOST = 16
POLL = 0.005


class DaemonPool:
    """A bounded pool of daemon threads: a request hanging on a dead server never holds up the exit
    (ThreadPoolExecutor's threads are joined at exit, up to the read timeout)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self.threads = 0
        self.idle = 0
        self.lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self.jobs.put((fut, fn, args))
        with self.lock:
            if self.idle == 0 and self.threads < self.size:
                self.threads += 1
                threading.Thread(target=self._run, name=f"oauth-{self.threads}", daemon=True).start()
        return fut

    def _run(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            fut, fn, args = self.jobs.get()
            with self.lock:
                self.idle -= 1
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 — handed to the actor, which classifies it
                fut.set_exception(e)


class OAuthWorker(GuardedActor):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        name_process("mcpproxy-oauth")  # from its start: till its first work `ps` showed a second mcpproxy-sup
        # requests-oauthlib runs in this process only (docs/architecture.md "OAuth"): loaded as it starts,
        # after the fork, so neither the parent nor any TokenActor carries it.
        import mcpproxy.oauth.token_session  # noqa: F401
        self.pool: DaemonPool | None = None
        self.running: list[tuple[Future[Any], Work, Any, float]] = []
        self.polling = False
        self.host_slots: dict[str, threading.BoundedSemaphore] = {}
        self.local = threading.local()

    def receiveMsg_Work(self, msg: Work, sender: Any) -> None:
        if self.pool is None:  # created here, after fork, never inherited
            self.pool = DaemonPool(MAX_THREADS)
        started = time.time()
        fut = self.pool.submit(self._run, msg)
        self.running.append((fut, msg, sender, started))
        if not self.polling:
            self.polling = True
            self.wakeupAfter(timedelta(seconds=POLL))

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:
        still = []
        for fut, work, asker, started in self.running:
            if fut.done():
                exc = fut.exception()
                what = type(work.op).__name__
                result = fut.result() if exc is None else OAuthError(
                    "protocol", f"{what} failed unexpectedly: {type(exc).__name__}")
                if exc is not None:
                    log.error("worker %s raised %s", what, type(exc).__name__)
                self.send(asker, WorkDone(work.request_id, work.generation, result, started))
            else:
                still.append((fut, work, asker, started))
        self.running = still
        self.polling = bool(still)
        if self.polling:
            self.wakeupAfter(timedelta(seconds=POLL))

    # ---- in the pool's threads ------------------------------------------------------------------

    def _session(self) -> Any:
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = http.new_session()
        return s

    def _slot(self, url: str) -> threading.BoundedSemaphore:
        host = urlsplit(url).netloc
        slot = self.host_slots.get(host)
        if slot is None:
            slot = self.host_slots.setdefault(host, threading.BoundedSemaphore(PER_HOST))
        return slot

    def _run(self, work: Work) -> Any:
        try:
            with self._slot(work.op.where):
                return work.op.run(self._session())
        except OAuthError as e:
            return e
