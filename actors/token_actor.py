"""TokenActor: one per OAuth server, the shell around its session core (docs/architecture.md "Session core").

Messages arrive one at a time, so login, refresh, logout and token reads are serialized without
locks. Each message becomes one session event; the core answers with a new session and effects,
which this actor carries out in order: persist (LMDB, fsync), send work to the OAuth worker, emit
events to the hub, reply, set a timer. The rules themselves live in mcpproxy/session/core.py.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from thespian.actors import ActorExitRequest, WakeupMessage

from actors.base import GuardedActor, name_process, quiet_idle_wakeups
from actors.messages import (
    ClockJump,
    CompleteLogin,
    Configure,
    Drain,
    Drained,
    Event,
    GetStatus,
    GetToken,
    LogLine,
    Logout,
    RefreshMeasured,
    RefreshNow,
    ScopeRequired,
    StartLogin,
    TokenRefused,
    TokenRejected,
    Work,
    WorkDone,
)
from mcpproxy import session as core
from mcpproxy.oauth import pkce
from mcpproxy.record import RecordError
from mcpproxy.sealing import DataKey, Sealer
from mcpproxy.store import StoreError, TokenStore

log = logging.getLogger("mcpproxy.token")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class TokenActor(GuardedActor):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.name = "?"
        self.session: core.Session | None = None
        self.hub: Any = None
        self.worker: Any = None
        self.data_dir = ""
        self.store: TokenStore | None = None
        self.data_key: DataKey | None = None
        #: Set by Drain (a clean stop): who waits for the work in flight that carries tokens.
        self.draining: list[Any] | None = None

    # ---- setup -------------------------------------------------------------------------------

    def receiveMsg_Configure(self, msg: Configure, sender: Any) -> None:
        worker_lost = self.worker is not None and msg.worker != self.worker
        self.hub, self.worker, self.data_dir, self.data_key = msg.hub, msg.worker, msg.data_dir, msg.data_key
        if self.session is None:
            self.name = msg.server.name
            name_process(f"mcpproxy:{self.name}")
            quiet_idle_wakeups()
            self.session = core.new_session(msg.server, msg.threshold, msg.redirect_uri)
            self._feed(self._load(msg.reason))
        else:
            self._feed(core.Configured(msg.server, msg.threshold, msg.redirect_uri, msg.reason))
        if worker_lost:
            self._feed(core.WorkerLost(random.random()))

    def _open_store(self) -> TokenStore:
        if self.store is None:
            self.store = TokenStore(Path(self.data_dir), sealer=Sealer(self.data_key) if self.data_key else None)
        return self.store

    def _load(self, reason: str) -> core.Loaded:
        try:
            return core.Loaded(self._open_store().get_token(self.name), reason=reason, spread=random.random())
        except RecordError as e:
            return core.Loaded(None, str(e), unreadable=True, reason=reason)
        except StoreError as e:
            return core.Loaded(None, str(e), reason=reason)

    def receiveMsg_Drain(self, msg: Drain, sender: Any) -> None:
        """A clean stop: no new refresh from here on, and an answer once no refresh or code exchange is in
        flight — its rotated tokens are persisted before the actor system stops (docs/architecture.md
        "Start-up order")."""
        self.draining = [*(self.draining or []), sender]
        self._answer_drain()

    def _answer_drain(self) -> None:
        if self.draining and (self.session is None or not core.carrying_tokens(self.session)):
            for asker in self.draining:
                self.send(asker, Drained())
            self.draining = []

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: Any) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    # ---- the one loop: event in, effects out ---------------------------------------------------

    def _feed(self, event: core.Event) -> None:
        assert self.session is not None
        self.session, effects = core.step(self.session, event, time.time())
        for effect in effects:
            self._carry_out(effect)

    def _carry_out(self, effect: core.Effect) -> None:
        match effect:
            case core.Persist(record):
                self._open_store().put_token(self.name, record)
            case core.SendWork(request_id, generation, op):
                self.send(self.worker, Work(request_id, generation, op))
            case core.Emit(name, payload):
                self.send(self.hub, Event(name, payload, time.time()))
            case core.Reply(to, answer):
                self.send(to, answer)
            case core.SetTimer(delay, payload):
                self.wakeupAfter(timedelta(seconds=delay), payload=payload)
            case core.LoadClient(issuer):
                self._feed(core.ClientLoaded(issuer, self._open_store().get_client(issuer)))
            case core.SaveClient(issuer, client):
                self._open_store().put_client(issuer, client)
            case core.DropClient(issuer):
                self._open_store().delete_client(issuer)
            case core.Measured(result, lateness):
                self.send(self.hub, RefreshMeasured(self.name, result, lateness))
            case core.Log(level, message):
                self._log(_LEVELS[level], message)

    def _log(self, level: int, message: str) -> None:
        if not log.isEnabledFor(level):
            return
        if self.hub is None:  # not configured yet: no hub to write it
            log.log(level, "%s", message)
        else:
            self.send(self.hub, LogLine(log.name, level, message))

    # ---- messages → events -------------------------------------------------------------------

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:
        payload = msg.payload
        if self.draining is not None and isinstance(payload, core.Tick):
            return  # stopping: a scheduled refresh now would be cut off by the stop
        if isinstance(payload, core.Deadline):
            payload = core.Deadline(payload.request_id, random.random())
        if isinstance(payload, (core.Tick, core.Deadline)):
            self._feed(payload)
            self._answer_drain()  # a deadline may have ended the work a stop waits for

    def receiveMsg_ClockJump(self, msg: ClockJump, sender: Any) -> None:
        if self.draining is None:
            self._feed(core.ClockJumped(random.random()))

    def receiveMsg_WorkDone(self, msg: WorkDone, sender: Any) -> None:
        self._feed(core.WorkFinished(msg.request_id, msg.generation, msg.result, msg.started_at, random.random()))
        self._answer_drain()

    def receiveMsg_GetStatus(self, msg: GetStatus, sender: Any) -> None:
        self._feed(core.StatusWanted(sender))

    def receiveMsg_StartLogin(self, msg: StartLogin, sender: Any) -> None:
        self._feed(core.LoginWanted(sender, pkce.new_state(), pkce.new_verifier()))

    def receiveMsg_CompleteLogin(self, msg: CompleteLogin, sender: Any) -> None:
        self._feed(core.CodeReturned(sender, msg.state, msg.code, msg.iss, msg.error, msg.error_description))

    def receiveMsg_Logout(self, msg: Logout, sender: Any) -> None:
        self._feed(core.LogoutWanted(sender, msg.reason))

    def receiveMsg_RefreshNow(self, msg: RefreshNow, sender: Any) -> None:
        self._feed(core.RefreshWanted(sender))

    def receiveMsg_GetToken(self, msg: GetToken, sender: Any) -> None:
        self._feed(core.TokenWanted(sender))

    def receiveMsg_TokenRejected(self, msg: TokenRejected, sender: Any) -> None:
        self._feed(core.TokenRejected(sender, msg.generation))

    def receiveMsg_TokenRefused(self, msg: TokenRefused, sender: Any) -> None:
        self._feed(core.TokenRefused(sender, msg.generation))

    def receiveMsg_ScopeRequired(self, msg: ScopeRequired, sender: Any) -> None:
        self._feed(core.ScopeRequired(sender, msg.scopes))

