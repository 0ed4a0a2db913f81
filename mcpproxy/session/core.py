"""The session core's rules (docs/architecture.md "Session core"): one OAuth server as a pure transition.

    step(session, event, now) -> (session, effects)

No Thespian, no I/O, no clock and no randomness in here: the shell (actors/token_actor.py) feeds each
event with the time and any random draw it needs, then carries the effects out in the order given.
The order is the contract: a `Persist` comes before every `Reply` or `Emit` that hands out or
announces what it holds. `step` never changes the session it is given.

Askers are opaque `reply_to` values (actor addresses in the shell, anything in tests).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mcpproxy import policy
from mcpproxy.config import ServerConfig
from mcpproxy.oauth import authorize, pkce
from mcpproxy.oauth.discovery import Discovery
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.registration import ClientRegistration, ClientUnknown, no_registration_message
from mcpproxy.oauth.tokens import TokenResponse
from mcpproxy.record import Problem, TokenRecord
from mcpproxy.session.messages import (
    ClientLoaded,
    ClockJumped,
    CodeReturned,
    Configured,
    Deadline,
    DropClient,
    Effect,
    Emit,
    Event,
    Failure,
    LoadClient,
    Loaded,
    Log,
    LoggedOut,
    LoginCompleted,
    LoginStarted,
    LoginWanted,
    LogoutWanted,
    Measured,
    Persist,
    Refreshed,
    RefreshWanted,
    Reply,
    SaveClient,
    ScopeRequired,
    SendWork,
    SetTimer,
    StatusWanted,
    Tick,
    TokenAnswer,
    TokenRefused,
    TokenRejected,
    TokenWanted,
    WorkerLost,
    WorkFinished,
)
from mcpproxy.status import Runtime, build_status, iso, login_due_at
from mcpproxy.work import Discover, Exchange, Op, Probe, Probed, Refresh, Register, Revoke

LOGIN_TTL = 600.0  # a login link is good for 10 minutes (docs/architecture.md "REST contract")
MAX_PENDING_LOGINS = 8
#: Refreshes in a row answered with an HTML 500 before a dynamic registration counts as forgotten.
CLIENT_DOUBTS = 2
#: An access token this close to expiry (seconds, at most this share of its lifetime) is refreshed
#: before it is handed out, so no request reaches the server with a token that expires on the way.
EXPIRY_MARGIN = 1.0
EXPIRY_MARGIN_SHARE = 0.1


# ---- state -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingLogin:
    verifier: str = field(repr=False)
    created: float
    client_id: str
    client_secret: str | None = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...]
    issuer: str | None = None  # set when the client is a dynamic registration (kept by issuer in the store)
    auth_method: str | None = None  # as registered; None: by the secret


@dataclass(frozen=True)
class Pending:
    """One piece of work in flight, and what its result is for."""

    op: Op
    askers: tuple[Any, ...] = ()
    login: PendingLogin | None = None
    due: float | None = None  # a scheduled refresh's due time, for the lateness metric
    revoke_with: TokenRecord | None = None  # where to revoke a token that arrives for a cancelled generation


@dataclass
class Session:
    """One server's state. `token` is the persisted record while it holds a token, else None."""

    server: ServerConfig
    threshold: float
    redirect_uri: str
    token: TokenRecord | None = None
    generation: int = 0
    rt: Runtime = field(default_factory=Runtime)
    retry_at: float | None = None
    spread_at: float | None = None  # an overdue refresh found at a start or a wake waits until then
    protocol_attempts: int = 0
    confirm_attempts: int = 0  # refusals in a row that count only once confirmed (OAuthError.confirm)
    timer_seq: int = 0
    request_seq: int = 0
    pending: dict[int, Pending] = field(default_factory=dict)
    inflight: int | None = None  # request id of the refresh in flight (single-flight)
    waiters: list[tuple[Any, str]] = field(default_factory=list)  # (asker, "token" | "refresh")
    logins: dict[str, PendingLogin] = field(default_factory=dict)
    login_askers: list[tuple[Any, str, str]] = field(default_factory=list)  # (asker, state, verifier)
    preparing: bool = False
    discovery: Discovery | None = None
    client: dict[str, Any] | None = field(default=None, repr=False)  # the client a login is being prepared with
    last_published: dict[str, Any] | None = None
    streak_told: tuple[str, ...] = ()  # what of the current failing streak was announced: "attempts", "expired"
    client_doubts: int = 0  # refreshes in a row answered with an HTML 500 (a registration the server may have lost)

    @property
    def name(self) -> str:
        return self.server.name

    def clone(self) -> Session:
        s = copy.copy(self)
        s.pending, s.waiters, s.logins = dict(self.pending), list(self.waiters), dict(self.logins)
        s.login_askers = list(self.login_askers)
        return s

    def status(self, now: float) -> dict[str, Any]:
        return build_status(self.server, self.token, self.rt, now, self.threshold)

    def valid_token(self, now: float) -> str | None:
        """The access token unless it expires within the margin (then it is refreshed before use)."""
        rec = self.token
        if rec is None or not rec.access_token:
            return None
        exp = rec.expires_at
        if exp is not None:
            margin = min(EXPIRY_MARGIN, EXPIRY_MARGIN_SHARE * max(0.0, exp - rec.issued_at))
            if now >= exp - margin:
                return None
        return rec.access_token

    @property
    def callback_uri(self) -> str:
        """The redirect URI logins use: the server's fixed `oauth.redirect_uri`, else the service's callback."""
        return (self.server.oauth.redirect_uri if self.server.oauth else None) or self.redirect_uri

    def dynamic_client(self, client_id: str | None) -> bool:
        """Whether `client_id` is a dynamic registration (not the config's client)."""
        return bool(client_id) and client_id != (self.server.oauth.client_id if self.server.oauth else None)

    def refreshable(self) -> bool:
        return self.token is not None and bool(self.token.refresh_token) and not self.rt.failed


def carrying_tokens(session: Session) -> bool:
    """Work in flight whose answer carries tokens — a refresh or a code exchange. A clean stop waits for it:
    the authorization server may already have rotated the refresh token the store holds."""
    return any(isinstance(p.op, (Refresh, Exchange)) for p in session.pending.values())


def new_session(server: ServerConfig, threshold: float, redirect_uri: str) -> Session:
    return Session(server=server, threshold=threshold, redirect_uri=redirect_uri)


def step(session: Session, event: Event, now: float) -> tuple[Session, list[Effect]]:
    """The one transition: a new session and the effects to carry out, in order."""
    t = _Step(session.clone(), now)
    _HANDLERS[type(event)](t, event)
    return t.s, t.effects


# ---- the rules -------------------------------------------------------------------------------------


class _Step:
    """One transition in progress: the session being built and the effects so far."""

    def __init__(self, s: Session, now: float) -> None:
        self.s = s
        self.now = now
        self.effects: list[Effect] = []

    # -- small helpers --

    def rt(self, **changes: Any) -> None:
        self.s.rt = replace(self.s.rt, **changes)

    def log(self, level: str, message: str) -> None:
        self.effects.append(Log(level, f"server={self.s.name} {message}"))

    def reply(self, to: Any, answer: Any) -> None:
        self.effects.append(Reply(to, answer))

    def fail(self, to: Any, kind: str, message: str, needs_login: bool = False) -> None:
        self.reply(to, Failure(self.s.name, kind, message, needs_login))

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        self.effects.append(Emit(name, payload))

    def login_hint(self) -> str:
        return f"mcpproxy-ctl login {self.s.name}"

    # -- the one place state changes are persisted, announced and rescheduled --

    def persist(self, token: TokenRecord | None) -> None:
        """Commits durably before anything uses or announces the change."""
        s = self.s
        failed = s.rt.last_error if s.rt.failed else None
        base = token if token is not None else TokenRecord()
        record = base.but(generation=s.generation, user_logged_out=s.rt.user_logged_out, failed=failed)
        if token is None:
            record = record.tombstone()
        self.effects.append(Persist(record))
        s.token = record if record.has_token else None

    def evaluate(self, reason: str, events: tuple[tuple[str, dict[str, Any]], ...] = ()) -> None:
        """Starts a refresh that is due, announces what changed, and sets the next timer."""
        s = self.s
        self.start_due_refresh()
        self.rt(next_refresh_at=self.next_refresh_at())
        rec = s.token
        if (s.rt.refresh_state == "retrying" and rec is not None and rec.expires_at is not None
                and self.now >= rec.expires_at and "expired" not in s.streak_told and s.rt.last_error is not None):
            s.streak_told += ("expired",)
            events = (*events, ("oauth.refresh_failed", self.streak_payload(s.rt.last_error)))
        for name, payload in events:
            self.emit(name, payload)
        status = s.status(self.now)
        if status != s.last_published:
            s.last_published = status
            self.emit("servers.changed", {**status, "reason": reason})
        self.schedule()

    def streak_payload(self, problem: Problem) -> dict[str, Any]:
        """oauth.refresh_failed while still retrying (docs/architecture.md "Refresh policy")."""
        s = self.s
        return {"server_name": s.name, "error": problem.as_dict(), "action": None, "will_retry": True,
                "attempts": s.rt.retry_count, "retrying_since": iso(s.rt.retrying_since),
                "next_retry_at": iso(s.retry_at),
                "expired": s.token is not None and s.token.expires_at is not None and self.now >= s.token.expires_at}

    def due_at(self) -> float | None:
        s = self.s
        if not s.refreshable():
            return None
        assert s.token is not None
        return policy.refresh_due_at(s.token.issued_at, s.token.expires_at, s.threshold)

    def next_refresh_at(self) -> float | None:
        s = self.s
        if s.inflight is not None:
            return None
        point = s.retry_at if s.rt.refresh_state == "retrying" else self.due_at()
        if point is not None and s.spread_at is not None:
            point = max(point, s.spread_at)
        return point

    def spread_overdue(self, draw: float) -> None:
        """At a start or a wake, a refresh already overdue waits a drawn share of OVERDUE_SPREAD: a fleet's
        overdue refreshes come spread over it, not as one burst. Steady-state points are left as they are."""
        s = self.s
        if s.inflight is not None or s.token is None or (s.spread_at is not None and s.spread_at > self.now):
            return
        point = s.retry_at if s.rt.refresh_state == "retrying" else self.due_at()
        if point is not None and point <= self.now:
            s.spread_at = self.now + policy.overdue_delay(draw)

    def spread_passed(self) -> bool:
        return self.s.spread_at is None or self.now >= self.s.spread_at

    def lease_end(self) -> float | None:
        """Until when an asker may keep the access token: its next refresh point, else shortly before expiry."""
        rec = self.s.token
        ends = [p for p in (self.next_refresh_at(),) if p is not None]
        if rec is not None and rec.expires_at is not None:
            ends.append(rec.expires_at - min(EXPIRY_MARGIN, EXPIRY_MARGIN_SHARE * max(0.0, rec.expires_at - rec.issued_at)))
        return min(ends) if ends else None

    def start_due_refresh(self) -> None:
        s = self.s
        if s.inflight is not None or s.token is None:
            return
        if s.rt.refresh_state == "retrying":
            if s.retry_at is not None and self.now >= s.retry_at and self.spread_passed():
                self.start_refresh("retry")
            return
        due = self.due_at()
        if due is not None:
            if self.now >= due and self.spread_passed():
                self.start_refresh("scheduled", due=due)
            else:
                self.rt(refresh_state="scheduled")
        elif s.rt.refresh_state != "failed":
            self.rt(refresh_state="idle")

    def schedule(self) -> None:
        """One wakeup at the next moment something changes; older wakeups are ignored by sequence."""
        s, now = self.s, self.now
        moments = []
        if s.rt.next_refresh_at is not None:
            moments.append(s.rt.next_refresh_at)
        rec = s.token
        if rec is not None and rec.expires_at is not None and rec.expires_at > now:
            moments.append(rec.expires_at)
        if rec is not None and not rec.refresh_token:
            due = login_due_at(rec, s.threshold)
            if due is not None and due > now:
                moments.append(due)  # when `action: login` appears
        if s.logins:
            moments.append(min(p.created for p in s.logins.values()) + LOGIN_TTL)
        if not moments:
            return
        s.timer_seq += 1
        self.effects.append(SetTimer(max(0.0, min(moments) - now), Tick(s.timer_seq)))

    # -- work --

    def work(self, op: Op, ctx: Pending) -> int:
        s = self.s
        s.request_seq += 1
        rid = s.request_seq
        s.pending[rid] = ctx
        self.effects.append(SendWork(rid, s.generation, op))
        return rid

    def revoke(self, tokens: tuple[tuple[str, str], ...], where: TokenRecord | None) -> bool:
        """Revokes (RFC 7009) in the background; True when it could try."""
        if where is None or not where.revocation_endpoint or not tokens:
            return False
        self.work(Revoke(where.revocation_endpoint, tokens, where.client_id or "", where.client_secret,
                         where.auth_method),
                  Pending(Revoke(where.revocation_endpoint, (), "", None)))
        return True

    def expire_logins(self) -> None:
        cutoff = self.now - LOGIN_TTL
        for state in [k for k, p in self.s.logins.items() if p.created < cutoff]:
            del self.s.logins[state]

    # -- refresh --

    def start_refresh(self, why: str, due: float | None = None) -> None:
        s = self.s
        rec = s.token
        if s.inflight is not None or rec is None or not rec.refresh_token or s.rt.failed:
            return
        self.rt(refresh_state="refreshing")
        s.spread_at = None
        # Everything from the record: a refresh never needs discovery, not even after a restart.
        op = Refresh(rec.token_endpoint or "", rec.refresh_token, rec.client_id or "", rec.client_secret,
                     rec.resource, rec.scopes or None, rec.auth_method)
        s.inflight = self.work(op, Pending(op, due=due, revoke_with=rec))
        self.effects.append(SetTimer(policy.WORK_DEADLINE, Deadline(s.inflight)))
        self.log("debug", f"refresh started ({why})")

    def refresh_succeeded(self, tok: TokenResponse) -> None:
        s, now = self.s, self.now
        assert s.token is not None
        s.generation += 1
        rec = s.token.but(
            access_token=tok.access_token,
            # RFC 6749 §6: the server may rotate; keep the old refresh token when it does not.
            refresh_token=tok.refresh_token or s.token.refresh_token,
            token_type=tok.token_type,
            issued_at=now,
            expires_at=now + tok.expires_in if tok.expires_in is not None else None,
            expires_from_jwt=tok.expires_from_jwt,
            refresh_count=s.token.refresh_count + 1,
            last_refresh_at=now,
            scopes=tuple(tok.scope) if tok.scope is not None else s.token.scopes,
        )
        s.protocol_attempts = 0
        s.confirm_attempts = 0
        s.retry_at = None
        s.streak_told = ()
        s.client_doubts = 0
        if not s.rt.failed:  # failed meanwhile (the upstream refused a fresh token): the rotation is kept, the verdict too
            self.rt(retry_count=0, last_error=None, refresh_state="scheduled", retrying_since=None)
        self.persist(rec)
        self.log("info", f"token refreshed; expires in {_fmt_in(rec.expires_at, now)}")
        waiters, s.waiters = s.waiters, []
        self.evaluate("token_refreshed", (("oauth.token_refreshed", {
            "server_name": s.name, "expires_at": s.status(now)["token_expires_at"]}),))
        for asker, want in waiters:
            self.answer(asker, want)
        self.probe()

    def refresh_failed(self, err: OAuthError, jitter: float) -> None:
        s = self.s
        rec = s.token
        if rec is not None and s.dynamic_client(rec.client_id) and rec.issuer:
            err = self.client_forgotten(err, rec.issuer)
        if err.kind == "protocol" and "invalid_target" in err.message:
            err = OAuthError(err.kind, f"{err.message}{_resource_hint(s)}")
        if err.kind == "protocol":
            s.protocol_attempts += 1
        s.confirm_attempts = s.confirm_attempts + 1 if err.confirm else 0
        problem = Problem(err.kind, err.message)
        self.rt(last_error=problem)
        waiters, s.waiters = s.waiters, []
        events: tuple[tuple[str, dict[str, Any]], ...] = ()
        if s.rt.failed:
            pass  # already failed for good while this refresh was out (the upstream refused a fresh token)
        elif policy.gives_up(err.kind, s.protocol_attempts, s.confirm_attempts if err.confirm else None):
            self.rt(failed=True, refresh_state="failed", retrying_since=None)
            s.retry_at = None
            self.persist(s.token)
            self.log("warning", f"refresh failed for good ({err.kind}): {err.message}")
            events = (("oauth.refresh_failed", {"server_name": s.name, "error": problem.as_dict(),
                                                "action": "login", "will_retry": False}),)
        else:
            delay = policy.backoff_delay(s.rt.retry_count, err.retry_after, jitter)
            since = s.rt.retrying_since if s.rt.retrying_since is not None else self.now
            self.rt(retry_count=s.rt.retry_count + 1, refresh_state="retrying", retrying_since=since)
            s.retry_at = self.now + delay
            self.log("warning", f"refresh failed ({err.kind}): {err.message}; retry {s.rt.retry_count} "
                                f"in {delay:.1f}s")
            if s.rt.retry_count >= policy.STREAK_TOLD_AFTER and "attempts" not in s.streak_told:
                # A failing streak is told once, not silently retried until the token has expired.
                s.streak_told += ("attempts",)
                events = (("oauth.refresh_failed", self.streak_payload(problem)),)
        self.evaluate("refresh_failed" if s.rt.failed else "refresh_retrying", events)
        for asker, want in waiters:
            if want == "token" and s.valid_token(self.now) is not None:
                self.answer(asker, want)
            elif s.rt.failed:
                self.fail(asker, err.kind, f"{err.message} — log in: {self.login_hint()}", needs_login=True)
            else:
                self.fail(asker, err.kind, err.message)

    def client_forgotten(self, err: OAuthError, issuer: str) -> OAuthError:
        """A refresh with a dynamic registration the server no longer knows (a restart, `invalid_client`,
        Supabase's 422, an HTML 500 twice in a row): the registration is dropped, so the next login
        registers afresh, and the failure says to log in again."""
        s = self.s
        if err.confirm and s.confirm_attempts + 1 < policy.CONFIRMATIONS:
            return err  # a refusal that needs confirming (a bare 401) says nothing of the client until confirmed
        if isinstance(err, ClientUnknown) and not err.certain:
            s.client_doubts += 1
            if s.client_doubts < CLIENT_DOUBTS:
                return err  # an HTML 500 may be an outage: retried once before it counts
        elif err.kind != "invalid_client":
            s.client_doubts = 0
            return err
        s.client_doubts = 0
        self.drop_client(issuer)
        return OAuthError("invalid_client", f"{err.message}; the authorization server no longer knows mcpproxy's "
                                            f"registered client, so its registration was dropped — log in again "
                                            f"(mcpproxy registers afresh): {self.login_hint()}")

    def drop_client(self, issuer: str) -> None:
        self.effects.append(DropClient(issuer))
        self.log("warning", f"dropped the client registration at {issuer}; the next login registers afresh")

    def answer(self, asker: Any, want: str) -> None:
        s = self.s
        if want == "refresh":
            st = s.status(self.now)
            self.reply(asker, Refreshed(s.name, st["token_expires_at"], st))
            return
        token = s.valid_token(self.now)
        if token is None:
            self.fail(asker, "login_required", f"server '{s.name}' has no valid token — log in: {self.login_hint()}",
                      needs_login=True)
        else:
            self.reply(asker, TokenAnswer(s.name, token, s.generation, self.lease_end()))

    def probe(self) -> None:
        s = self.s
        token = s.valid_token(self.now)
        if token is not None and s.server.url:
            op = Probe(s.server.url, token)
            self.work(op, Pending(Probe(s.server.url, "")))

    # -- login --

    def login_scopes(self) -> tuple[str, ...]:
        s = self.s
        assert s.server.oauth is not None
        scopes = s.server.oauth.scopes or (s.discovery.scopes if s.discovery else ())
        return tuple(dict.fromkeys((*scopes, *s.rt.missing_scopes)))

    def resource(self) -> str | None:
        """The RFC 8707 indicator per `oauth.resource`: discovered (`auto`), none (`omit`), or the given one."""
        s = self.s
        assert s.server.oauth is not None and s.discovery is not None
        if s.server.oauth.resource == "omit":
            return None
        return s.server.oauth.resource_override or s.discovery.resource

    def with_client(self) -> None:
        s = self.s
        assert s.server.oauth is not None and s.discovery is not None
        oauth = s.server.oauth
        if oauth.client_id:
            self.finish_login_start({"client_id": oauth.client_id, "client_secret": oauth.client_secret})
            return
        meta = s.discovery.metadata
        if not meta.registration_endpoint:
            self.login_prep_failed(OAuthError("config", no_registration_message(meta.issuer, s.name, s.callback_uri)))
            return
        s.preparing = True
        self.effects.append(LoadClient(meta.issuer))

    def finish_login_start(self, client: dict[str, Any]) -> None:
        s = self.s
        assert s.server.oauth is not None and s.discovery is not None
        s.preparing = False
        askers, s.login_askers = s.login_askers, []
        extra = {k: v for k, v in s.server.oauth.extra_params if k != "resource"}
        refused: OAuthError | None = None
        for asker, state, verifier in askers:
            self.expire_logins()
            while len(s.logins) >= MAX_PENDING_LOGINS:
                s.logins.pop(next(iter(s.logins)))
            try:
                request = authorize.authorization_request(
                    s.discovery.metadata, client_id=client["client_id"], redirect_uri=s.callback_uri,
                    scopes=self.login_scopes(), state=state, code_challenge=pkce.s256_challenge(verifier),
                    resource=self.resource() or "", extra_params=extra or None,
                    assume_s256=s.server.oauth.assume_pkce_s256, server=s.name)
            except OAuthError as e:
                refused = e
                self.fail(asker, e.kind, e.message)
                continue
            s.logins[state] = PendingLogin(verifier, self.now, client["client_id"], client.get("client_secret"),
                                           s.callback_uri, self.login_scopes(), client.get("issuer"),
                                           client.get("auth_method"))
            self.log("info", "login started")
            self.reply(asker, LoginStarted(s.name, request, state))
        if refused is not None:  # the status says why the login cannot start, like any other login failure
            self.log("warning", f"cannot start a login ({refused.kind}): {refused.message}")
            self.rt(last_error=Problem(refused.kind, refused.message))
            self.evaluate("login_failed")
            return
        self.schedule()

    def login_prep_failed(self, err: OAuthError) -> None:
        s = self.s
        s.preparing = False
        askers, s.login_askers = s.login_askers, []
        self.log("warning", f"cannot start a login ({err.kind}): {err.message}")
        self.rt(last_error=Problem(err.kind, err.message))
        self.evaluate("login_failed")
        for asker, _state, _verifier in askers:
            self.fail(asker, err.kind, err.message)

    def exchanged(self, tok: TokenResponse, login: PendingLogin) -> None:
        s, now = self.s, self.now
        assert s.discovery is not None
        meta = s.discovery.metadata
        s.generation += 1
        rec = TokenRecord(
            access_token=tok.access_token, refresh_token=tok.refresh_token, token_type=tok.token_type,
            scopes=tuple(tok.scope) if tok.scope is not None else login.scopes,
            issued_at=now, expires_at=now + tok.expires_in if tok.expires_in is not None else None,
            expires_from_jwt=tok.expires_from_jwt,
            issuer=meta.issuer, token_endpoint=meta.token_endpoint, revocation_endpoint=meta.revocation_endpoint,
            client_id=login.client_id, client_secret=login.client_secret, auth_method=login.auth_method,
            resource=self.resource(),
            url=s.server.url, logged_in_at=now)
        s.rt = Runtime()
        s.inflight = s.retry_at = s.spread_at = None  # a refresh of the old token is stale now, and so is its retry
        s.protocol_attempts = 0
        s.confirm_attempts = 0
        s.streak_told = ()
        s.client_doubts = 0
        self.persist(rec)
        self.log("info", f"logged in; token expires in {_fmt_in(rec.expires_at, now)}")
        self.evaluate("login_completed", (("oauth.login_completed", {"server_name": s.name}),))


# ---- handlers: one per event -----------------------------------------------------------------------


def restored(server: ServerConfig, threshold: float, redirect_uri: str, loaded: Loaded) -> tuple[Session, list[Effect]]:
    """A session rebuilt from what the store held, before anything is started or scheduled: what the CLI
    shows and acts on while no service runs, and where a starting actor begins."""
    t = _Step(new_session(server, threshold, redirect_uri), 0.0)
    _restore(t, loaded)
    return t.s, t.effects


def _loaded(t: _Step, ev: Loaded) -> None:
    _restore(t, ev)
    t.spread_overdue(ev.spread)
    t.evaluate(ev.reason)


def _restore(t: _Step, ev: Loaded) -> None:
    s = t.s
    if ev.problem is not None:
        t.log("error", ev.problem + ("; it needs a login" if ev.unreadable else ""))
        t.rt(last_error=Problem("config", f"{ev.problem} — log in again" if ev.unreadable else ev.problem))
        if ev.unreadable:
            t.effects.append(Persist(TokenRecord()))
    rec = ev.record
    if rec is not None:
        s.generation = rec.generation
        t.rt(user_logged_out=rec.user_logged_out)
        if rec.failed is not None:
            t.rt(failed=True, refresh_state="failed", last_error=rec.failed)
        if rec.has_token and (rec.url or s.server.url) != s.server.url:
            t.log("warning", "its URL changed since login; the stored token is dropped")
            t.persist(None)
        else:
            s.token = rec if rec.has_token else None


def _configured(t: _Step, ev: Configured) -> None:
    s = t.s
    if s.server.url != ev.server.url:
        s.discovery = None
    s.server, s.threshold, s.redirect_uri = ev.server, ev.threshold, ev.redirect_uri
    t.evaluate(ev.reason)


def _worker_lost(t: _Step, ev: WorkerLost) -> None:
    """The worker died with our work: fail it now (and retry) rather than wait for its deadline."""
    s = t.s
    lost, s.pending = s.pending, {}
    err = OAuthError("network", "the OAuth worker stopped while handling this request")
    for rid, ctx in lost.items():
        if isinstance(ctx.op, Refresh) and rid == s.inflight:
            s.inflight = None
            t.refresh_failed(err, ev.jitter)
        elif isinstance(ctx.op, Exchange):
            for asker in ctx.askers:
                t.fail(asker, err.kind, f"{err.message} — start the login again")
        elif isinstance(ctx.op, (Discover, Register)):
            t.login_prep_failed(err)


def _tick(t: _Step, ev: Tick) -> None:
    if ev.seq == t.s.timer_seq:
        t.expire_logins()
        t.evaluate("timer")


def _deadline(t: _Step, ev: Deadline) -> None:
    s = t.s
    if ev.request_id == s.inflight:
        # Its result may still come (and is then taken); the refresh is retried meanwhile.
        s.inflight = None
        t.refresh_failed(OAuthError("network", "the token endpoint did not answer in time"), ev.jitter)


def _clock_jumped(t: _Step, ev: ClockJumped) -> None:
    t.spread_overdue(ev.spread)
    t.evaluate("wake")


def _status_wanted(t: _Step, ev: StatusWanted) -> None:
    t.reply(ev.reply_to, t.s.status(t.now))


def _work_finished(t: _Step, ev: WorkFinished) -> None:
    s = t.s
    ctx = s.pending.pop(ev.request_id, None)
    if ctx is None:
        return
    result = ev.result
    failed = result if isinstance(result, OAuthError) else None
    op = ctx.op
    if isinstance(op, Refresh):
        _refresh_done(t, ev, ctx, failed)
    elif isinstance(op, Discover):
        if failed:
            t.login_prep_failed(failed)
        else:
            s.discovery = result
            t.with_client()
    elif isinstance(op, Register):
        if failed:
            t.login_prep_failed(failed)
        else:
            reg: ClientRegistration = result
            client = {"client_id": reg.client_id, "client_secret": reg.client_secret, "auth_method": reg.auth_method,
                      "redirect_uri": reg.redirect_uri, "issuer": reg.issuer, "registered_at": t.now}
            t.effects.append(SaveClient(reg.issuer, client))
            t.log("info", f"registered as a client at {reg.issuer}")
            t.finish_login_start(client)
    elif isinstance(op, Exchange):
        _exchange_done(t, ev, ctx, failed)
    elif isinstance(op, Probe):
        if ev.generation == s.generation:
            probed = Probed(False, failed.message) if failed else result
            if not probed.connected:
                t.log("warning", f"probe with the new token: {probed.detail}")
            t.rt(connected=probed.connected, last_probe_at=t.now)
            t.evaluate("probe")
    elif isinstance(op, Revoke):
        if failed:
            t.log("warning", f"revocation failed ({failed.kind}): {failed.message}")
        else:
            t.log("info", "tokens revoked at the authorization server")


def _refresh_done(t: _Step, ev: WorkFinished, ctx: Pending, failed: OAuthError | None) -> None:
    s = t.s
    was_inflight = ev.request_id == s.inflight
    if was_inflight:
        s.inflight = None
    lateness = ev.started_at - ctx.due if ctx.due is not None else None
    t.effects.append(Measured(failed.kind if failed else "ok", lateness))
    if ev.generation != s.generation:
        # Logged out or logged in again meanwhile: never keep a token of a cancelled generation.
        if failed is None:
            t.log("info", "a refresh finished for a cancelled generation; revoking its token")
            tok: TokenResponse = ev.result
            t.revoke(_secrets_of(tok), ctx.revoke_with)
        if was_inflight:
            t.evaluate("refresh_stale")
        return
    if failed is not None:
        t.refresh_failed(failed, ev.jitter)
    else:
        t.refresh_succeeded(ev.result)


def _exchange_done(t: _Step, ev: WorkFinished, ctx: Pending, failed: OAuthError | None) -> None:
    s = t.s
    if ev.generation != s.generation:
        if failed is None and ctx.login is not None and s.discovery is not None:
            meta = s.discovery.metadata
            t.revoke(_secrets_of(ev.result), TokenRecord(
                revocation_endpoint=meta.revocation_endpoint, client_id=ctx.login.client_id,
                client_secret=ctx.login.client_secret, auth_method=ctx.login.auth_method))
        for asker in ctx.askers:
            t.fail(asker, "cancelled", "the login was cancelled by a logout")
        return
    if failed is not None:
        login = ctx.login
        if login is not None and login.issuer and (failed.kind == "invalid_client" or isinstance(failed, ClientUnknown)):
            # At the code exchange even an HTML 500 counts: the login has failed anyway, registering again is cheap.
            t.drop_client(login.issuer)
            failed = OAuthError("invalid_client", f"{failed.message}; the authorization server no longer knows "
                                                  "mcpproxy's registered client, so its registration was dropped — "
                                                  f"log in again (mcpproxy registers afresh): {t.login_hint()}")
        elif failed.kind == "protocol" and "invalid_target" in failed.message:
            failed = OAuthError(failed.kind, f"{failed.message}{_resource_hint(s)}")
        t.rt(last_error=Problem(failed.kind, failed.message))
        t.log("warning", f"login failed ({failed.kind}): {failed.message}")
        t.evaluate("login_failed")
        for asker in ctx.askers:
            t.fail(asker, failed.kind, failed.message)
        return
    assert ctx.login is not None
    t.exchanged(ev.result, ctx.login)
    for asker in ctx.askers:
        t.reply(asker, LoginCompleted(s.name, s.status(t.now)))
    t.probe()


def _login_wanted(t: _Step, ev: LoginWanted) -> None:
    s = t.s
    s.login_askers.append((ev.reply_to, ev.state, ev.verifier))
    if s.preparing:
        return
    if s.discovery is None:
        assert s.server.url is not None
        s.preparing = True
        op = Discover(s.server.url)
        t.work(op, Pending(op))
    else:
        t.with_client()


def _client_loaded(t: _Step, ev: ClientLoaded) -> None:
    s = t.s
    if s.discovery is None or ev.issuer != s.discovery.metadata.issuer:
        return
    stored = ev.client
    if stored is not None and any(p.client_id == stored.get("client_id") for p in s.logins.values()):
        # A login link with this registration never came back: the server may have forgotten the client and
        # shown the person an error page we cannot see (Supabase's "Unrecognized client_id"). Register afresh.
        t.log("info", "an earlier login with the stored client registration never returned; registering afresh")
        stored = None
    if stored is not None and stored.get("redirect_uri") == s.callback_uri:
        t.finish_login_start(stored)
        return
    op = Register(s.discovery.metadata, s.callback_uri, t.login_scopes())
    t.work(op, Pending(op))


def _code_returned(t: _Step, ev: CodeReturned) -> None:
    s = t.s
    t.expire_logins()
    login = s.logins.pop(ev.state, None)  # single use
    if login is None:
        t.fail(ev.reply_to, "unknown_login", "this login link is unknown, used or expired — start the login again")
        return
    if ev.error:
        text = f"the authorization server refused the login: {ev.error}"
        if ev.error_description:
            text += f" ({ev.error_description[:200]})"
        if ev.error == "invalid_target":
            text += _resource_hint(s)
        t.rt(last_error=Problem("protocol", text))
        t.evaluate("login_failed")
        t.fail(ev.reply_to, "protocol", text)
        return
    if s.discovery is None:  # the server's URL changed while the person was logging in
        t.fail(ev.reply_to, "config", "the server's configuration changed during the login — start the login again")
        return
    try:
        authorize.check_callback_iss(s.discovery.metadata, ev.iss)
    except OAuthError as e:
        t.fail(ev.reply_to, e.kind, e.message)
        return
    # Login in progress cancels a pending refresh: results of older generations become stale.
    s.generation += 1
    s.inflight = None
    s.retry_at = None
    s.spread_at = None
    t.rt(refresh_state="idle")
    meta = s.discovery.metadata
    op = Exchange(meta.token_endpoint, ev.code, login.verifier, login.client_id, login.client_secret,
                  login.redirect_uri, t.resource(), login.auth_method)
    t.work(op, Pending(op, askers=(ev.reply_to,), login=login))


def _logout_wanted(t: _Step, ev: LogoutWanted) -> None:
    s = t.s
    old = s.token
    s.generation += 1  # everything in flight is now stale
    s.inflight = None
    s.retry_at = None
    s.spread_at = None
    s.logins.clear()
    waiters, s.waiters = s.waiters, []
    # Scopes a server asked for stay wanted: the next login requests them.
    s.rt = Runtime(user_logged_out=True, connected=None, missing_scopes=s.rt.missing_scopes)
    s.streak_told = ()
    t.persist(None)
    will_revoke = bool(old and old.revocation_endpoint)
    t.log("info", f"logged out ({ev.reason})")
    t.evaluate("logout", (("oauth.logout", {"server_name": s.name, "revoked": will_revoke, "reason": ev.reason}),))
    t.reply(ev.reply_to, LoggedOut(s.name, will_revoke, s.status(t.now)))
    for asker, _want in waiters:
        t.fail(asker, "login_required", f"server '{s.name}' was logged out", needs_login=True)
    if old is not None:
        t.revoke(old.secrets(), old)


def _refresh_wanted(t: _Step, ev: RefreshWanted) -> None:
    s = t.s
    if not s.refreshable():
        why = ("no token is held" if s.token is None else
               "the last refresh failed for good" if s.rt.failed else "the token cannot be refreshed")
        t.fail(ev.reply_to, "login_required", f"server '{s.name}': {why} — log in: {t.login_hint()}",
               needs_login=True)
        return
    s.waiters.append((ev.reply_to, "refresh"))
    if s.inflight is None:
        s.retry_at = None
        t.rt(refresh_state="scheduled")
        t.start_refresh("requested")
        t.evaluate("refresh_requested")


def _token_wanted(t: _Step, ev: TokenWanted) -> None:
    s = t.s
    if s.inflight is not None:
        s.waiters.append((ev.reply_to, "token"))
    elif s.valid_token(t.now) is None and s.refreshable():
        s.waiters.append((ev.reply_to, "token"))
        t.start_refresh("expired on use")
        t.evaluate("refresh_on_use")
    else:
        t.answer(ev.reply_to, "token")


def _token_rejected(t: _Step, ev: TokenRejected) -> None:
    s = t.s
    if ev.generation != s.generation or s.inflight is not None:
        # Already refreshed since that token was handed out, or a refresh is on its way.
        _token_wanted(t, TokenWanted(ev.reply_to))
    elif s.refreshable():
        s.waiters.append((ev.reply_to, "token"))
        t.start_refresh("upstream 401")
        t.evaluate("upstream_401")
    else:
        t.fail(ev.reply_to, "login_required", f"server '{s.name}' refused the token — log in: {t.login_hint()}",
               needs_login=True)


def _token_refused(t: _Step, ev: TokenRefused) -> None:
    s = t.s
    if ev.generation == s.generation and s.token is not None and not s.rt.failed:
        s.retry_at = None
        t.rt(failed=True, refresh_state="failed", last_error=Problem("invalid_grant", (
            "the MCP server refuses this server's token even right after a refresh — "
            f"log in again: {t.login_hint()}")))
        t.persist(s.token)
        t.log("warning", "the MCP server refused a fresh token; a login is needed")
        t.evaluate("upstream_refused")
    t.reply(ev.reply_to, s.status(t.now))


def _scope_required(t: _Step, ev: ScopeRequired) -> None:
    s = t.s
    scopes = tuple(dict.fromkeys((*s.rt.missing_scopes, *ev.scopes)))
    if scopes != s.rt.missing_scopes:
        t.rt(missing_scopes=scopes)
        t.log("warning", f"the MCP server asks for scope(s) {' '.join(scopes)}; the next login requests them")
    t.evaluate("insufficient_scope")
    t.reply(ev.reply_to, s.status(t.now))


_HANDLERS: dict[type, Callable[[_Step, Any], None]] = {
    Loaded: _loaded, Configured: _configured, Tick: _tick, Deadline: _deadline, ClockJumped: _clock_jumped,
    StatusWanted: _status_wanted, LoginWanted: _login_wanted, ClientLoaded: _client_loaded,
    CodeReturned: _code_returned, WorkFinished: _work_finished, WorkerLost: _worker_lost,
    LogoutWanted: _logout_wanted, RefreshWanted: _refresh_wanted, TokenWanted: _token_wanted,
    TokenRejected: _token_rejected, TokenRefused: _token_refused, ScopeRequired: _scope_required,
}


def _resource_hint(s: Session) -> str:
    """RFC 8707 `invalid_target`: the server refuses the resource indicator (Entra ID refuses any)."""
    mode = s.server.oauth.resource if s.server.oauth else "auto"
    return (f" — the authorization server refuses the resource indicator (RFC 8707); set oauth.resource of server "
            f"'{s.name}' to \"omit\" (or to the value it expects) in the config (now {mode!r})")


def _secrets_of(tok: TokenResponse) -> tuple[tuple[str, str], ...]:
    return TokenRecord(access_token=tok.access_token, refresh_token=tok.refresh_token).secrets()


def _fmt_in(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{ts - now:.0f}s"
