"""Supervisor: spawns a TokenActor per enabled OAuth server, restarts the ones that die, applies reloads.

It is the only top-level actor: the EventHub, the OAuth worker and the TokenActors are its children,
so their messages to each other take one hop through it (multiprocQueueBase routes via parents).
It also watches the wall clock against the monotonic one, so after the machine sleeps every
TokenActor re-checks its timers within seconds (Thespian's timers stop while the machine sleeps).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from datetime import timedelta
from typing import Any

from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage

from actors.base import GuardedActor, name_process
from actors.event_hub import EventHub
from actors.messages import (
    Actors,
    ClockJump,
    Configure,
    Drain,
    Drained,
    Event,
    GetActors,
    Reload,
    Reloaded,
    ServerRemoved,
    Start,
    Started,
    StatusUpdate,
)
from actors.oauth_worker import OAuthWorker
from actors.prefork import after_fork_baseline, forget_children_queues, share_heap
from actors.token_actor import TokenActor
from mcpproxy.config import Config, ServerConfig
from mcpproxy.sealing import DataKey, Sealer
from mcpproxy.status import static_status
from mcpproxy.store import TokenStore, compact, open_or_set_aside

log = logging.getLogger("mcpproxy.supervisor")

CLOCK_TICK = 2.0
CLOCK_JUMP = 1.5  # seconds of wall-clock drift against the monotonic clock that mean "we slept"
RESTARTS_PER_MINUTE = 5


class Supervisor(GuardedActor):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.name = "supervisor"
        self.config: Config | None = None
        self.hub: Any = None
        self.worker: Any = None
        self.actors: dict[str, Any] = {}
        #: Grows with every change of `actors`: the gateway keeps the newest list it heard of, whatever the
        #: order answers reach it in (a reload's answer and a listener's GetActors cross).
        self.actors_version = 0
        self.servers: dict[str, ServerConfig] = {}
        self.restarts: dict[str, deque[float]] = {}
        self.stopping = False
        self.clock_offset = 0.0
        self.service_pid = 0
        self.data_key: DataKey | None = None
        #: multiprocessing's after-fork registry before our first child (actors/prefork.py).
        self.fork_baseline: frozenset[object] | None = None
        #: A clean stop in progress: who asked, and the TokenActors it still waits for.
        self.draining: tuple[list[Any], list[Any]] | None = None

    def receiveMsg_Start(self, msg: Start, sender: Any) -> None:
        name_process("mcpproxy-sup")
        self.config = msg.config
        self.service_pid = msg.service_pid
        self.data_key = msg.data_key
        store, note = open_or_set_aside(msg.config.data_dir, Sealer(msg.data_key) if msg.data_key else None)
        sealed = _seal_at_start(store)
        store.close()
        if sealed:
            compact(msg.config.data_dir)
        share_heap()  # our children are forked from here: share, don't copy
        self.hub = self._create(EventHub)
        self.worker = self._create(OAuthWorker)
        for server in msg.config.servers:
            self._add(server, "start")
        self.clock_offset = time.time() - time.monotonic()
        self.wakeupAfter(timedelta(seconds=CLOCK_TICK), payload="clock")
        self.send(sender, Started(self.hub, dict(self.actors), note, self.actors_version))

    def _create(self, actor_class: type) -> Any:
        """createActor, after our earlier children's queues left multiprocessing's after-fork registry: at
        1,000 servers each TokenActor re-made the queues of the ~500 forked before it (actors/prefork.py)."""
        if self.fork_baseline is None:
            self.fork_baseline = after_fork_baseline()
        forget_children_queues(self.fork_baseline)
        return self.createActor(actor_class)

    def _configure(self, addr: Any, server: ServerConfig, reason: str) -> None:
        assert self.config is not None
        self.send(addr, Configure(server, self.config.refresh_threshold, self.config.redirect_uri,
                                  str(self.config.data_dir), self.hub, self.worker, reason, self.data_key))

    def _add(self, server: ServerConfig, reason: str) -> None:
        self.servers[server.name] = server
        if server.is_oauth and server.enabled:
            addr = self._create(TokenActor)
            self.actors[server.name] = addr
            self.actors_version += 1
            self._configure(addr, server, reason)
        else:
            self.send(self.hub, StatusUpdate(server.name, static_status(server)))

    def _remove(self, name: str) -> None:
        self.servers.pop(name, None)
        addr = self.actors.pop(name, None)
        if addr is not None:
            self.actors_version += 1
            self.send(addr, ActorExitRequest())
        self.send(self.hub, ServerRemoved(name))

    def receiveMsg_Reload(self, msg: Reload, sender: Any) -> None:
        old = self.servers
        new = {s.name: s for s in msg.config.servers}
        assert self.config is not None
        everyone = (self.config.refresh_threshold, self.config.redirect_uri) != (
            msg.config.refresh_threshold, msg.config.redirect_uri)
        self.config = msg.config
        added = tuple(n for n in new if n not in old)
        removed = tuple(n for n in old if n not in new)
        changed = tuple(n for n in new if n in old and (new[n] != old[n] or everyone))
        for name in removed:
            self._remove(name)
        for name in changed:
            after = new[name]
            if name in self.actors and after.is_oauth and after.enabled:
                self.servers[name] = after
                self._configure(self.actors[name], after, "config_changed")
            else:
                self._remove(name)
                self._add(after, "config_changed")
        for name in added:
            self._add(new[name], "config_added")
        for name in (*removed, *added, *changed):
            log.info("server=%s config %s", name, "removed" if name in removed else "added" if name in added else "changed")
        self.send(sender, Reloaded(dict(self.actors), added, removed, changed, self.actors_version))

    def receiveMsg_Drain(self, msg: Drain, sender: Any) -> None:
        """A clean stop: every TokenActor finishes the refreshes and code exchanges in flight (their rotated
        tokens persisted) before the actor system stops; answered when all have, or after msg.timeout."""
        if self.draining is not None:
            self.draining[0].append(sender)  # asked again: one drain, one deadline
            return
        self.draining = ([sender], list(self.actors.values()))
        for addr in self.draining[1]:
            self.send(addr, Drain(msg.timeout))
        self.wakeupAfter(timedelta(seconds=msg.timeout), payload="drain")
        self._drained_if_done()

    def receiveMsg_Drained(self, msg: Drained, sender: Any) -> None:
        if self.draining is not None:
            self.draining = (self.draining[0], [a for a in self.draining[1] if a != sender])
            self._drained_if_done()

    def _drained_if_done(self, deadline: bool = False) -> None:
        if self.draining is None or (self.draining[1] and not deadline):
            return
        askers, left = self.draining
        waiting = tuple(sorted(name for name, addr in self.actors.items() if addr in left))
        for asker in askers:
            self.send(asker, Drained(waiting))
        self.draining = None

    def receiveMsg_GetActors(self, msg: GetActors, sender: Any) -> None:
        self.send(sender, Actors(dict(self.actors), self.hub, self.actors_version))

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: Any) -> None:
        self.stopping = True

    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: Any) -> None:
        if self.stopping:
            return
        dead = msg.childAddress
        if dead in (self.worker, self.hub):
            # Both are shared by every TokenActor: start a new one and tell each where it is.
            what = "worker" if dead == self.worker else "hub"
            log.error("the %s stopped; starting a new one", "OAuth worker" if what == "worker" else "event hub")
            if what == "worker":
                self.worker = self._create(OAuthWorker)
            else:
                self.hub = self._create(EventHub)
            for name, addr in self.actors.items():
                self._configure(addr, self.servers[name], f"{what}_restarted")
            return
        found = next((n for n, a in self.actors.items() if a == dead), None)
        if found is None:
            return  # removed on purpose
        name = found
        recent = self.restarts.setdefault(name, deque(maxlen=RESTARTS_PER_MINUTE))
        now = time.monotonic()
        if len(recent) == RESTARTS_PER_MINUTE and now - recent[0] < 60:
            log.error("server=%s its actor died %d times within a minute; not restarting it", name, len(recent))
            del self.actors[name]
            self.actors_version += 1
            status = {**static_status(self.servers[name]), "is_oauth": True, "action": "login",
                      "last_error": {"kind": "config", "message": "its actor keeps failing; see the log"}}
            self.send(self.hub, Event("servers.changed", {**status, "reason": "actor_failed"}, time.time()))
            return
        recent.append(now)
        log.warning("server=%s its actor stopped; restarting it with its stored state", name)
        addr = self._create(TokenActor)
        self.actors[name] = addr
        self.actors_version += 1
        self._configure(addr, self.servers[name], "actor_restarted")

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:
        if msg.payload == "drain":
            self._drained_if_done(deadline=True)
            return
        if msg.payload != "clock" or self.stopping:
            return
        if self.service_pid and not _alive(self.service_pid):
            # The service died without stopping us (kill -9): never keep refreshing behind a new instance's
            # back. Thespian's daemonized admin, its logger and every actor share this process group.
            log.error("the service process %d is gone; stopping every actor", self.service_pid)
            os.killpg(os.getpgid(0), signal.SIGKILL)
        offset = time.time() - time.monotonic()
        if abs(offset - self.clock_offset) > CLOCK_JUMP:
            log.info("the wall clock moved %.1fs against the monotonic clock (sleep?); re-checking timers",
                     offset - self.clock_offset)
            for addr in self.actors.values():
                self.send(addr, ClockJump())
        self.clock_offset = offset
        self.wakeupAfter(timedelta(seconds=CLOCK_TICK), payload="clock")




def _seal_at_start(store: TokenStore) -> int:
    """Seals what an earlier version left in plaintext, before any TokenActor reads it (no login is lost), and
    says in one line which servers' records a different data key sealed: those need a login."""
    if store.sealer is None:
        return 0
    where = store.sealer.key.where
    sealed = store.seal_plaintext()
    if sealed:
        log.info("store: sealed %d plaintext record(s) with the data key from %s", sealed, where)
    foreign = store.foreign_tokens()
    if foreign:
        log.error("store: the token records of %s were sealed with another data key, not the one from %s; "
                  "those servers need login (restore that key to recover them)", ", ".join(foreign), where)
    return sealed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
