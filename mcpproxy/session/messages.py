"""The session core's vocabulary (docs/architecture.md "Session core"): what an asker gets back, the
events the shell feeds in, and the effects it carries out. Frozen values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcpproxy.config import ServerConfig
from mcpproxy.oauth.authorize import AuthorizationRequest
from mcpproxy.record import TokenRecord
from mcpproxy.work import Op

# ---- answers (what an asker gets back) -----------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Every request that can fail answers with this. `kind` says what failed (an OAuthError kind, or
    login_required, unknown_login, cancelled, internal); `needs_login` whether only a person can fix it.
    The gateway and the CLI turn these into status codes and wording."""

    server: str
    kind: str
    message: str
    needs_login: bool = False


@dataclass(frozen=True)
class TokenAnswer:
    """The current access token, its generation, and until when an asker may keep it (wall clock): the token's
    next refresh point, or shortly before its expiry when it has none; None when neither is known. The gateway's
    lease ends there even if no announcement reaches it (docs/architecture.md "Token lease")."""

    server: str
    access_token: str = field(repr=False)
    generation: int = 0
    refresh_at: float | None = None


@dataclass(frozen=True)
class LoginStarted:
    """The TokenActor checks the request; the URL is written where it is read (oauth/authorize.py)."""

    server: str
    request: AuthorizationRequest
    state: str = field(repr=False)

    @property
    def auth_url(self) -> str:
        return self.request.url()


@dataclass(frozen=True)
class LoginCompleted:
    server: str
    status: dict[str, Any]


@dataclass(frozen=True)
class LoggedOut:
    server: str
    revoked: bool
    status: dict[str, Any]


@dataclass(frozen=True)
class Refreshed:
    server: str
    token_expires_at: str | None
    status: dict[str, Any]


# ---- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """The first event: what the store held (or why it could not be read)."""

    record: TokenRecord | None
    problem: str | None = None
    unreadable: bool = False  # this record alone is bad: it is replaced by an empty one
    reason: str = "start"
    spread: float = 0.0  # a draw from [0, 1): how far into policy.OVERDUE_SPREAD an overdue refresh waits


@dataclass(frozen=True)
class Configured:
    server: ServerConfig
    threshold: float
    redirect_uri: str
    reason: str = "config_changed"


@dataclass(frozen=True)
class Tick:
    seq: int


@dataclass(frozen=True)
class Deadline:
    request_id: int
    jitter: float = 0.5


@dataclass(frozen=True)
class ClockJumped:
    """The machine slept: timers are checked against the wall clock again."""

    spread: float = 0.0  # as Loaded's: an overdue refresh waits this share of policy.OVERDUE_SPREAD


@dataclass(frozen=True)
class StatusWanted:
    reply_to: Any


@dataclass(frozen=True)
class LoginWanted:
    reply_to: Any
    state: str = field(repr=False)  # drawn by the shell: the core has no randomness
    verifier: str = field(repr=False)


@dataclass(frozen=True)
class ClientLoaded:
    """Answer to a LoadClient effect: the stored registration for that issuer, if any."""

    issuer: str
    client: dict[str, Any] | None = field(repr=False)


@dataclass(frozen=True)
class CodeReturned:
    reply_to: Any
    state: str = field(repr=False)
    code: str = field(repr=False)
    iss: str | None = None
    error: str | None = None
    error_description: str | None = None


@dataclass(frozen=True)
class WorkFinished:
    request_id: int
    generation: int
    result: Any = field(repr=False)  # a work.Result, or the OAuthError the work raised
    started_at: float = 0.0
    jitter: float = 0.5


@dataclass(frozen=True)
class WorkerLost:
    jitter: float = 0.5


@dataclass(frozen=True)
class LogoutWanted:
    reply_to: Any
    reason: str = "user"


@dataclass(frozen=True)
class RefreshWanted:
    reply_to: Any


@dataclass(frozen=True)
class TokenWanted:
    reply_to: Any


@dataclass(frozen=True)
class TokenRejected:
    """The upstream answered 401 to this generation's token: refresh once, then answer like TokenWanted."""

    reply_to: Any
    generation: int


@dataclass(frozen=True)
class TokenRefused:
    """The upstream answered 401 even to a token handed out after a TokenRejected: a person must log in."""

    reply_to: Any
    generation: int


@dataclass(frozen=True)
class ScopeRequired:
    reply_to: Any
    scopes: tuple[str, ...]


Event = (Loaded | Configured | Tick | Deadline | ClockJumped | StatusWanted | LoginWanted | ClientLoaded
         | CodeReturned | WorkFinished | WorkerLost | LogoutWanted | RefreshWanted | TokenWanted | TokenRejected
         | TokenRefused | ScopeRequired)


# ---- effects ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Persist:
    record: TokenRecord


@dataclass(frozen=True)
class SendWork:
    request_id: int
    generation: int
    op: Op


@dataclass(frozen=True)
class Emit:
    name: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    to: Any
    answer: Any


@dataclass(frozen=True)
class SetTimer:
    delay: float
    payload: Tick | Deadline


@dataclass(frozen=True)
class LoadClient:
    issuer: str


@dataclass(frozen=True)
class SaveClient:
    issuer: str
    client: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class DropClient:
    """Forget the dynamic registration kept for this issuer: the server no longer knows it."""

    issuer: str


@dataclass(frozen=True)
class Measured:
    """One refresh attempt, for /metrics: its result kind and how late it started (seconds)."""

    result: str
    lateness: float | None


@dataclass(frozen=True)
class Log:
    level: str  # debug | info | warning | error
    message: str


Effect = Persist | SendWork | Emit | Reply | SetTimer | LoadClient | SaveClient | DropClient | Measured | Log

__all__ = [
    "ClientLoaded",
    "ClockJumped",
    "CodeReturned",
    "Configured",
    "Deadline",
    "DropClient",
    "Effect",
    "Emit",
    "Event",
    "Failure",
    "LoadClient",
    "Loaded",
    "Log",
    "LoggedOut",
    "LoginCompleted",
    "LoginStarted",
    "LoginWanted",
    "LogoutWanted",
    "Measured",
    "Persist",
    "RefreshWanted",
    "Refreshed",
    "Reply",
    "SaveClient",
    "ScopeRequired",
    "SendWork",
    "SetTimer",
    "StatusWanted",
    "Tick",
    "TokenAnswer",
    "TokenRefused",
    "TokenRejected",
    "TokenWanted",
    "WorkFinished",
    "WorkerLost",
]
