"""The rules of one supervised stdio child (docs/architecture.md "stdio servers"): one pure transition.

    step(child, event, now) -> (child, effects)

No process, no clock, no timer inside: the shell (mcpproxy/gateway/upstreams.py) passes the time, spawns
and kills, and feeds back what happened. Every process start carries a generation; an event about an
older generation is stale and changes nothing. Timers carry a sequence number for the same reason.

- Wanted (the service started, or the server is enabled) spawns a process unless one is up.
- A process that exits (or cannot be spawned) while wanted is restarted after a backoff (1 s, doubling,
  capped at BACKOFF_CAP) — at most RESTARTS_PER_MINUTE restarts within any minute; one more exit in that
  minute leaves the child `failed` with an error and no timer, instead of a loop.
- Changed (a config reload changed the server) restarts it at once and forgives past failures.
- Unwanted (the service stops, the server is removed or disabled) kills the process; nothing restarts.
- Only one process per child at a time: a restart waits for the old process's exit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

RESTARTS_PER_MINUTE = 5
WINDOW = 60.0
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
#: A process that ran this long before it exited was healthy: its exit starts the backoff afresh.
STABLE_AFTER = 30.0

PHASES = ("stopped", "starting", "running", "waiting", "stopping", "failed")


# ---- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """Run it: the service started, or a reload enabled it."""


@dataclass(frozen=True)
class Unwanted:
    """Stop it and keep it stopped: the service stops, or a reload removed or disabled it."""


@dataclass(frozen=True)
class Changed:
    """A reload changed its command, args, env or working_dir: restart it now, failures forgiven."""


@dataclass(frozen=True)
class Spawned:
    generation: int
    pid: int


@dataclass(frozen=True)
class SpawnFailed:
    generation: int
    message: str


@dataclass(frozen=True)
class Exited:
    generation: int
    message: str


@dataclass(frozen=True)
class TimerFired:
    seq: int


Event = Wanted | Unwanted | Changed | Spawned | SpawnFailed | Exited | TimerFired


# ---- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    generation: int


@dataclass(frozen=True)
class Kill:
    generation: int


@dataclass(frozen=True)
class SetTimer:
    delay: float
    seq: int


@dataclass(frozen=True)
class Report:
    """The status changed: tell the hub (servers.changed) with this reason."""

    reason: str


Effect = Spawn | Kill | SetTimer | Report


# ---- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    phase: str = "stopped"
    wanted: bool = False
    generation: int = 0  # of the newest process asked for
    pid: int | None = None
    restarts: int = 0  # restarts after an exit, since the service started
    recent: tuple[float, ...] = ()  # when each restart within the last WINDOW happened
    streak: int = 0  # exits in a row without a stable run: the backoff exponent
    started_at: float | None = None
    last_error: str | None = None
    timer_seq: int = 0
    respawn: bool = False  # stopping only to start again (Changed)

    @property
    def alive(self) -> bool:
        """A process of this child may be running (asked for and not yet reported gone)."""
        return self.phase in ("starting", "running", "stopping")


def backoff(streak: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, streak - 1))


def step(child: Child, event: Event, now: float) -> tuple[Child, list[Effect]]:
    if isinstance(event, Wanted):
        if child.wanted and child.phase != "stopped":
            return child, []
        child = replace(child, wanted=True)
        if child.phase == "stopping":
            return replace(child, respawn=True), []
        if child.phase in ("stopped", "failed", "waiting"):
            return _spawn(replace(child, recent=(), streak=0), "started")
        return child, []

    if isinstance(event, Unwanted):
        child = replace(child, wanted=False, respawn=False)
        if child.phase in ("starting", "running"):
            return replace(child, phase="stopping"), [Kill(child.generation), Report("stopping")]
        if child.phase in ("waiting", "failed"):
            # A pending restart timer becomes stale: its sequence number is passed.
            return replace(child, phase="stopped", timer_seq=child.timer_seq + 1), [Report("stopped")]
        return child, []

    if isinstance(event, Changed):
        if not child.wanted:
            return child, []
        child = replace(child, recent=(), streak=0, last_error=None)
        if child.phase in ("starting", "running"):
            return replace(child, phase="stopping", respawn=True), [Kill(child.generation), Report("restarting")]
        if child.phase == "stopping":
            return replace(child, respawn=True), []
        return _spawn(replace(child, timer_seq=child.timer_seq + 1), "config_changed")

    if isinstance(event, Spawned):
        if event.generation != child.generation or child.phase != "starting":
            return child, []
        return replace(child, phase="running", pid=event.pid, started_at=now), [Report("started")]

    if isinstance(event, SpawnFailed | Exited):
        if event.generation != child.generation or not child.alive:
            return child, []
        ran = now - child.started_at if child.started_at is not None and child.pid is not None else 0.0
        child = replace(child, pid=None, started_at=None)
        if child.phase == "stopping":
            if child.respawn and child.wanted:
                return _spawn(replace(child, respawn=False), "restarted")
            return replace(child, phase="stopped", respawn=False), [Report("stopped")]
        streak = 1 if ran >= STABLE_AFTER else child.streak + 1
        recent = tuple(t for t in child.recent if now - t < WINDOW)
        child = replace(child, last_error=event.message, streak=streak, recent=recent)
        if len(recent) >= RESTARTS_PER_MINUTE:
            message = (f"{event.message}; it was restarted {len(recent)} times within a minute and is left "
                       "stopped: fix it and reload the config")
            return replace(child, phase="failed", last_error=message), [Report("failed")]
        seq = child.timer_seq + 1
        delay = backoff(streak)
        return replace(child, phase="waiting", timer_seq=seq), [SetTimer(delay, seq), Report("exited")]

    if isinstance(event, TimerFired):
        if event.seq != child.timer_seq or child.phase != "waiting" or not child.wanted:
            return child, []
        recent = (*(t for t in child.recent if now - t < WINDOW), now)
        return _spawn(replace(child, restarts=child.restarts + 1, recent=recent), "restarted")

    raise TypeError(f"not a supervision event: {type(event).__name__}")


def _spawn(child: Child, reason: str) -> tuple[Child, list[Effect]]:
    gen = child.generation + 1
    return replace(child, phase="starting", generation=gen, pid=None, started_at=None), [Spawn(gen), Report(reason)]


def status_fields(child: Child) -> dict[str, object]:
    """The supervision part of a stdio server's status object."""
    return {
        "process": child.phase,
        "pid": child.pid,
        "restarts": child.restarts,
    }
