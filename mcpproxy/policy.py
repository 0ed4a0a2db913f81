"""Refresh policy (DESIGN §2): when to refresh, how long to back off. Pure functions of plain numbers."""

from __future__ import annotations

import random

BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
#: A Retry-After longer than this is not believed (a broken server must not park us for a day).
RETRY_AFTER_CAP = 600.0
#: Malformed answers are retried a few times (a deploy in progress), then a person is asked.
MAX_PROTOCOL_ATTEMPTS = 5
#: A worker that has not answered by then is presumed lost; the refresh is retried.
WORK_DEADLINE = 45.0


def refresh_due_at(issued_at: float, expires_at: float | None, threshold: float) -> float | None:
    """Wall-clock time of the proactive refresh; None when the token has no lifetime or refresh is off."""
    if expires_at is None or threshold >= 1.0:
        return None
    return issued_at + threshold * max(0.0, expires_at - issued_at)


def backoff_delay(attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base·2^attempt)), never sooner than Retry-After.

    `attempt` counts failures so far, from 0.
    """
    rng = rng or random.Random()
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempt, 16)))
    delay = rng.uniform(0.1 * ceiling, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


def gives_up(kind: str, attempts: int) -> bool:
    """Whether a failure of this kind, after this many attempts, needs a person instead of a retry."""
    if kind in ("invalid_grant", "invalid_client", "config"):
        return True
    if kind == "protocol":
        return attempts >= MAX_PROTOCOL_ATTEMPTS
    return False  # network and server failures retry, at most once a minute, while the refresh token may be good
