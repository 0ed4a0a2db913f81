"""The stdio supervision rules against a model (docs/architecture.md "stdio servers"): random interleavings
of starts, stops, reloads, spawns that work or fail, exits and timers, with the invariants checked after
every step. No process here: the rules are pure; the test plays the shell (processes, timers, clock).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mcpproxy.stdio import supervision as sv

EXAMPLES = int(os.environ.get("MCPPROXY_MODEL_EXAMPLES", "400"))
STEPS = int(os.environ.get("MCPPROXY_MODEL_STEPS", "80"))


@dataclass
class Process:
    generation: int
    pid: int | None = None  # None until the spawn is reported


class SupervisionModel(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.now = 1_000.0
        self.child = sv.Child()
        self.procs: dict[int, Process] = {}  # spawned and not yet reported gone, by generation
        self.killed: set[int] = set()
        self.timers: list[tuple[float, int]] = []  # (due, seq)
        self.restart_times: list[float] = []  # spawns caused by a timer (restarts), since the last forgiveness
        self.next_pid = 100
        self.reports = 0
        self.feed(sv.Wanted())

    def feed(self, event: sv.Event) -> list[sv.Effect]:
        before = self.child
        snapshot = repr(before)
        new, effects = sv.step(before, event, self.now)
        assert repr(before) == snapshot, "step mutated its input"
        for effect in effects:
            if isinstance(effect, sv.Spawn):
                assert new.wanted, "spawned a process nobody wants"
                assert not self.procs, f"spawned generation {effect.generation} while {sorted(self.procs)} still run"
                self.procs[effect.generation] = Process(effect.generation)
                if isinstance(event, sv.TimerFired):
                    self.restart_times.append(self.now)
            elif isinstance(effect, sv.Kill):
                assert effect.generation in self.procs, "killed a process that is not running"
                self.killed.add(effect.generation)
            elif isinstance(effect, sv.SetTimer):
                assert effect.delay >= sv.BACKOFF_FIRST, "a restart timer shorter than the first backoff"
                assert effect.delay <= sv.BACKOFF_CAP
                self.timers.append((self.now + effect.delay, effect.seq))
            elif isinstance(effect, sv.Report):
                self.reports += 1
        if isinstance(event, sv.Exited | sv.SpawnFailed) and event.generation == before.generation \
                and before.phase in ("starting", "running"):
            # An unexpected exit: restarted after a backoff, unless 5 restarts happened within the minute —
            # then an error instead of a loop.
            recent = [t for t in self.restart_times if self.now - t < sv.WINDOW]
            if len(recent) >= sv.RESTARTS_PER_MINUTE:
                assert new.phase == "failed", f"exit after {len(recent)} restarts within a minute: {new.phase}"
            else:
                assert new.phase == "waiting", f"an exit after {len(recent)} restarts left it {new.phase}"
        if isinstance(event, sv.Changed) and before.wanted \
                or isinstance(event, sv.Wanted) and any(isinstance(e, sv.Spawn) for e in effects):
            # A reload forgives the earlier restarts at once — also when the process must stop before it starts
            # again — and so does a start by hand.
            self.restart_times = []
        self.child = new
        return effects

    # ---- the world ---------------------------------------------------------------------------------

    @rule()
    def service_stops(self) -> None:
        self.feed(sv.Unwanted())

    @rule()
    def service_starts(self) -> None:
        self.feed(sv.Wanted())

    @rule()
    def config_changed(self) -> None:
        self.feed(sv.Changed())

    @precondition(lambda self: any(p.pid is None for p in self.procs.values()))
    @rule(data=st.data(), works=st.booleans())
    def spawn_reported(self, data: st.DataObject, works: bool) -> None:
        pending = sorted(g for g, p in self.procs.items() if p.pid is None)
        gen = data.draw(st.sampled_from(pending))
        if works:
            self.next_pid += 1
            self.procs[gen].pid = self.next_pid
            self.feed(sv.Spawned(gen, self.next_pid))
        else:
            del self.procs[gen]
            self.feed(sv.SpawnFailed(gen, "no such file"))

    @precondition(lambda self: any(p.pid is None for p in self.procs.values()))
    @rule()
    def process_crashes_at_start(self) -> None:
        # A broken command: it starts and exits at once, again and again (with next_timer_fires, a crash loop).
        gen = min(g for g, p in self.procs.items() if p.pid is None)
        self.next_pid += 1
        self.procs[gen].pid = self.next_pid
        self.feed(sv.Spawned(gen, self.next_pid))
        if gen in self.procs:
            del self.procs[gen]
            self.feed(sv.Exited(gen, "exited with status 3"))

    @precondition(lambda self: any(p.pid is not None for p in self.procs.values()))
    @rule(data=st.data())
    def process_exits(self, data: st.DataObject) -> None:
        running = sorted(g for g, p in self.procs.items() if p.pid is not None)
        gen = data.draw(st.sampled_from(running))
        del self.procs[gen]
        self.feed(sv.Exited(gen, "exited with status 1"))

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.0, 5.0, 16.0, 31.0, 61.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        due = sorted(t for t in self.timers if t[0] <= self.now)
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, seq in due:
            self.feed(sv.TimerFired(seq))

    @precondition(lambda self: bool(self.timers))
    @rule()
    def next_timer_fires(self) -> None:
        # Time jumps to the next due timer: crash loops (exit, backoff, restart, exit…) are reached quickly.
        due = min(self.timers)
        self.timers.remove(due)
        self.now = max(self.now, due[0])
        self.feed(sv.TimerFired(due[1]))

    @precondition(lambda self: bool(self.timers))
    @rule()
    def stale_timer_fires_again(self) -> None:
        # A timer from the past (Thespian-style, no cancel) must change nothing once superseded.
        seq = self.child.timer_seq - 1
        before = self.child
        effects = self.feed(sv.TimerFired(seq))
        assert effects == [] and self.child == before

    # ---- invariants ---------------------------------------------------------------------------------

    @invariant()
    def one_process_at_most(self) -> None:
        assert len(self.procs) <= 1, f"processes of generations {sorted(self.procs)} at once"

    @invariant()
    def phase_matches_processes(self) -> None:
        c = self.child
        assert c.phase in sv.PHASES
        if c.phase in ("stopped", "waiting", "failed"):
            assert not self.procs, f"{c.phase} while generation {sorted(self.procs)} runs"
        if c.phase in ("starting", "running", "stopping"):
            assert c.generation in self.procs
        assert (c.pid is not None) == (c.phase == "running" or (c.phase == "stopping" and c.pid is not None))

    @invariant()
    def unwanted_never_runs_on(self) -> None:
        if not self.child.wanted:
            assert self.child.phase in ("stopped", "stopping")
            assert not self.child.respawn

    @invariant()
    def at_most_five_restarts_a_minute(self) -> None:
        times = self.restart_times
        for i, t in enumerate(times):
            in_window = [u for u in times[i:] if u - t < sv.WINDOW]
            assert len(in_window) <= sv.RESTARTS_PER_MINUTE, f"{len(in_window)} restarts within a minute"

    @invariant()
    def failed_is_quiet(self) -> None:
        if self.child.phase == "failed":
            assert self.child.last_error and "within a minute" in self.child.last_error
            assert all(seq != self.child.timer_seq for _, seq in self.timers), "failed, yet a restart is pending"
            assert not self.procs

    @invariant()
    def waiting_has_its_timer(self) -> None:
        if self.child.phase == "waiting":
            assert any(seq == self.child.timer_seq for _, seq in self.timers), "waiting with no timer: stuck"


SupervisionModel.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])
TestSupervisionModel = SupervisionModel.TestCase


def test_a_crash_loop_stops_after_five_restarts_in_a_minute() -> None:
    child, now, spawns = sv.Child(), 0.0, 0
    child, effects = sv.step(child, sv.Wanted(), now)
    for _ in range(20):
        gen = child.generation
        child, effects = sv.step(child, sv.Spawned(gen, 10 + gen), now)
        child, effects = sv.step(child, sv.Exited(gen, "crashed"), now + 0.1)
        timers = [e for e in effects if isinstance(e, sv.SetTimer)]
        if not timers:
            break
        now += 0.1 + timers[0].delay
        child, effects = sv.step(child, sv.TimerFired(timers[0].seq), now)
        spawns += sum(isinstance(e, sv.Spawn) for e in effects)
    assert spawns == sv.RESTARTS_PER_MINUTE
    assert child.phase == "failed" and child.restarts == sv.RESTARTS_PER_MINUTE
    assert "5 times within a minute" in (child.last_error or "")
    # A reload that changes it starts it again, forgiven.
    child, effects = sv.step(child, sv.Changed(), now)
    assert child.phase == "starting" and any(isinstance(e, sv.Spawn) for e in effects)


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    assert [sv.backoff(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
