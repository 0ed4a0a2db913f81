"""The session core against a model (docs/architecture.md "Session core"): random interleavings of
logins, refresh outcomes, logouts, token reads, upstream 401s, clock jumps, lost workers and restarts,
with the invariants checked after every step. No Thespian here: the core is pure.

The test plays the shell: it keeps the store (the last Persist), the work in flight, the timers, and a
small authorization server that remembers which refresh tokens it has spent (strict rotation with
reuse detection, docs/providers.md), so a refresh with a spent token is answered `invalid_grant` as a
real one would — and the session must never send one. Tokens come with and without a lifetime (no
`expires_in`: no proactive timer), and refusals that need one confirming retry (`invalid_request`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mcpproxy import policy
from mcpproxy import session as core
from mcpproxy.config import OAuthSettings, ServerConfig
from mcpproxy.oauth.discovery import AuthServerMetadata, Discovery
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.registration import ClientRegistration, ClientUnknown
from mcpproxy.oauth.tokens import TokenResponse
from mcpproxy.record import TokenRecord
from mcpproxy.work import Discover, Exchange, Probe, Probed, Refresh, Register, Revoke, Revoked

SERVER = ServerConfig(name="s", protocol="http", url="https://mcp.example.com/mcp", oauth=OAuthSettings())
REDIRECT = "http://127.0.0.1:8080/oauth/callback"
META = AuthServerMetadata(issuer="https://as.example.com", authorization_endpoint="https://as.example.com/authorize",
                          token_endpoint="https://as.example.com/token", registration_endpoint="https://as.example.com/reg",
                          revocation_endpoint="https://as.example.com/revoke", code_challenge_methods_supported=("S256",),
                          scopes_supported=(), iss_parameter_supported=False)
DISCOVERY = Discovery(resource="https://mcp.example.com/mcp", metadata=META, scopes=("read",))
REFRESH_OUTCOMES = ("rotate", "rotate", "rotate", "keep", "keep", "network", "server", "retry_after", "lost",
                    "invalid_grant", "invalid_client", "protocol", "unrecognized_client", "html_500",
                    "unconfirmed", "unconfirmed")
#: A `make test` run: MCPPROXY_MODEL_EXAMPLES interleavings of up to MCPPROXY_MODEL_STEPS steps each.
EXAMPLES = int(os.environ.get("MCPPROXY_MODEL_EXAMPLES", "400"))
STEPS = int(os.environ.get("MCPPROXY_MODEL_STEPS", "80"))


@dataclass
class InFlight:
    request_id: int
    generation: int
    op: Any
    expired: bool = False  # its Deadline fired: the session no longer counts it as in flight


class SessionModel(RuleBasedStateMachine):
    @initialize(threshold=st.sampled_from([0.5, 0.8, 0.95, 1.0]))
    def start(self, threshold: float) -> None:
        self.now = 1_000_000.0
        self.threshold = threshold
        self.stored: TokenRecord | None = None  # the store
        self.clients: dict[str, dict[str, Any]] = {}
        self.work: dict[int, InFlight] = {}
        self.timers: list[tuple[float, Any]] = []
        self.replies: list[tuple[Any, Any]] = []
        self.as_spent: set[str] = set()  # refresh tokens the AS has spent (it answers invalid_grant to them)
        self.client_spent: set[str] = set()  # refresh tokens the session was told are replaced or revoked
        self.counter = 0
        self.failed_for_good = False  # a permanent failure happened and no login since
        self.streak_events = 0  # oauth.refresh_failed with will_retry since the last success
        self.unconfirmed = 0  # refusals that need confirming (OAuthError.confirm) in a row
        self.woke_at = self.now  # the last start or wake: a spread refresh waits at most OVERDUE_SPREAD past it
        self.s = core.new_session(SERVER, threshold, REDIRECT)
        self.feed(core.Loaded(None))

    # ---- the shell -------------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def feed(self, event: Any) -> list[Any]:
        before = self.s.clone()
        frozen = (before.generation, before.token, before.rt, dict(before.pending), list(before.waiters))
        confirming = self.count_unconfirmed(event, before)
        new, effects = core.step(self.s, event, self.now)
        assert (self.s.generation, self.s.token, self.s.rt, dict(self.s.pending), list(self.s.waiters)) == frozen, \
            "step changed the session it was given"
        self.check_effects(event, effects, self.s)
        self.check_backoff(event, self.s, new)
        self.check_no_timer_without_expiry(new, effects)
        self.check_spread(event, self.s, new, effects)
        if confirming:
            # A refusal that needs confirming is permanent on its second time in a row, never on its first.
            permanent = any(isinstance(e, core.Emit) and e.name == "oauth.refresh_failed"
                            and e.payload["will_retry"] is False for e in effects)
            assert permanent == (self.unconfirmed >= policy.CONFIRMATIONS and not before.rt.failed), \
                (self.unconfirmed, permanent)
        self.s = new
        for effect in effects:
            self.carry_out(effect)
        return effects

    def count_unconfirmed(self, event: Any, before: core.Session) -> bool:
        """Counts, as the model sees them, refusals that need confirming in a row; True for one now."""
        if isinstance(event, core.WorkFinished) and event.request_id in before.pending \
                and event.generation == before.generation:
            op = before.pending[event.request_id].op
            confirm = isinstance(event.result, OAuthError) and event.result.confirm
            if isinstance(op, Refresh):
                self.unconfirmed = self.unconfirmed + 1 if confirm else 0
                return confirm
            if isinstance(op, Exchange) and isinstance(event.result, TokenResponse):
                self.unconfirmed = 0  # a login starts afresh
        if isinstance(event, core.Deadline) and event.request_id == before.inflight or \
                isinstance(event, core.WorkerLost) and before.inflight is not None:
            self.unconfirmed = 0  # counted as a network failure
        return False

    def check_no_timer_without_expiry(self, after: core.Session, effects: list[Any]) -> None:
        """A token without a lifetime sets no proactive timer: nothing is due until the upstream says 401."""
        rec = after.token
        if rec is None or rec.expires_at is not None or after.rt.refresh_state == "retrying" or after.logins:
            return
        assert not any(isinstance(e, core.SetTimer) and isinstance(e.payload, core.Tick) for e in effects), \
            "a timer for a token without expiry"

    def carry_out(self, effect: Any) -> None:
        match effect:
            case core.Persist(record):
                self.stored = record
            case core.SendWork(request_id, generation, op):
                self.work[request_id] = InFlight(request_id, generation, op)
                if isinstance(op, Revoke):
                    self.client_spent.update(t for t, hint in op.tokens if hint == "refresh_token")
                    self.as_spent.update(t for t, hint in op.tokens if hint == "refresh_token")
            case core.SetTimer(delay, payload):
                assert delay >= 0
                self.timers.append((self.now + delay, payload))
            case core.Reply(to, answer):
                self.replies.append((to, answer))
            case core.LoadClient(issuer):
                self.feed(core.ClientLoaded(issuer, self.clients.get(issuer)))
            case core.SaveClient(issuer, client):
                self.clients[issuer] = client
            case core.DropClient(issuer):
                self.clients.pop(issuer, None)

    # ---- invariants on each step's effects ----------------------------------------------------------

    def check_effects(self, event: Any, effects: list[Any], before: core.Session) -> None:
        persisted = self.stored
        refresh_failed = 0
        refreshing = [w for w in self.work.values() if isinstance(w.op, Refresh) and not w.expired]
        for effect in effects:
            match effect:
                case core.Persist(record):
                    persisted = record
                case core.Reply(_, core.TokenAnswer(_, token, _, refresh_at)):
                    # A token is handed out only after the persist effect that holds it.
                    assert persisted is not None and persisted.access_token == token
                    # A lease of it ends by its refresh point and before its expiry, announcement or not.
                    due = policy.refresh_due_at(persisted.issued_at, persisted.expires_at, self.threshold)
                    if persisted.refresh_token and due is not None and not persisted.failed:
                        assert refresh_at is not None and refresh_at <= max(due, self.now + policy.OVERDUE_SPREAD)
                    if persisted.expires_at is not None:
                        assert refresh_at is not None and refresh_at < persisted.expires_at
                case core.Emit("oauth.token_refreshed" | "oauth.login_completed", _):
                    # Announced only after the persist effect that holds it.
                    assert persisted is not None and persisted.has_token
                case core.Emit("oauth.refresh_failed", payload) if payload["will_retry"]:
                    # A failing streak is told after the 3rd attempt, and once more when the token expires.
                    assert payload["attempts"] >= policy.STREAK_TOLD_AFTER or payload["expired"], payload
                    self.streak_events += 1
                    assert self.streak_events <= 2, "a failing streak told more than twice"
                case core.Emit("oauth.refresh_failed", payload):
                    refresh_failed += 1
                    assert payload["action"] == "login" and payload["will_retry"] is False
                case core.Emit(_, payload):
                    assert not _has_secret(payload, before, persisted), payload
                case core.SendWork(_, _, Refresh() as op):
                    # A spent refresh token is never sent again.
                    assert op.refresh_token not in self.client_spent, "a spent refresh token was sent again"
                    # A permanent failure means no further work until a person logs in.
                    assert not self.failed_for_good, "a refresh after a permanent failure"
                    refreshing = [w for w in refreshing if w.generation == before.generation]
                    # At most one refresh in flight.
                    assert not refreshing, f"a second refresh while {refreshing} is in flight"
                    self.check_refresh_point(event, before)
        if any(isinstance(e, core.Emit) and e.name in ("oauth.token_refreshed", "oauth.login_completed",
                                                       "oauth.logout") for e in effects):
            self.streak_events = 0
        assert refresh_failed <= 1
        if any(isinstance(e, core.DropClient) for e in effects):
            # A registration is dropped only when the session gives up on it: a refresh failed for good, or
            # the login's code exchange failed (its asker is told to log in again).
            told = refresh_failed or any(isinstance(e, core.Reply) and isinstance(e.answer, core.Failure)
                                         and e.answer.kind == "invalid_client" for e in effects)
            assert told, effects
        if refresh_failed:
            self.failed_for_good = True
        if isinstance(event, core.LogoutWanted):
            # Nothing in flight and no timer after a logout (revocation is the only work it starts).
            assert not any(isinstance(e, core.SetTimer) for e in effects)
            assert all(isinstance(e.op, Revoke) for e in effects if isinstance(e, core.SendWork))

    def check_refresh_point(self, event: Any, before: core.Session) -> None:
        """No proactive refresh before the threshold point; the others have a reason."""
        rec = event.record if isinstance(event, core.Loaded) else before.token
        assert rec is not None and rec.refresh_token
        due = policy.refresh_due_at(rec.issued_at, rec.expires_at, self.threshold)
        proactive = not isinstance(event, (core.TokenWanted, core.TokenRejected, core.RefreshWanted))
        if proactive and before.rt.refresh_state != "retrying":
            assert due is not None and self.now >= due, f"refresh at {self.now} before its point {due}"
        if before.rt.refresh_state == "retrying" and proactive:
            assert before.retry_at is not None and self.now >= before.retry_at, "a retry before its backoff ended"
        if proactive and before.spread_at is not None:
            assert self.now >= before.spread_at, "an overdue refresh sent before its place in the spread"
        if isinstance(event, core.TokenWanted):
            assert before.valid_token(self.now) is None, "refreshed on use although the token was good"

    @invariant()
    def state_is_consistent(self) -> None:
        if not hasattr(self, "s"):
            return
        s = self.s
        inflight = [w for w in self.work.values() if isinstance(w.op, Refresh) and not w.expired
                    and w.generation == s.generation]
        assert len(inflight) <= 1
        assert (s.inflight is None) == (not any(w.request_id == s.inflight for w in self.work.values()))
        if s.token is not None:
            # What the session holds is what the store holds.
            assert self.stored == s.token
        status = s.status(self.now)
        assert status["token_held"] == (s.token is not None)
        assert not _has_secret(status, s, self.stored)
        if status["refresh_state"] == "scheduled" and s.token is not None:
            due = policy.refresh_due_at(s.token.issued_at, s.token.expires_at, self.threshold)
            assert due is not None and s.rt.next_refresh_at is not None
            if s.spread_at is None:
                # Steady state: the refresh point stays within ±1 s of the threshold point.
                assert abs(s.rt.next_refresh_at - due) <= 1.0, (s.rt.next_refresh_at, due)
            else:
                # Overdue at a start or a wake: spread over at most OVERDUE_SPREAD past it.
                assert s.rt.next_refresh_at == max(due, s.spread_at)
                assert s.spread_at <= self.woke_at + policy.OVERDUE_SPREAD + 1e-6
        if s.rt.refresh_state == "retrying":
            assert s.retry_at is not None and s.rt.retry_count >= 1

    def check_spread(self, event: Any, before: core.Session, after: core.Session, effects: list[Any]) -> None:
        """Overdue refreshes at a start or a wake wait the drawn share of OVERDUE_SPREAD, never longer; no other
        event spreads anything."""
        if not isinstance(event, (core.Loaded, core.ClockJumped)):
            assert after.spread_at is None or after.spread_at == before.spread_at, "a spread outside a start or a wake"
            return
        self.woke_at = self.now
        if after.spread_at is not None and after.spread_at != before.spread_at:
            assert abs(after.spread_at - (self.now + policy.OVERDUE_SPREAD * event.spread)) < 1e-6
            assert not any(isinstance(e, core.SendWork) and isinstance(e.op, Refresh) for e in effects), \
                "an overdue refresh sent at once instead of at its place in the spread"
        rec = after.token
        if rec is None or before.inflight is not None or not after.refreshable():
            return
        retrying = before.rt.refresh_state == "retrying" and isinstance(event, core.ClockJumped)
        point = before.retry_at if retrying else policy.refresh_due_at(rec.issued_at, rec.expires_at, self.threshold)
        if point is None or point > self.now:
            return
        # Overdue: sent now only when the draw said so, else a timer within OVERDUE_SPREAD.
        sent = any(isinstance(e, core.SendWork) and isinstance(e.op, Refresh) for e in effects)
        if sent:
            assert self.now + policy.overdue_delay(event.spread) <= self.now, "an overdue refresh sent at once, not spread"
        else:
            assert after.rt.next_refresh_at is not None
            assert self.now <= after.rt.next_refresh_at <= self.now + policy.OVERDUE_SPREAD + 1e-6
            assert any(isinstance(e, core.SetTimer) and e.delay <= policy.OVERDUE_SPREAD + 1e-6 for e in effects)

    def check_backoff(self, event: Any, before: core.Session, after: core.Session) -> None:
        """Retries follow the backoff bounds: [10 %, 100 %] of the ceiling, or a believable Retry-After."""
        if after.rt.retry_count != before.rt.retry_count + 1 or after.rt.refresh_state != "retrying":
            return
        assert after.retry_at is not None
        wait = after.retry_at - self.now
        ceiling = policy.backoff_ceiling(before.rt.retry_count)
        result = getattr(event, "result", None)
        retry_after = getattr(result, "retry_after", None)
        upper = max(ceiling, min(retry_after, policy.RETRY_AFTER_CAP)) if retry_after else ceiling
        assert policy.JITTER_FLOOR * ceiling - 1e-6 <= wait <= upper + 1e-6, (wait, ceiling, retry_after)

    # ---- rules ------------------------------------------------------------------------------------

    @rule(answer_now=st.booleans(), lifetime=st.sampled_from([30.0, None, 5.0]))
    def login(self, answer_now: bool, lifetime: float | None) -> None:
        self.replies.clear()
        self.feed(core.LoginWanted("ui", self.fresh("state"), self.fresh("verifier") + "x" * 43))
        self.answer_login_preparation()
        started = [a for to, a in self.replies if isinstance(a, core.LoginStarted)]
        if not started:
            return
        self.feed(core.CodeReturned("browser", started[-1].state, self.fresh("code")))
        if answer_now and any(isinstance(w.op, Exchange) for w in self.work.values()):
            self.code_exchanged(ok=True, with_refresh=True, lifetime=lifetime)  # None: no expires_in

    def answer_login_preparation(self) -> None:
        for w in [w for w in self.work.values() if isinstance(w.op, (Discover, Register))]:
            self.work.pop(w.request_id)
            if isinstance(w.op, Discover):
                self.feed(core.WorkFinished(w.request_id, w.generation, DISCOVERY))
            else:
                reg = ClientRegistration(client_id=self.fresh("client"), client_secret=None, issuer=META.issuer,
                                         redirect_uri=REDIRECT)
                self.feed(core.WorkFinished(w.request_id, w.generation, reg))

    @precondition(lambda self: any(isinstance(w.op, Exchange) for w in self.work.values()))
    @rule(ok=st.booleans(), with_refresh=st.booleans(), lifetime=st.sampled_from([None, 5.0, 30.0, 3600.0]))
    def code_exchanged(self, ok: bool, with_refresh: bool, lifetime: float | None) -> None:
        w = next(w for w in self.work.values() if isinstance(w.op, Exchange))
        self.work.pop(w.request_id)
        result: Any = TokenResponse(self.fresh("at"), "Bearer", self.fresh("rt") if with_refresh else None, lifetime,
                                    None) if ok else OAuthError("invalid_grant", "bad code")
        stale = w.generation != self.s.generation
        effects = self.feed(core.WorkFinished(w.request_id, w.generation, result))
        if any(isinstance(e, core.Emit) and e.name == "oauth.login_completed" for e in effects):
            self.failed_for_good = False
        if stale and ok:
            self.check_cancelled_token_revoked(result, effects)

    @precondition(lambda self: any(isinstance(w.op, Refresh) for w in self.work.values()))
    @rule(outcome=st.sampled_from(REFRESH_OUTCOMES), jitter=st.floats(0, 1), lifetime=st.sampled_from([None, 4.0, 30.0, 60.0]))
    def refresh_answered(self, outcome: str, jitter: float, lifetime: float | None) -> None:
        w = next(w for w in self.work.values() if isinstance(w.op, Refresh))
        self.work.pop(w.request_id)
        rt = w.op.refresh_token
        if rt in self.as_spent:
            outcome = "invalid_grant"  # reuse detection
        result: Any
        if outcome in ("rotate", "keep"):
            new_rt = self.fresh("rt") if outcome == "rotate" else None
            if new_rt:
                self.as_spent.add(rt)
            result = TokenResponse(self.fresh("at"), "Bearer", new_rt, lifetime, None)
        elif outcome == "lost":
            self.as_spent.add(rt)
            result = OAuthError("network", "connection reset")
        elif outcome == "retry_after":
            result = OAuthError("server", "busy", retry_after=120.0)
        elif outcome == "unrecognized_client":
            result = ClientUnknown("HTTP 422 Unrecognized client_id")
        elif outcome == "html_500":
            result = ClientUnknown("HTTP 500 with an HTML page", certain=False)
        elif outcome == "unconfirmed":  # invalid_request / unauthorized_client: one confirming retry
            result = OAuthError("protocol" if jitter < 0.5 else "invalid_client", "refused", confirm=True)
        else:
            result = OAuthError(outcome, outcome)  # type: ignore[arg-type]
        before_gen = self.s.generation
        effects = self.feed(core.WorkFinished(w.request_id, w.generation, result, self.now, jitter))
        if isinstance(result, TokenResponse):
            if w.generation != before_gen:
                self.check_cancelled_token_revoked(result, effects)
            elif result.refresh_token:
                self.client_spent.add(rt)

    def check_cancelled_token_revoked(self, result: TokenResponse, effects: list[Any]) -> None:
        """A token that arrives for a cancelled generation is revoked, not kept."""
        assert self.s.token is None or self.s.token.access_token != result.access_token, "a cancelled token was kept"
        assert not any(isinstance(e, core.Persist) and e.record.access_token == result.access_token for e in effects)
        revoked = {t for e in effects if isinstance(e, core.SendWork) and isinstance(e.op, Revoke) for t, _ in e.op.tokens}
        assert result.access_token in revoked, "a cancelled token was not revoked"

    @rule(attempts=st.integers(1, 6), kind=st.sampled_from(["network", "server"]), jitter=st.floats(0, 1))
    def outage(self, attempts: int, kind: str, jitter: float) -> None:
        """A long failing streak: every refresh attempt fails while time passes past each backoff."""
        self.failing_refreshes(attempts, lambda: OAuthError(kind, "down"), jitter)  # type: ignore[arg-type]

    @rule(times=st.integers(1, 3), kind=st.sampled_from(["protocol", "invalid_client"]), jitter=st.floats(0, 1))
    def refusals_to_confirm(self, times: int, kind: str, jitter: float) -> None:
        """`invalid_request` / `unauthorized_client` in a row: one confirming retry, then permanent."""
        self.failing_refreshes(times, lambda: OAuthError(kind, "refused", confirm=True), jitter)  # type: ignore[arg-type]

    def failing_refreshes(self, times: int, error: Callable[[], OAuthError], jitter: float) -> None:
        """Each refresh attempt answered with the error, time passing past each backoff to the next one."""
        for _ in range(times):
            if not any(isinstance(w.op, Refresh) for w in self.work.values()):
                self.time_passes(policy.BACKOFF_CAP + 1.0)
            w = next((w for w in self.work.values() if isinstance(w.op, Refresh)), None)
            if w is None:
                return
            self.work.pop(w.request_id)
            self.feed(core.WorkFinished(w.request_id, w.generation, error(), self.now, jitter))

    @precondition(lambda self: any(isinstance(w.op, (Probe, Revoke)) for w in self.work.values()))
    @rule(ok=st.booleans())
    def side_work_answered(self, ok: bool) -> None:
        w = next(w for w in self.work.values() if isinstance(w.op, (Probe, Revoke)))
        self.work.pop(w.request_id)
        result: Any = (Probed(True, "ok") if isinstance(w.op, Probe) else Revoked()) if ok else \
            OAuthError("network", "down")
        self.feed(core.WorkFinished(w.request_id, w.generation, result))

    @rule(dt=st.floats(0.1, 40.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        for _ in range(1000):
            due = sorted((at, i) for i, (at, _) in enumerate(self.timers) if at <= self.now)
            if not due:
                return
            at, i = due[0]
            _, payload = self.timers.pop(i)
            if isinstance(payload, core.Deadline):
                for w in self.work.values():
                    if w.request_id == payload.request_id and payload.request_id == self.s.inflight:
                        w.expired = True
            self.feed(payload)
        raise AssertionError("timers keep firing at the same moment: a busy loop")

    @rule(slept=st.floats(60.0, 20_000.0), spread=st.floats(0, 1, exclude_max=True))
    def machine_sleeps(self, slept: float, spread: float) -> None:
        # Monotonic timers stop while the machine sleeps: they fire late, and the wall clock jumped.
        self.now += slept
        self.timers = [(at + slept, p) for at, p in self.timers]
        self.feed(core.ClockJumped(spread))

    @rule()
    def logout(self) -> None:
        self.feed(core.LogoutWanted("ui"))
        self.failed_for_good = False

    @rule()
    def token_wanted(self) -> None:
        self.feed(core.TokenWanted("mcp"))

    @rule(stale=st.booleans())
    def upstream_401(self, stale: bool) -> None:
        self.feed(core.TokenRejected("mcp", self.s.generation - 1 if stale else self.s.generation))

    @rule()
    def upstream_refuses_fresh_token(self) -> None:
        effects = self.feed(core.TokenRefused("mcp", self.s.generation))
        if any(isinstance(e, core.Persist) and e.record.failed for e in effects):
            self.failed_for_good = True

    @rule()
    def refresh_now(self) -> None:
        self.feed(core.RefreshWanted("ui"))

    @rule(scopes=st.lists(st.sampled_from(["read", "write", "admin"]), max_size=2))
    def scope_required(self, scopes: list[str]) -> None:
        self.feed(core.ScopeRequired("mcp", tuple(scopes)))

    @rule()
    def status_wanted(self) -> None:
        self.feed(core.StatusWanted("ui"))

    @rule(jitter=st.floats(0, 1))
    def worker_dies(self, jitter: float) -> None:
        self.work.clear()
        self.feed(core.WorkerLost(jitter))

    @rule(spread=st.floats(0, 1, exclude_max=True))
    def restart(self, spread: float) -> None:
        """The actor's process dies: what it had in flight is gone; it comes back from the store."""
        self.work.clear()
        self.timers.clear()
        self.streak_events = 0
        self.unconfirmed = 0
        self.s = core.new_session(SERVER, self.threshold, REDIRECT)
        self.feed(core.Loaded(self.stored, reason="actor_restarted", spread=spread))


def _has_secret(doc: Any, s: core.Session, stored: TokenRecord | None) -> bool:
    secrets = {x for r in (s.token, stored) if r for x in (r.access_token, r.refresh_token, r.client_secret) if x}
    text = repr(doc)
    return any(x in text for x in secrets)


# Deterministic in `make test` (the same interleavings every run); MCPPROXY_MODEL_EXPLORE=1 draws new ones.
SessionModel.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                                          derandomize=not os.environ.get("MCPPROXY_MODEL_EXPLORE"), database=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_session_model = SessionModel.TestCase
