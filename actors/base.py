"""What every actor here shares: handlers that never raise, and logging that names the server."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from thespian.actors import ActorTypeDispatcher

from actors.messages import Failure, Request

F = TypeVar("F", bound=Callable[..., None])


def guarded(handler: F) -> F:
    """A handler that raises gets its message again in Thespian; log, answer a Failure, never raise."""

    @functools.wraps(handler)
    def wrapper(self: Any, msg: Any, sender: Any) -> None:
        try:
            handler(self, msg, sender)
        except Exception as e:  # noqa: BLE001 — the last line of defence, by design
            name = getattr(self, "name", "?")
            logging.getLogger(f"mcpproxy.{type(self).__name__}").exception(
                "server=%s handler %s failed: %s", name, type(msg).__name__, type(e).__name__
            )
            if isinstance(msg, Request):
                try:
                    self.send(sender, Failure(name, "internal", f"internal error in {type(msg).__name__}"))
                except Exception:  # noqa: BLE001
                    pass

    return wrapper  # type: ignore[return-value]


def _prctl() -> Callable[..., int] | None:
    try:
        import ctypes

        return ctypes.CDLL(None).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


#: Looked up once, before the fork: each CDLL() makes a new ctypes class, ~60 kB of copied pages per actor.
_PRCTL = _prctl()


def name_process(title: str) -> None:
    """Names this actor's process (ps, top, psutil) — e.g. `mcpproxy:github` (Linux keeps 15 bytes)."""
    if _PRCTL is not None:
        _PRCTL(15, title.encode()[:15], 0, 0, 0)  # PR_SET_NAME


#: How often an idle actor's queue read wakes to look at flags a signal handler set (Thespian's
#: QUEUE_CHECK_PERIOD, 2 s). Its mail and its wakeupAfter timers end that wait at once whatever the period;
#: only a SIGTERM sent to the actor process itself waits for it (the service stops its actors by message), and
#: a TokenActor has no children to notice dying. At 2 s, 1,000 idle TokenActors woke 500 times a second:
#: 4.8 % of a core (docs/benchmarks.md, "1000 servers").
IDLE_CHECK_PERIOD = 15


def quiet_idle_wakeups() -> None:
    """Called in a childless actor's own process, after the fork: the Supervisor and the admin keep 2 s."""
    import thespian.system.transport.MultiprocessQueueTransport as mqt

    mqt.QUEUE_CHECK_PERIOD = IDLE_CHECK_PERIOD  # type: ignore[attr-defined]


class GuardedActor(ActorTypeDispatcher):
    """Wraps every receiveMsg_* handler of a subclass with `guarded`."""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for attr, fn in list(vars(cls).items()):
            if attr.startswith("receiveMsg_") and callable(fn):
                setattr(cls, attr, guarded(fn))
