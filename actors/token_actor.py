"""TokenActor (DESIGN §2): one per OAuth server; it alone owns that server's token, timer and state.

Messages arrive one at a time, so login, refresh, logout and token reads are serialized without
locks. Network I/O never runs here: it goes to the OAuth worker as Work and comes back as WorkDone.
Each piece of work carries the generation it was started under; a result for an older generation
is stale — harmless, and revoked when it carries a token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from thespian.actors import ActorExitRequest, WakeupMessage

from actors.base import GuardedActor, name_process
from actors.messages import (
    ClockJump,
    CompleteLogin,
    Configure,
    Event,
    Failure,
    GetStatus,
    GetToken,
    LoggedOut,
    LoginCompleted,
    LoginStarted,
    Logout,
    ProbeResult,
    Refreshed,
    RefreshMeasured,
    RefreshNow,
    ScopeRequired,
    StartLogin,
    TokenAnswer,
    TokenRefused,
    TokenRejected,
    Work,
    WorkDone,
)
from mcpproxy import policy
from mcpproxy.config import ServerConfig
from mcpproxy.oauth import authorize, pkce
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.status import Runtime, build_status
from mcpproxy.store import RecordError, StoreError, TokenStore

log = logging.getLogger("mcpproxy.token")

LOGIN_TTL = 600.0  # a login link is good for 10 minutes (DESIGN §3 /oauth/callback)
MAX_PENDING_LOGINS = 8
#: An access token this close to expiry (seconds, at most this share of its lifetime) is refreshed
#: before it is handed out, so no request reaches the server with a token that expires on the way.
EXPIRY_MARGIN = 1.0
EXPIRY_MARGIN_SHARE = 0.1


@dataclass
class PendingLogin:
    verifier: str
    created: float
    client_id: str
    client_secret: str | None
    redirect_uri: str
    scopes: tuple[str, ...]


@dataclass
class Pending:
    """Context of one piece of work sent to the worker."""

    op: str
    askers: list[tuple[Any, str]]
    login: PendingLogin | None = None
    due: float | None = None
    revoke_with: dict[str, Any] | None = None  # where to revoke a token that arrives too late


class TokenActor(GuardedActor):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.name = "?"
        self.server: ServerConfig | None = None
        self.threshold = 0.8
        self.redirect_uri = ""
        self.hub: Any = None
        self.worker: Any = None
        self.data_dir = ""
        self.store: TokenStore | None = None
        self.record: dict[str, Any] | None = None
        self.generation = 0
        self.rt = Runtime()
        self.retry_at: float | None = None
        self.protocol_attempts = 0
        self.timer_seq = 0
        self.request_seq = 0
        self.pending: dict[int, Pending] = {}
        self.inflight: int | None = None  # request id of the refresh in flight (single-flight)
        self.waiters: list[tuple[Any, str]] = []  # askers waiting for that refresh
        self.logins: dict[str, PendingLogin] = {}
        self.login_askers: list[tuple[Any, StartLogin]] = []
        self.preparing = False
        self.discovery: Any = None  # mcpproxy.oauth.discovery.Discovery, cached for this process
        self.last_published: dict[str, Any] | None = None

    # ---- setup -------------------------------------------------------------------------------

    def receiveMsg_Configure(self, msg: Configure, sender: Any) -> None:
        first = self.server is None
        url_changed = self.server is not None and self.server.url != msg.server.url
        worker_lost = self.worker is not None and msg.worker != self.worker
        self.server = msg.server
        self.name = msg.server.name
        self.threshold = msg.threshold
        self.redirect_uri = msg.redirect_uri
        self.hub = msg.hub
        self.worker = msg.worker
        self.data_dir = msg.data_dir
        if url_changed:
            self.discovery = None
        if first:
            name_process(f"mcpproxy:{self.name}")
            self._load()
        if worker_lost:
            self._work_lost()
        self._evaluate(msg.reason)

    def _work_lost(self) -> None:
        """The worker died with our work: fail it now (and retry) rather than wait for its deadline."""
        lost, self.pending = self.pending, {}
        err = OAuthError("network", "the OAuth worker stopped while handling this request")
        for rid, ctx in lost.items():
            if ctx.op == "refresh" and rid == self.inflight:
                self.inflight = None
                self._refresh_failed(err, ctx)
            elif ctx.op == "exchange":
                for asker, _ in ctx.askers:
                    self.send(asker, Failure(self.name, err.kind, f"{err.message} — start the login again", 502))
            elif ctx.op in ("discover", "register"):
                self._login_prep_failed(err)

    def _open_store(self) -> TokenStore:
        if self.store is None:
            self.store = TokenStore(Path(self.data_dir))
        return self.store

    def _load(self) -> None:
        try:
            rec = self._open_store().get_token(self.name)
        except RecordError as e:
            log.error("server=%s %s; it needs a login", self.name, e)
            self.rt.last_error = {"kind": "config", "message": f"{e} — log in again"}
            self._open_store().delete_token(self.name)
            rec = None
        except StoreError as e:
            log.error("server=%s %s", self.name, e)
            self.rt.last_error = {"kind": "config", "message": str(e)}
            rec = None
        if rec is None:
            return
        assert self.server is not None
        self.generation = int(rec.get("generation", 0))
        self.rt.user_logged_out = bool(rec.get("user_logged_out"))
        if rec.get("failed"):
            self.rt.failed = True
            self.rt.refresh_state = "failed"
            self.rt.last_error = rec["failed"]
        if rec.get("access_token") and rec.get("url", self.server.url) != self.server.url:
            log.warning("server=%s its URL changed since login; the stored token is dropped", self.name)
            self._persist(None)
            return
        self.record = rec if rec.get("access_token") else None

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: Any) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    # ---- the one place state changes are persisted, announced and rescheduled ----------------

    def _persist(self, record: dict[str, Any] | None) -> None:
        """Commits durably (fsync) before anything uses or announces the change."""
        store = self._open_store()
        if record is None:
            tombstone: dict[str, Any] = {"generation": self.generation, "user_logged_out": self.rt.user_logged_out}
            if self.rt.failed and self.rt.last_error:
                tombstone["failed"] = self.rt.last_error
            store.put_token(self.name, tombstone)
        else:
            record["generation"] = self.generation
            record["user_logged_out"] = self.rt.user_logged_out
            record["failed"] = self.rt.last_error if self.rt.failed else None
            store.put_token(self.name, record)
        self.record = record

    def _status(self) -> dict[str, Any]:
        assert self.server is not None
        return build_status(self.server, self.record, self.rt, time.time(), self.threshold)

    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        self.send(self.hub, Event(name, payload, time.time()))

    def _evaluate(self, reason: str, events: tuple[tuple[str, dict[str, Any]], ...] = ()) -> None:
        """Starts a refresh that is due, announces what changed, and sets the next timer."""
        now = time.time()
        self._start_due_refresh(now)
        self.rt.next_refresh_at = self._next_refresh_at()
        for name, payload in events:
            self._emit(name, payload)
        status = self._status()
        if status != self.last_published:
            self.last_published = status
            self._emit("servers.changed", {**status, "reason": reason})
        self._schedule(now)

    def _due_at(self) -> float | None:
        rec = self.record
        if not rec or not rec.get("refresh_token") or self.rt.failed:
            return None
        return policy.refresh_due_at(rec["issued_at"], rec.get("expires_at"), self.threshold)

    def _next_refresh_at(self) -> float | None:
        if self.inflight is not None:
            return None
        if self.rt.refresh_state == "retrying":
            return self.retry_at
        return self._due_at()

    def _start_due_refresh(self, now: float) -> None:
        if self.inflight is not None or not self.record:
            return
        if self.rt.refresh_state == "retrying":
            if self.retry_at is not None and now >= self.retry_at:
                self._start_refresh("retry")
            return
        due = self._due_at()
        if due is not None:
            if now >= due:
                self._start_refresh("scheduled", due=due)
            else:
                self.rt.refresh_state = "scheduled"
        elif self.rt.refresh_state != "failed":
            self.rt.refresh_state = "idle"

    def _schedule(self, now: float) -> None:
        """One wakeup at the next moment something changes; older wakeups are ignored by sequence."""
        moments = []
        rec = self.record
        if self.rt.next_refresh_at is not None:
            moments.append(self.rt.next_refresh_at)
        if rec and rec.get("expires_at") is not None and rec["expires_at"] > now:
            moments.append(rec["expires_at"])
        if rec and not rec.get("refresh_token") and rec.get("expires_at") is not None:
            due = policy.refresh_due_at(rec["issued_at"], rec["expires_at"], min(self.threshold, 0.95))
            if due is not None and due > now:
                moments.append(due)  # when `action: login` appears
        if self.logins:
            moments.append(min(p.created for p in self.logins.values()) + LOGIN_TTL)
        if not moments:
            return
        self.timer_seq += 1
        delay = max(0.0, min(moments) - now)
        self.wakeupAfter(timedelta(seconds=delay), payload=("tick", self.timer_seq))

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:
        kind, value = msg.payload
        if kind == "tick" and value == self.timer_seq:
            self._expire_logins()
            self._evaluate("timer")
        elif kind == "deadline" and value == self.inflight:
            self.pending.pop(value, None)
            self.inflight = None
            self._refresh_failed(OAuthError("network", "the token endpoint did not answer in time"), None)

    def receiveMsg_ClockJump(self, msg: ClockJump, sender: Any) -> None:
        self._evaluate("wake")

    # ---- status ------------------------------------------------------------------------------

    def receiveMsg_GetStatus(self, msg: GetStatus, sender: Any) -> None:
        self.send(sender, self._status())

    # ---- work sent to the OAuth worker ---------------------------------------------------------

    def _work(self, op: str, args: dict[str, Any], ctx: Pending) -> int:
        self.request_seq += 1
        rid = self.request_seq
        self.pending[rid] = ctx
        self.send(self.worker, Work(rid, op, self.generation, args))
        return rid

    def receiveMsg_WorkDone(self, msg: WorkDone, sender: Any) -> None:
        ctx = self.pending.pop(msg.request_id, None)
        if msg.op == "refresh":
            self._on_refresh_done(msg, ctx)
        elif msg.op == "discover":
            self._on_discovered(msg.result)
        elif msg.op == "register":
            self._on_registered(msg.result)
        elif msg.op == "exchange" and ctx is not None:
            self._on_exchanged(msg, ctx)
        elif msg.op == "probe":
            self._on_probed(msg)
        elif msg.op == "revoke":
            if isinstance(msg.result, OAuthError):
                log.warning("server=%s revocation failed (%s): %s", self.name, msg.result.kind, msg.result.message)
            else:
                log.info("server=%s tokens revoked at the authorization server", self.name)

    def _revoke(self, tokens: list[tuple[str, str]], rec: dict[str, Any]) -> bool:
        """Revokes (RFC 7009) the given tokens in the background; True when it could try."""
        endpoint = rec.get("revocation_endpoint")
        if not endpoint or not tokens:
            return False
        self._work(
            "revoke",
            {"endpoint": endpoint, "tokens": tokens, "client_id": rec.get("client_id"),
             "client_secret": rec.get("client_secret")},
            Pending("revoke", []),
        )
        return True

    # ---- refresh -----------------------------------------------------------------------------

    def _start_refresh(self, why: str, due: float | None = None) -> None:
        rec = self.record
        if self.inflight is not None or not rec or not rec.get("refresh_token"):
            return
        self.rt.refresh_state = "refreshing"
        args = {
            "token_endpoint": rec["token_endpoint"],
            "refresh_token": rec["refresh_token"],
            "client_id": rec["client_id"],
            "client_secret": rec.get("client_secret"),
            "resource": rec.get("resource"),
            "scopes": tuple(rec.get("scopes") or ()) or None,
        }
        revoke_with = {k: rec.get(k) for k in ("revocation_endpoint", "client_id", "client_secret")}
        self.inflight = self._work("refresh", args, Pending("refresh", [], due=due, revoke_with=revoke_with))
        self.wakeupAfter(timedelta(seconds=policy.WORK_DEADLINE), payload=("deadline", self.inflight))
        log.debug("server=%s refresh started (%s)", self.name, why)

    def _on_refresh_done(self, msg: WorkDone, ctx: Pending | None) -> None:
        if msg.request_id == self.inflight:
            self.inflight = None
        result = msg.result
        lateness = msg.started_at - ctx.due if ctx and ctx.due is not None else None
        kind = result.kind if isinstance(result, OAuthError) else "ok"
        self.send(self.hub, RefreshMeasured(self.name, kind, lateness))
        if msg.generation != self.generation:
            # Logged out or logged in again meanwhile: never keep a token of a cancelled generation.
            if not isinstance(result, OAuthError) and ctx is not None and ctx.revoke_with:
                log.info("server=%s a refresh finished for a cancelled generation; revoking its token", self.name)
                self._revoke(_tokens_of(result), ctx.revoke_with)
            return
        if isinstance(result, OAuthError):
            self._refresh_failed(result, ctx)
        else:
            self._refresh_succeeded(result)

    def _refresh_succeeded(self, tok: Any) -> None:
        rec = dict(self.record or {})
        now = time.time()
        self.generation += 1
        rec.update(
            access_token=tok.access_token,
            # RFC 6749 §6: the server may rotate; keep the old refresh token when it does not.
            refresh_token=tok.refresh_token or rec.get("refresh_token"),
            token_type=tok.token_type,
            issued_at=now,
            expires_at=now + tok.expires_in if tok.expires_in is not None else None,
            refresh_count=int(rec.get("refresh_count", 0)) + 1,
            last_refresh_at=now,
        )
        if tok.scope is not None:
            rec["scopes"] = list(tok.scope)
        self.rt.retry_count = 0
        self.protocol_attempts = 0
        self.retry_at = None
        self.rt.last_error = None
        self.rt.refresh_state = "scheduled"
        self._persist(rec)
        log.info("server=%s token refreshed; expires in %s", self.name, _fmt_in(rec.get("expires_at"), now))
        waiters, self.waiters = self.waiters, []
        self._evaluate(
            "token_refreshed",
            (("oauth.token_refreshed", {"server_name": self.name, "expires_at": self._status()["token_expires_at"]}),),
        )
        for asker, want in waiters:
            self._answer(asker, want)
        self._probe()

    def _refresh_failed(self, err: OAuthError, ctx: Pending | None) -> None:
        if err.kind == "protocol":
            self.protocol_attempts += 1
        self.rt.last_error = err.as_dict()
        waiters, self.waiters = self.waiters, []
        events: tuple[tuple[str, dict[str, Any]], ...] = ()
        if policy.gives_up(err.kind, self.protocol_attempts):
            self.rt.failed = True
            self.rt.refresh_state = "failed"
            self.retry_at = None
            self._persist(self.record)
            log.warning("server=%s refresh failed for good (%s): %s", self.name, err.kind, err.message)
            events = (("oauth.refresh_failed",
                       {"server_name": self.name, "error": err.as_dict(), "action": "login"}),)
        else:
            delay = policy.backoff_delay(self.rt.retry_count, err.retry_after)
            self.rt.retry_count += 1
            self.rt.refresh_state = "retrying"
            self.retry_at = time.time() + delay
            log.warning("server=%s refresh failed (%s): %s; retry %d in %.1fs", self.name, err.kind,
                        err.message, self.rt.retry_count, delay)
        self._evaluate("refresh_failed" if self.rt.failed else "refresh_retrying", events)
        for asker, want in waiters:
            if want == "token" and self._valid_token() is not None:
                self._answer(asker, want)
            else:
                self.send(asker, self._failure_for(err))

    def _failure_for(self, err: OAuthError) -> Failure:
        if self.rt.failed:
            return Failure(self.name, err.kind, f"{err.message} — log in: mcpproxy-ctl login {self.name}", 409)
        return Failure(self.name, err.kind, err.message, 502)

    def receiveMsg_RefreshNow(self, msg: RefreshNow, sender: Any) -> None:
        rec = self.record
        if not rec or not rec.get("refresh_token") or self.rt.failed:
            why = "no token is held" if not rec else (
                "the token cannot be refreshed" if not self.rt.failed else "the last refresh failed for good")
            self.send(sender, Failure(self.name, "login_required",
                                      f"server '{self.name}': {why} — log in: mcpproxy-ctl login {self.name}", 409))
            return
        self.waiters.append((sender, "refresh"))
        if self.inflight is None:
            self.retry_at = None
            self.rt.refresh_state = "scheduled"
            self._start_refresh("requested")
            self._evaluate("refresh_requested")

    # ---- tokens for the pass-through -------------------------------------------------------------

    def _valid_token(self) -> str | None:
        rec = self.record
        if not rec or not rec.get("access_token"):
            return None
        exp = rec.get("expires_at")
        margin = min(EXPIRY_MARGIN, EXPIRY_MARGIN_SHARE * max(0.0, exp - rec["issued_at"])) if exp else 0.0
        if exp is not None and time.time() >= exp - margin:
            return None
        return str(rec["access_token"])

    def _answer(self, asker: Any, want: str) -> None:
        if want == "refresh":
            st = self._status()
            self.send(asker, Refreshed(self.name, st["token_expires_at"], st))
            return
        token = self._valid_token()
        if token is None:
            self.send(asker, Failure(self.name, "login_required",
                                     f"server '{self.name}' has no valid token — log in: mcpproxy-ctl login {self.name}",
                                     401))
        else:
            self.send(asker, TokenAnswer(self.name, token, self.generation))

    def receiveMsg_GetToken(self, msg: GetToken, sender: Any) -> None:
        if self.inflight is not None:
            self.waiters.append((sender, "token"))
        elif self._valid_token() is None and self.record and self.record.get("refresh_token") and not self.rt.failed:
            self.waiters.append((sender, "token"))
            self._start_refresh("expired on use")
            self._evaluate("refresh_on_use")
        else:
            self._answer(sender, "token")

    def receiveMsg_TokenRejected(self, msg: TokenRejected, sender: Any) -> None:
        if msg.generation != self.generation or self.inflight is not None:
            # Already refreshed since that token was handed out, or a refresh is on its way.
            self.receiveMsg_GetToken(GetToken(), sender)
            return
        rec = self.record
        if rec and rec.get("refresh_token") and not self.rt.failed:
            self.waiters.append((sender, "token"))
            self._start_refresh("upstream 401")
            self._evaluate("upstream_401")
        else:
            self.send(sender, Failure(self.name, "login_required",
                                      f"server '{self.name}' refused the token — log in: mcpproxy-ctl login {self.name}",
                                      401))

    def receiveMsg_ProbeResult(self, msg: ProbeResult, sender: Any) -> None:
        if msg.generation == self.generation:
            self.rt.connected = msg.connected
            self.rt.last_probe_at = time.time()
            self._evaluate("probe")

    # ---- login -------------------------------------------------------------------------------

    def receiveMsg_StartLogin(self, msg: StartLogin, sender: Any) -> None:
        self.login_askers.append((sender, msg))
        if self.preparing:
            return
        if self.discovery is None:
            assert self.server is not None and self.server.url is not None
            self.preparing = True
            self._work("discover", {"server_url": self.server.url}, Pending("discover", []))
        else:
            self._with_client()

    def _on_discovered(self, result: Any) -> None:
        if isinstance(result, OAuthError):
            self._login_prep_failed(result)
            return
        self.discovery = result
        self._with_client()

    def _client(self) -> dict[str, Any] | None:
        assert self.server is not None and self.server.oauth is not None
        oauth = self.server.oauth
        if oauth.client_id:
            return {"client_id": oauth.client_id, "client_secret": oauth.client_secret}
        stored = self._open_store().get_client(self.discovery.metadata.issuer)
        if stored and stored.get("redirect_uri") == self.redirect_uri:
            return stored
        return None

    def _with_client(self) -> None:
        client = self._client()
        if client is not None:
            self._finish_login_start(client)
            return
        self.preparing = True
        self._work(
            "register",
            {"metadata": self.discovery.metadata, "redirect_uri": self.redirect_uri,
             "scopes": self._login_scopes()},
            Pending("register", []),
        )

    def _on_registered(self, result: Any) -> None:
        if isinstance(result, OAuthError):
            self._login_prep_failed(result)
            return
        client = {"client_id": result.client_id, "client_secret": result.client_secret,
                  "redirect_uri": result.redirect_uri, "issuer": result.issuer, "registered_at": time.time()}
        self._open_store().put_client(result.issuer, client)
        log.info("server=%s registered as a client at %s", self.name, result.issuer)
        self._finish_login_start(client)

    def _login_scopes(self) -> tuple[str, ...]:
        assert self.server is not None and self.server.oauth is not None
        scopes = self.server.oauth.scopes or (self.discovery.scopes if self.discovery else ())
        return tuple(dict.fromkeys((*scopes, *self.rt.missing_scopes)))

    def _finish_login_start(self, client: dict[str, Any]) -> None:
        self.preparing = False
        askers, self.login_askers = self.login_askers, []
        assert self.server is not None and self.server.oauth is not None
        for asker, _msg in askers:
            try:
                self._expire_logins()
                while len(self.logins) >= MAX_PENDING_LOGINS:
                    self.logins.pop(next(iter(self.logins)))
                state, verifier = pkce.new_state(), pkce.new_verifier()
                resource = self.server.oauth.resource_override or self.discovery.resource
                extra = {k: v for k, v in self.server.oauth.extra_params if k != "resource"}
                url = authorize.authorization_url(
                    self.discovery.metadata, client_id=client["client_id"], redirect_uri=self.redirect_uri,
                    scopes=self._login_scopes(), state=state, code_challenge=pkce.s256_challenge(verifier),
                    resource=resource, extra_params=extra or None,
                )
            except OAuthError as e:
                self.send(asker, Failure(self.name, e.kind, e.message, 400 if e.kind == "config" else 502))
                continue
            self.logins[state] = PendingLogin(verifier, time.time(), client["client_id"], client.get("client_secret"),
                                              self.redirect_uri, self._login_scopes())
            log.info("server=%s login started", self.name)
            self.send(asker, LoginStarted(self.name, url, state))
        self._schedule(time.time())

    def _login_prep_failed(self, err: OAuthError) -> None:
        self.preparing = False
        askers, self.login_askers = self.login_askers, []
        log.warning("server=%s cannot start a login (%s): %s", self.name, err.kind, err.message)
        self.rt.last_error = err.as_dict()
        self._evaluate("login_failed")
        status = 400 if err.kind == "config" else 502
        for asker, _msg in askers:
            self.send(asker, Failure(self.name, err.kind, err.message, status))

    def _expire_logins(self) -> None:
        cutoff = time.time() - LOGIN_TTL
        for state in [s for s, p in self.logins.items() if p.created < cutoff]:
            del self.logins[state]

    def receiveMsg_CompleteLogin(self, msg: CompleteLogin, sender: Any) -> None:
        self._expire_logins()
        login = self.logins.pop(msg.state, None)  # single use
        if login is None:
            self.send(sender, Failure(self.name, "protocol",
                                      "this login link is unknown, used or expired — start the login again", 400))
            return
        if msg.error:
            text = f"the authorization server refused the login: {msg.error}"
            if msg.error_description:
                text += f" ({msg.error_description[:200]})"
            self.rt.last_error = {"kind": "protocol", "message": text}
            self._evaluate("login_failed")
            self.send(sender, Failure(self.name, "protocol", text, 400))
            return
        try:
            authorize.check_callback_iss(self.discovery.metadata, msg.iss)
        except OAuthError as e:
            self.send(sender, Failure(self.name, e.kind, e.message, 400))
            return
        # Login in progress cancels a pending refresh: results of older generations become stale.
        self.generation += 1
        self.inflight = None
        self.retry_at = None
        self.rt.refresh_state = "idle"
        meta = self.discovery.metadata
        assert self.server is not None and self.server.oauth is not None
        resource = self.server.oauth.resource_override or self.discovery.resource
        self._work(
            "exchange",
            {"token_endpoint": meta.token_endpoint, "code": msg.code, "code_verifier": login.verifier,
             "client_id": login.client_id, "client_secret": login.client_secret,
             "redirect_uri": login.redirect_uri, "resource": resource},
            Pending("exchange", [(sender, "login")], login=login),
        )

    def _on_exchanged(self, msg: WorkDone, ctx: Pending) -> None:
        result = msg.result
        askers = ctx.askers
        if msg.generation != self.generation:
            if not isinstance(result, OAuthError):
                meta = self.discovery.metadata
                self._revoke(_tokens_of(result), {"revocation_endpoint": meta.revocation_endpoint,
                                                  "client_id": ctx.login.client_id if ctx.login else None,
                                                  "client_secret": ctx.login.client_secret if ctx.login else None})
            for asker, _ in askers:
                self.send(asker, Failure(self.name, "cancelled", "the login was cancelled by a logout", 409))
            return
        if isinstance(result, OAuthError):
            self.rt.last_error = result.as_dict()
            log.warning("server=%s login failed (%s): %s", self.name, result.kind, result.message)
            self._evaluate("login_failed")
            for asker, _ in askers:
                self.send(asker, Failure(self.name, result.kind, result.message, 400))
            return
        assert ctx.login is not None and self.server is not None and self.server.oauth is not None
        meta = self.discovery.metadata
        now = time.time()
        self.generation += 1
        rec = {
            "access_token": result.access_token,
            "refresh_token": result.refresh_token,
            "token_type": result.token_type,
            "scopes": list(result.scope) if result.scope is not None else list(ctx.login.scopes),
            "issued_at": now,
            "expires_at": now + result.expires_in if result.expires_in is not None else None,
            "issuer": meta.issuer,
            "token_endpoint": meta.token_endpoint,
            "revocation_endpoint": meta.revocation_endpoint,
            "client_id": ctx.login.client_id,
            "client_secret": ctx.login.client_secret,
            "resource": self.server.oauth.resource_override or self.discovery.resource,
            "url": self.server.url,
            "refresh_count": 0,
            "last_refresh_at": None,
            "logged_in_at": now,
        }
        self.rt = Runtime()
        self.protocol_attempts = 0
        self._persist(rec)
        log.info("server=%s logged in; token expires in %s", self.name, _fmt_in(rec["expires_at"], now))
        self._evaluate("login_completed", (("oauth.login_completed", {"server_name": self.name}),))
        for asker, _ in askers:
            self.send(asker, LoginCompleted(self.name, self._status()))
        self._probe()

    # ---- logout ------------------------------------------------------------------------------

    def receiveMsg_Logout(self, msg: Logout, sender: Any) -> None:
        old = self.record
        self.generation += 1  # everything in flight is now stale
        self.inflight = None
        self.retry_at = None
        self.logins.clear()
        waiters, self.waiters = self.waiters, []
        # Scopes a server asked for stay wanted: the next login requests them.
        self.rt = Runtime(user_logged_out=True, connected=None, missing_scopes=self.rt.missing_scopes)
        self._persist(None)
        tokens = []
        if old:
            if old.get("refresh_token"):
                tokens.append((old["refresh_token"], "refresh_token"))
            tokens.append((old["access_token"], "access_token"))
        will_revoke = bool(old and old.get("revocation_endpoint"))
        log.info("server=%s logged out (%s)", self.name, msg.reason)
        self._evaluate("logout", (("oauth.logout", {"server_name": self.name, "revoked": will_revoke,
                                                     "reason": msg.reason}),))
        self.send(sender, LoggedOut(self.name, will_revoke, self._status()))
        for asker, _ in waiters:
            self.send(asker, Failure(self.name, "login_required", f"server '{self.name}' was logged out", 401))
        if old:
            self._revoke(tokens, old)

    # ---- what the pass-through learns from the upstream --------------------------------------

    def _probe(self) -> None:
        """Checks the upstream with the new token (an MCP initialize) so the status can say `connected`."""
        token = self._valid_token()
        if token is None or self.server is None or not self.server.url:
            return
        self._work("probe", {"url": self.server.url, "token": token}, Pending("probe", []))

    def _on_probed(self, msg: WorkDone) -> None:
        result = msg.result
        connected, detail = (False, result.message) if isinstance(result, OAuthError) else result
        if not connected:
            log.warning("server=%s probe with the new token: %s", self.name, detail)
        self.receiveMsg_ProbeResult(ProbeResult(msg.generation, bool(connected), detail), None)

    def receiveMsg_ScopeRequired(self, msg: ScopeRequired, sender: Any) -> None:
        scopes = tuple(dict.fromkeys((*self.rt.missing_scopes, *msg.scopes)))
        if scopes != self.rt.missing_scopes:
            self.rt.missing_scopes = scopes
            log.warning("server=%s the MCP server asks for scope(s) %s; the next login requests them",
                        self.name, " ".join(scopes))
        self._evaluate("insufficient_scope")
        self.send(sender, self._status())

    def receiveMsg_TokenRefused(self, msg: TokenRefused, sender: Any) -> None:
        if msg.generation == self.generation and self.record and not self.rt.failed:
            self.rt.failed = True
            self.rt.refresh_state = "failed"
            self.retry_at = None
            self.rt.last_error = {"kind": "invalid_grant", "message": (
                "the MCP server refuses this server's token even right after a refresh — "
                f"log in again: mcpproxy-ctl login {self.name}")}
            self._persist(self.record)
            log.warning("server=%s the MCP server refused a fresh token; a login is needed", self.name)
            self._evaluate("upstream_refused")
        self.send(sender, self._status())


def _tokens_of(tok: Any) -> list[tuple[str, str]]:
    tokens = []
    if tok.refresh_token:
        tokens.append((tok.refresh_token, "refresh_token"))
    tokens.append((tok.access_token, "access_token"))
    return tokens


def _fmt_in(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{ts - now:.0f}s"
