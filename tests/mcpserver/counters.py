"""What the test server saw: request outcomes, tool calls and distinct tokens (never the tokens)."""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = (
    "authorized",
    "rejected_missing",
    "rejected_expired",
    "rejected_invalid",
    "rejected_audience",
    "rejected_scope",
    "introspection_errors",
)


def token_fingerprint(token: str) -> str:
    """First 12 hex chars of sha256: tells tokens apart without revealing them."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass
class Counters:
    requests: int = 0
    tool_calls: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    seen: set[str] = field(default_factory=set)
    authorized_seen: set[str] = field(default_factory=set)
    last_authorized: str | None = None
    #: (arrival time, fingerprint) of the latest requests that carried a token: which token came when.
    token_log: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=20000))

    def record(self, outcome: str, fingerprint: str | None) -> None:
        self.outcomes[outcome] += 1
        if fingerprint is None:
            return
        self.token_log.append((time.time(), fingerprint))
        self.seen.add(fingerprint)
        if outcome == "authorized":
            self.authorized_seen.add(fingerprint)
            self.last_authorized = fingerprint

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            **self.outcomes,
            "tool_calls": self.tool_calls,
            "tokens_seen": len(self.seen),
            "tokens_authorized": len(self.authorized_seen),
            "last_authorized_token": self.last_authorized,
            "token_log": list(self.token_log),
        }

    def reset(self) -> None:
        self.requests = 0
        self.tool_calls = 0
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.seen.clear()
        self.authorized_seen.clear()
        self.last_authorized = None
        self.token_log.clear()
