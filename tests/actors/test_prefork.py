"""Before a fork (actors/prefork.py): the parent's heap made immortal where CPython allows it, else left alone.

Each check runs in a fresh interpreter: making the pytest process's heap immortal would keep every
object of the test session alive for good.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.harness import ROOT

SUPPORTED = sys.implementation.name == "cpython" and sys.version_info[:2] in ((3, 12), (3, 13))


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_share_heap_makes_what_the_parent_holds_immortal_and_freezes_it() -> None:
    out = run("""
        import gc, sys
        from actors.prefork import share_heap
        held = {"config": ["a list the parent made", 10 ** 30]}  # a container, and what only it reaches
        inner = held["config"]
        share_heap()
        counts = (sys.getrefcount(held), sys.getrefcount(inner), sys.getrefcount(inner[1]))
        more = [held, inner, inner[1]] * 50  # 50 more references each
        same = counts == (sys.getrefcount(held), sys.getrefcount(inner), sys.getrefcount(inner[1]))
        del more
        new = ["made after"]
        before = sys.getrefcount(new)
        also = [new]
        print(same, sys.getrefcount(new) == before + 1, gc.get_freeze_count() > 0)
    """)
    # Where immortality exists, a count never moves (no page written); elsewhere counts move as always.
    assert out == f"{SUPPORTED} True True"


def test_the_immortal_probe_refuses_an_interpreter_it_does_not_know() -> None:
    out = run("""
        import sys
        from actors import prefork
        print(prefork._immortal_layout())
        sys.version_info = (3, 11, 0, "final", 0)  # as an older interpreter reports itself
        print(prefork._immortal_layout(), prefork.immortalize())
    """)
    assert out.splitlines() == [str(SUPPORTED), "False 0"]


def test_a_service_started_with_an_immortal_heap_still_collects_what_it_makes_later() -> None:
    out = run("""
        import gc, weakref
        from actors.prefork import share_heap
        share_heap()
        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the fork point: the collector must still free it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        print(gone() is None)
    """)
    assert out == "True"


def test_a_child_is_born_without_re_making_its_siblings_queues_and_its_own_queue_works() -> None:
    out = run("""
        import multiprocessing as mp
        import multiprocessing.util as util
        from actors.prefork import after_fork_baseline, forget_children_queues

        ctx = mp.get_context("fork")
        baseline = after_fork_baseline()
        siblings = [ctx.Queue() for _ in range(3)]  # the queues of children forked earlier
        for q in siblings:
            q.put("to a sibling")
            q.get(timeout=5)
        forgotten = forget_children_queues(baseline)
        own = ctx.Queue()  # made for the next child (Thespian's prepEndpoint), after the forgetting
        own_entries = len(util._afterfork_registry) - len(baseline)

        def child(q):
            q.put(("born", len(util._afterfork_registry)))

        p = ctx.Process(target=child, args=(own,))
        p.start()
        said, entries = own.get(timeout=10)
        p.join(10)
        siblings[0].put("the parent still uses them")
        print(forgotten >= 3, said, entries == len(baseline) + own_entries, siblings[0].get(timeout=5))
    """)
    assert out == "True born True the parent still uses them", out


def test_after_fill_pools_new_small_objects_never_land_in_the_parents_holes() -> None:
    out = run("""
        from actors.prefork import fill_pools, pool_holes
        made = [bytes(31) for _ in range(4000)]  # 64-byte blocks
        freed = {id(b) for b in made[::2]}
        del made[::2]  # half of them freed: holes all through those pools
        filled = fill_pools(pool_holes())
        later = [bytes(31) for _ in range(500)]
        print(filled >= len(freed), sum(id(b) in freed for b in later))
    """)
    assert out == "True 0"


def test_after_drain_malloc_bins_new_blocks_never_land_in_the_parents_free_chunks() -> None:
    out = run("""
        import ctypes
        from actors.prefork import DRAIN_MAX, _free_chunks, drain_malloc_bins
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        blocks = [libc.malloc(600) for _ in range(400)]
        freed = set(blocks[::2])
        for p in blocks[::2]:
            libc.free(ctypes.c_void_p(p))  # 200 free chunks of 608 bytes between live ones: holes
        drain_malloc_bins()
        later = [libc.malloc(600) for _ in range(100)]
        small_left = sum(count for size, count in _free_chunks(libc) if size <= DRAIN_MAX)
        print(sum(p in freed for p in later), small_left < 20)
    """)
    assert out == "0 True"


def test_share_heap_fills_and_drains_before_it_freezes() -> None:
    out = run("""
        from actors import prefork
        prefork.share_heap()
        print(len(prefork._FILLERS) > 0, len(prefork._HELD) > 0)
    """)
    assert out == "True True"
