"""Refresh policy (docs/architecture.md "Refresh policy"): when to refresh, how long to back off, when to stop.

Pure functions of plain numbers; the random draw for the jitter is an argument, so the session core
that calls them stays deterministic.
"""

from __future__ import annotations

from mcpproxy.oauth.errors import PERMANENT_KINDS

BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
#: Jitter is drawn from this share of the exponential ceiling up to all of it, so a retry is never immediate.
JITTER_FLOOR = 0.1
#: A Retry-After longer than this is not believed (a broken server must not park us for a day).
RETRY_AFTER_CAP = 600.0
#: Malformed answers are retried a few times (a deploy in progress), then a person is asked.
MAX_PROTOCOL_ATTEMPTS = 5
#: A worker that has not answered by then is presumed lost; the refresh is retried.
WORK_DEADLINE = 45.0
#: Refreshes found overdue at a start or a wake are spread over this many seconds, not sent in one burst.
OVERDUE_SPREAD = 2.0
#: A failing streak is told (one `oauth.refresh_failed` with `will_retry: true`) after this many attempts.
STREAK_TOLD_AFTER = 3


def refresh_due_at(issued_at: float, expires_at: float | None, threshold: float) -> float | None:
    """Wall-clock time of the proactive refresh; None when the token has no lifetime or refresh is off."""
    if expires_at is None or threshold >= 1.0:
        return None
    return issued_at + threshold * max(0.0, expires_at - issued_at)


def overdue_delay(u: float) -> float:
    """How long a refresh found overdue at a start or a wake waits: a share u (a draw from [0, 1)) of OVERDUE_SPREAD."""
    return OVERDUE_SPREAD * min(max(u, 0.0), 1.0)


def backoff_ceiling(attempt: int) -> float:
    """min(cap, base·2^attempt): the longest wait after `attempt` failures so far (from 0)."""
    return min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempt, 16)))


def backoff_delay(attempt: int, retry_after: float | None, u: float) -> float:
    """Jittered exponential backoff: uniform over [10 %, 100 %] of the ceiling (u is a draw from [0, 1)),
    never sooner than a believable Retry-After."""
    ceiling = backoff_ceiling(attempt)
    delay = ceiling * (JITTER_FLOOR + (1.0 - JITTER_FLOOR) * min(max(u, 0.0), 1.0))
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


#: A refusal a glitch could explain (OAuthError.confirm) is permanent once seen this many times in a row.
CONFIRMATIONS = 2


def gives_up(kind: str, attempts: int, confirmations: int | None = None) -> bool:
    """Whether a failure of this kind, after this many attempts, needs a person instead of a retry.

    `confirmations`: for a refusal that needs confirming (`invalid_request`, `unauthorized_client`, a bare
    401), how many came in a row; one retry confirms it, whatever its kind.
    """
    if confirmations is not None:
        return confirmations >= CONFIRMATIONS
    if kind in PERMANENT_KINDS:
        return True
    if kind == "protocol":
        return attempts >= MAX_PROTOCOL_ATTEMPTS
    return False  # network and server failures retry, at most once a minute, while the refresh token may be good
