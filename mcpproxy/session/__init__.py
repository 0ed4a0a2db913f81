"""The session core (docs/architecture.md "Session core"): one OAuth server's rules as a pure transition.

    step(session, event, now) -> (session, effects)

`messages` holds the vocabulary (answers, events, effects); `core` the state and the rules.
"""

from mcpproxy.session import messages
from mcpproxy.session.core import (
    LOGIN_TTL,
    MAX_PENDING_LOGINS,
    Pending,
    PendingLogin,
    Session,
    carrying_tokens,
    new_session,
    restored,
    step,
)
from mcpproxy.session.messages import *  # noqa: F403 — the vocabulary, listed once in messages.__all__

__all__ = [
    *messages.__all__,
    "LOGIN_TTL", "MAX_PENDING_LOGINS", "Pending", "PendingLogin", "Session", "carrying_tokens", "new_session", "restored", "step",
]
