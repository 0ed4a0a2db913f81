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
from mcpproxy.oauth import discovery, http, registration, revocation, tokens
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
        self.pool: DaemonPool | None = None
        self.running: list[tuple[Future[Any], Work, Any, float]] = []
        self.polling = False
        self.host_slots: dict[str, threading.BoundedSemaphore] = {}
        self.local = threading.local()

    def receiveMsg_Work(self, msg: Work, sender: Any) -> None:
        if self.pool is None:  # created here, after fork, never inherited
            name_process("mcpproxy-oauth")
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
                result = fut.result() if exc is None else OAuthError(
                    "protocol", f"{work.op} failed unexpectedly: {type(exc).__name__}")
                if exc is not None:
                    log.error("worker %s raised %s", work.op, type(exc).__name__)
                self.send(asker, WorkDone(work.request_id, work.op, work.generation, result, started))
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
            return self._call(work.op, work.args)
        except OAuthError as e:
            return e

    def _call(self, op: str, a: dict[str, Any]) -> Any:
        s = self._session()
        if op == "discover":
            with self._slot(a["server_url"]):
                return discovery.discover(a["server_url"], s)
        if op == "register":
            with self._slot(a["metadata"].issuer):
                return registration.register_client(a["metadata"], a["redirect_uri"], scopes=a["scopes"], session=s)
        if op == "exchange":
            with self._slot(a["token_endpoint"]):
                return tokens.exchange_code(
                    a["token_endpoint"], code=a["code"], code_verifier=a["code_verifier"],
                    client_id=a["client_id"], client_secret=a["client_secret"],
                    redirect_uri=a["redirect_uri"], resource=a["resource"], session=s)
        if op == "refresh":
            with self._slot(a["token_endpoint"]):
                return tokens.refresh(
                    a["token_endpoint"], refresh_token=a["refresh_token"], client_id=a["client_id"],
                    client_secret=a["client_secret"], resource=a["resource"], scopes=a["scopes"], session=s)
        if op == "revoke":
            # RFC 7009 §2: the refresh token first (it usually takes its access tokens with it).
            errors = []
            with self._slot(a["endpoint"]):
                for token, hint in a["tokens"]:
                    try:
                        revocation.revoke(a["endpoint"], token=token, token_type_hint=hint,
                                          client_id=a["client_id"], client_secret=a["client_secret"], session=s)
                    except OAuthError as e:
                        errors.append(e)
            if errors:
                return errors[0]
            return True
        if op == "probe":
            with self._slot(a["url"]):
                return probe_mcp(a["url"], a["token"], s)
        return OAuthError("config", f"unknown work {op!r}")


PROBE_PROTOCOL = "2025-06-18"
PROBE_TIMEOUT = (5.0, 10.0)


def probe_mcp(url: str, token: str, session: Any) -> tuple[bool, str]:
    """An MCP `initialize` with the token: (connected, detail). The session it opens is deleted again."""
    auth = {"Authorization": f"Bearer {token}"}
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": PROBE_PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "mcpproxy-probe", "version": "1"}}}
    try:
        r = session.post(url, json=body, timeout=PROBE_TIMEOUT, allow_redirects=False,
                         headers={**auth, "Accept": "application/json, text/event-stream"})
        r.content  # noqa: B018 — an SSE answer ends after the initialize result; read it whole
    except Exception as e:  # noqa: BLE001 — every failure is an answer: not connected, and why
        return False, f"the MCP server is unreachable: {type(e).__name__}"
    sid = r.headers.get("Mcp-Session-Id")
    if sid:
        try:
            session.delete(url, timeout=PROBE_TIMEOUT, allow_redirects=False,
                           headers={**auth, "Mcp-Session-Id": sid, "MCP-Protocol-Version": PROBE_PROTOCOL}).close()
        except Exception as e:  # noqa: BLE001 — a session left behind expires on the server's side
            log.info("probe could not close its MCP session: %s", type(e).__name__)
    if r.status_code == 200:
        return True, "initialize answered HTTP 200"
    return False, f"initialize answered HTTP {r.status_code}"
