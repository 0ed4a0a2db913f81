"""Actor queues whose feeder thread ends when idle (actors/feeders.py): nothing lost, nothing reordered.

The queues are real multiprocessing queues over a real pipe; a forked reader takes what a parent sends, as
a Thespian child does.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import util

import psutil
import pytest

from actors import feeders
from actors.feeders import IDLE_FEEDER_CONTEXT, IdleFeederQueue
from tests.harness import ROOT, ServiceHandle, wait_until


def feeder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "QueueFeederThread" and t.is_alive()]


def drain(q: IdleFeederQueue, n: int) -> list[object]:
    return [q.get(timeout=10) for _ in range(n)]


@pytest.fixture
def short_idle(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(feeders, "FEEDER_IDLE", 0.02)
    return 0.02


def test_a_feeder_ends_when_idle_and_the_next_put_starts_one(short_idle: float) -> None:
    q = IDLE_FEEDER_CONTEXT.Queue()
    try:
        q.put("first")
        first = q._thread  # type: ignore[attr-defined]
        assert first is not None and first in feeder_threads()
        assert q.get(timeout=10) == "first"
        wait_until(lambda: q._thread is None, 10, "the idle feeder to end")  # type: ignore[attr-defined]
        first.join(10)
        assert first not in feeder_threads()
        q.put("second")
        assert q._thread is not None and q._thread is not first  # type: ignore[attr-defined]
        assert q.get(timeout=10) == "second"
    finally:
        q.close()
        q.join_thread()


def test_bursts_around_the_idle_time_lose_and_reorder_nothing(short_idle: float) -> None:
    """Four producers, bursts separated by pauses shorter and longer than FEEDER_IDLE, so feeders end and
    start while others put: every message arrives once, each producer's in its order."""
    q = IDLE_FEEDER_CONTEXT.Queue()
    rng = random.Random(13)
    plans = [[rng.choice((0.0, 0.0, 0.005, 0.019, 0.021, 0.04)) for _ in range(150)] for _ in range(4)]

    def produce(k: int) -> None:
        for i, pause in enumerate(plans[k]):
            q.put((k, i))
            if pause:
                time.sleep(pause)

    workers = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    try:
        for w in workers:
            w.start()
        got = drain(q, 600)
        for w in workers:
            w.join(10)
        assert sorted(got) == [(k, i) for k in range(4) for i in range(150)]
        for k in range(4):
            assert [i for kk, i in got if kk == k] == list(range(150))
    finally:
        q.close()
        q.join_thread()


def test_a_forked_child_receives_everything_in_order() -> None:
    """Run in a fresh interpreter: forking the test process, which has threads, could deadlock the child."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import time
        from actors import feeders
        from actors.feeders import IDLE_FEEDER_CONTEXT as ctx
        feeders.FEEDER_IDLE = 0.02

        def child(inbox, outbox):
            outbox.put([inbox.get(timeout=10) for _ in range(60)])

        q, back = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=child, args=(q, back))
        proc.start()
        ended = 0
        for i in range(60):
            q.put(i)
            if i % 20 == 19:  # the feeder ends between bursts
                deadline = time.monotonic() + 10
                while q._thread is not None and time.monotonic() < deadline:
                    time.sleep(0.01)
                ended += q._thread is None
        print(back.get(timeout=20) == list(range(60)), ended)
        proc.join(10)
        print(proc.exitcode)
    """)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "3", "0"], done.stdout


def test_close_after_the_feeder_ended_still_flushes_and_closes_the_pipe(short_idle: float) -> None:
    q = IDLE_FEEDER_CONTEXT.Queue()
    q.put("kept")
    wait_until(lambda: q._thread is None, 10, "the idle feeder to end")  # type: ignore[attr-defined]
    q.close()
    q.join_thread()
    assert q._writer.closed  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        q.put("after close")


def test_restarts_leave_no_finalizers_behind(short_idle: float) -> None:
    q = IDLE_FEEDER_CONTEXT.Queue()
    try:
        q.put(0)
        q.get(timeout=10)
        before = len(util._finalizer_registry)  # type: ignore[attr-defined]
        for i in range(1, 21):
            wait_until(lambda: q._thread is None, 10, "the idle feeder to end")  # type: ignore[attr-defined]
            q.put(i)
            assert q.get(timeout=10) == i
        assert len(util._finalizer_registry) == before  # type: ignore[attr-defined]
    finally:
        q.close()
        q.join_thread()


def test_the_supervisor_keeps_no_thread_per_child(service_factory, mcp_server) -> None:  # type: ignore[no-untyped-def]
    """Six servers: after start-up the Supervisor, which puts into every child's queue, holds no feeder
    thread per child (it held one each, for good, before)."""
    names = [f"t{i}" for i in range(6)]
    svc: ServiceHandle = service_factory([{"name": n, "url": mcp_server.url, "oauth": {}} for n in names])
    sup = next(psutil.Process(p) for p in svc.pids() if psutil.Process(p).name() == "mcpproxy-sup")
    wait_until(lambda: sup.num_threads() <= 2, 15, "the Supervisor's feeders to end")
