"""Messages between the gateway, the Supervisor, the TokenActors, the OAuth worker and the EventHub.

One class per intent. Nothing secret travels except where the receiver must hold it: the access
token to the gateway for one pass-through request (TokenAnswer), and OAuth work to the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcpproxy.config import Config, ServerConfig

# ---- service → Supervisor ---------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    config: Config
    service_pid: int = 0


@dataclass(frozen=True)
class Started:
    hub: Any  # ActorAddress
    actors: dict[str, Any]
    store_note: str | None


@dataclass(frozen=True)
class Reload:
    config: Config


@dataclass(frozen=True)
class Reloaded:
    actors: dict[str, Any]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


@dataclass(frozen=True)
class GetActors:
    pass


@dataclass(frozen=True)
class Actors:
    actors: dict[str, Any]
    hub: Any = None


@dataclass(frozen=True)
class ClockJump:
    """The wall clock moved relative to the monotonic one (the machine slept): re-check timers."""


# ---- Supervisor → TokenActor ------------------------------------------------------------------


@dataclass(frozen=True)
class Configure:
    server: ServerConfig
    threshold: float
    redirect_uri: str
    data_dir: str
    hub: Any
    worker: Any
    reason: str = "start"


# ---- gateway → TokenActor ---------------------------------------------------------------------


@dataclass(frozen=True)
class GetStatus:
    pass


@dataclass(frozen=True)
class StartLogin:
    redirect_uri: str
    open_browser: bool = False


@dataclass(frozen=True)
class LoginStarted:
    server: str
    auth_url: str
    state: str = field(repr=False)


@dataclass(frozen=True)
class CompleteLogin:
    state: str = field(repr=False)
    code: str = field(repr=False)
    iss: str | None = None
    error: str | None = None
    error_description: str | None = None


@dataclass(frozen=True)
class LoginCompleted:
    server: str
    status: dict[str, Any]


@dataclass(frozen=True)
class Logout:
    reason: str = "user"


@dataclass(frozen=True)
class LoggedOut:
    server: str
    revoked: bool
    status: dict[str, Any]


@dataclass(frozen=True)
class RefreshNow:
    pass


@dataclass(frozen=True)
class Refreshed:
    server: str
    token_expires_at: str | None
    status: dict[str, Any]


@dataclass(frozen=True)
class GetToken:
    """The pass-through asks for the current access token (single-flight during a refresh)."""


@dataclass(frozen=True)
class TokenAnswer:
    server: str
    access_token: str = field(repr=False)
    generation: int = 0


@dataclass(frozen=True)
class TokenRejected:
    """The upstream answered 401 to this generation's token: refresh once, then answer like GetToken."""

    generation: int


@dataclass(frozen=True)
class TokenRefused:
    """The upstream answered 401 even to the token handed out after a TokenRejected: a person must log in.

    Answered with the server's status."""

    generation: int


@dataclass(frozen=True)
class ScopeRequired:
    """The upstream answered 403 insufficient_scope: the next login asks for these too. Answered with the status."""

    scopes: tuple[str, ...]


@dataclass(frozen=True)
class ProbeResult:
    generation: int
    connected: bool
    detail: str | None = None


@dataclass(frozen=True)
class Failure:
    """Every request that can fail answers with this instead of raising."""

    server: str
    kind: str
    message: str
    status: int = 400  # the HTTP status the gateway should answer with


# ---- TokenActor ↔ OAuth worker ----------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    request_id: int
    op: str  # discover | register | exchange | refresh | revoke | probe
    generation: int
    args: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class WorkDone:
    request_id: int
    op: str
    generation: int
    result: Any = field(repr=False)  # a result object, or an OAuthError
    started_at: float = 0.0


# ---- everyone → EventHub → gateway ------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    name: str
    payload: dict[str, Any]
    timestamp: float


@dataclass(frozen=True)
class RefreshMeasured:
    """One refresh attempt, for /metrics: its result kind and how late it started (seconds)."""

    server: str
    result: str
    lateness: float | None


@dataclass(frozen=True)
class StatusUpdate:
    """The newest status of one server (carried by servers.changed, also sent without an event)."""

    name: str
    status: dict[str, Any]


@dataclass(frozen=True)
class ServerRemoved:
    name: str


@dataclass(frozen=True)
class Subscribe:
    pass


@dataclass(frozen=True)
class Unsubscribe:
    pass


@dataclass(frozen=True)
class Subscribed:
    last_id: int


@dataclass(frozen=True)
class Published:
    """An event as the hub numbered it."""

    id: int
    name: str
    payload: dict[str, Any]
    timestamp: float


@dataclass(frozen=True)
class GetSnapshot:
    since_id: int | None = None


@dataclass(frozen=True)
class Snapshot:
    statuses: dict[str, dict[str, Any]]
    events: tuple[Published, ...]
    last_id: int
    metrics: dict[str, Any]
