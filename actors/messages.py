"""Messages between the gateway, the Supervisor, the TokenActors, the OAuth worker and the EventHub.

One class per intent. Nothing secret travels except where the receiver must hold it: the access
token to the gateway for one pass-through request (TokenAnswer), and OAuth work to the worker.
A message whose sender waits for an answer derives from `Request`: a failing handler still answers it.
The answers a TokenActor gives are the session core's (mcpproxy.session), re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcpproxy.config import Config, ServerConfig
from mcpproxy.sealing import DataKey
from mcpproxy.session import (
    Failure,
    LoggedOut,
    LoginCompleted,
    LoginStarted,
    Refreshed,
    TokenAnswer,
)
from mcpproxy.work import Op

__all__ = ["Failure", "LoggedOut", "LoginCompleted", "LoginStarted", "Refreshed", "TokenAnswer"]


class Request:
    """Marker: the sender waits for an answer (a Failure when the handler fails)."""


# ---- service → Supervisor ---------------------------------------------------------------------


@dataclass(frozen=True)
class Start(Request):
    config: Config
    service_pid: int = 0
    data_key: DataKey | None = None  # seals the store (mcpproxy/sealing.py); held in memory only


@dataclass(frozen=True)
class Started:
    hub: Any  # ActorAddress
    actors: dict[str, Any]
    store_note: str | None
    actors_version: int = 0  # see Actors


@dataclass(frozen=True)
class Reload(Request):
    config: Config


@dataclass(frozen=True)
class Reloaded:
    actors: dict[str, Any]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    actors_version: int = 0  # see Actors


@dataclass(frozen=True)
class Drain(Request):
    """service → Supervisor → every TokenActor, at a clean stop: start no new work, and answer once no work
    whose answer carries tokens (a refresh, a code exchange) is in flight — or after `timeout` seconds."""

    timeout: float


@dataclass(frozen=True)
class Drained:
    """A TokenActor has nothing in flight that carries tokens; from the Supervisor, `waiting` names the
    servers still waiting when its deadline passed (their answers may be lost)."""

    waiting: tuple[str, ...] = ()


@dataclass(frozen=True)
class GetActors(Request):
    pass


@dataclass(frozen=True)
class Actors:
    """The TokenActors' addresses by server; `actors_version` grows with each change, so of two answers the
    gateway keeps the newer whichever arrives last."""

    actors: dict[str, Any]
    hub: Any = None
    actors_version: int = 0


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
    data_key: DataKey | None = None


# ---- gateway → TokenActor ---------------------------------------------------------------------


@dataclass(frozen=True)
class GetStatus(Request):
    pass


@dataclass(frozen=True)
class StartLogin(Request):
    redirect_uri: str
    open_browser: bool = False


@dataclass(frozen=True)
class CompleteLogin(Request):
    state: str = field(repr=False)
    code: str = field(repr=False)
    iss: str | None = None
    error: str | None = None
    error_description: str | None = None


@dataclass(frozen=True)
class Logout(Request):
    reason: str = "user"


@dataclass(frozen=True)
class RefreshNow(Request):
    pass


@dataclass(frozen=True)
class GetToken(Request):
    """The pass-through asks for the current access token (single-flight during a refresh)."""


@dataclass(frozen=True)
class TokenRejected(Request):
    """The upstream answered 401 to this generation's token: refresh once, then answer like GetToken."""

    generation: int


@dataclass(frozen=True)
class TokenRefused(Request):
    """The upstream answered 401 even to the token handed out after a TokenRejected: a person must log in.

    Answered with the server's status."""

    generation: int


@dataclass(frozen=True)
class ScopeRequired(Request):
    """The upstream answered 403 insufficient_scope: the next login asks for these too. Answered with the status."""

    scopes: tuple[str, ...]


# ---- TokenActor ↔ OAuth worker ----------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    request_id: int
    generation: int
    op: Op = field(repr=False)


@dataclass(frozen=True)
class WorkDone:
    request_id: int
    generation: int
    result: Any = field(repr=False)  # a mcpproxy.work.Result, or the OAuthError the op raised
    started_at: float = 0.0


# ---- everyone → EventHub → gateway ------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    name: str
    payload: dict[str, Any]
    timestamp: float


@dataclass(frozen=True)
class LogLine:
    """A TokenActor's log line, written by the hub: logging in each TokenActor's own process would copy
    the logging machinery's pages into every one of them (docs/architecture.md "Processes")."""

    logger: str
    level: int
    message: str


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
class UpstreamStatus:
    """gateway → EventHub: what the gateway knows of a server's MCP side (its tools, a stdio server's process),
    merged into that server's status object from now on and announced as `servers.changed` with `reason`."""

    name: str
    fields: dict[str, Any]
    reason: str
    timestamp: float


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
class GetSnapshot(Request):
    since_id: int | None = None


@dataclass(frozen=True)
class Snapshot:
    statuses: dict[str, dict[str, Any]]
    events: tuple[Published, ...]
    last_id: int
    metrics: dict[str, Any]
