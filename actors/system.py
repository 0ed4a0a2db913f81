"""Creating the actor system (docs/architecture.md "Processes") and starting the Supervisor."""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import ActorSystem

from actors.feeders import use_idle_feeders
from actors.messages import Start, Started
from actors.prefork import pin_malloc, share_heap
from mcpproxy.config import Config
from mcpproxy.sealing import DataKey

#: Thespian's queue base gives each actor a 10-deep queue and the admin a 40-deep one, with blocking
#: puts: a parent routing for 100+ children deadlocks (measured at 100). Deeper queues cost nothing idle.
ACTOR_QUEUE_DEPTH = 4096
ADMIN_QUEUE_DEPTH = 8192
#: The only base: no sockets. multiprocTCPBase listens on 0.0.0.0 and trades pickles (docs/security.md).
SYSTEM_BASE = "multiprocQueueBase"


class ActorSystemError(RuntimeError):
    pass


def become_subreaper() -> None:
    """Thespian's admin daemonizes (setsid + double fork); as a subreaper we stay every actor's ancestor,
    so the service can account for and stop its processes by PID (Linux only; elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _envelope_identity(envelope: Any) -> str:
    return f"ReceiveEnvelope(from: {envelope.sender}, {type(envelope.message).__name__})"


def _intent_identity(intent: Any) -> str:
    return f"TransmitIntent({intent.targetAddr}, {type(intent.message).__name__})"


def tune_thespian() -> None:
    import thespian.system.transport as transport
    import thespian.system.transport.MultiprocessQueueTransport as mqt

    mqt.MAX_ACTOR_QUEUESIZE = ACTOR_QUEUE_DEPTH  # type: ignore[attr-defined]
    mqt.MAX_ADMIN_QUEUESIZE = ADMIN_QUEUE_DEPTH  # type: ignore[attr-defined]
    # Thespian describes every message it sends and receives — str() of the message, its address, its
    # timers — for a DEBUG line its log level then drops: a repr of every status event in every actor, and
    # large temporary strings a forked actor writes into pages it shared. It also puts a message's text in
    # the ERROR line of an undeliverable one, and a message may carry a token. Type and address only.
    transport.ReceiveEnvelope.identify = _envelope_identity  # type: ignore[method-assign]
    transport.TransmitIntent.identify = _intent_identity  # type: ignore[method-assign]
    use_idle_feeders()  # a queue's feeder thread ends when idle: no thread per child in a parent (actors/feeders.py)


def start_actor_system(config: Config, log_defs: dict[str, Any] | None) -> ActorSystem:
    """Call before any socket or thread exists: every actor process is forked from here."""
    tune_thespian()
    become_subreaper()
    pin_malloc()
    import actors.supervisor  # noqa: F401 — imported before the freeze, so every actor shares these pages
    from actors.warmup import rehearse

    rehearse()  # the login path's one-time writes, done here once instead of in every TokenActor
    share_heap()  # children share the parent's pages instead of copying them (~5 MB PSS each, not ~18)
    # No logging config: Python's last-resort handler (warnings and errors to stderr) in the actors too.
    # Thespian's own "no logging" (False) breaks on the first actor a child creates (4.0.1 calls .get on it).
    return ActorSystem(SYSTEM_BASE, {}, logDefs=log_defs or {"version": 1, "disable_existing_loggers": False})


def start_supervisor(asys: ActorSystem, config: Config, timeout: float = 60.0,
                     data_key: DataKey | None = None) -> tuple[Any, Started]:
    from actors.supervisor import Supervisor

    sup = asys.createActor(Supervisor)
    answer = asys.ask(sup, Start(config, os.getpid(), data_key), timeout)
    if not isinstance(answer, Started):
        raise ActorSystemError(f"the supervisor did not start: {answer!r}")
    return sup, answer
