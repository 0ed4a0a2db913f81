"""Before a fork: make the parent's heap something every child can share (docs/architecture.md "Processes").

A forked child shares its parent's pages until it writes to one. CPython writes a reference count into
every object its code touches, so a TokenActor that merely runs the code it inherited copies each page
holding anything on its path — measured, most of what an actor costs above an idle one. Two measures
keep those pages shared:

- `gc.freeze()` moves every object into a generation the collector never walks, so a collection in
  the child does not write its bookkeeping into every inherited object;
- on CPython 3.12 and 3.13 (PEP 683), every object the parent holds is made immortal: its reference
  count is set to the value the interpreter leaves alone, so touching it writes nothing. What made
  immortal is never freed — it lives as long as the process, as nearly all of it (modules, classes,
  functions, constants) would anyway; the few things of the moment are a one-time leak of kilobytes.
  Elsewhere (3.11, other interpreters, an unknown layout) this step is skipped after a check on a
  fresh object, and the only cost is memory.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing.util
import sys
from types import CodeType

log = logging.getLogger("mcpproxy.prefork")

#: mallopt's M_MMAP_THRESHOLD, and glibc's default for it.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024

#: `_Py_IMMORTAL_REFCNT` on a 64-bit CPython 3.12/3.13: Py_INCREF and Py_DECREF leave it as it is.
IMMORTAL_REFCNT = 0xFFFFFFFF


def pin_malloc() -> None:
    """Keep glibc serving large blocks from fresh mappings, in this process and every one forked from it.

    glibc raises its mmap threshold to the size of each large block freed; after the store has been
    opened and closed once (as the service does before forking), LMDB's 1–2 MB page lists in every
    TokenActor come from the inherited heap — written over, so copied — instead of fresh zero pages it
    never touches (measured: ~0.1 MB per actor). A fixed threshold stops that. Where there is no glibc
    (macOS), nothing happens."""
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def _immortal_layout() -> bool:
    """True where writing IMMORTAL_REFCNT makes an object immortal — checked on a throwaway object."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] not in ((3, 12), (3, 13)):
        return False
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    probe = ["immortal probe"]
    ctypes.c_ssize_t.from_address(id(probe)).value = IMMORTAL_REFCNT
    before = sys.getrefcount(probe)
    held = [probe, probe, probe]
    unchanged = sys.getrefcount(probe) == before
    del held
    return unchanged and sys.getrefcount(probe) == before


def immortalize() -> int:
    """Make every object reachable from the collector's lists immortal; how many, or 0 where not supported."""
    if not _immortal_layout():
        return 0
    count = 0
    write = ctypes.c_ssize_t.from_address
    for generation in range(3):  # one generation at a time, and no set of seen ids: no large temporaries,
        for obj in gc.get_objects(generation):  # whose freed memory the children would then write into
            write(id(obj)).value = IMMORTAL_REFCNT
            count += 1
            # What the collector does not track — strings, numbers, code objects, tuples of those — is
            # reached through what it does; code objects hide their constants from get_referents.
            below = [r for r in gc.get_referents(obj) if not gc.is_tracked(r)]
            while below:
                r = below.pop()
                write(id(r)).value = IMMORTAL_REFCNT
                count += 1
                inner = r.co_consts if isinstance(r, CodeType) else gc.get_referents(r)
                below.extend(x for x in inner if not gc.is_tracked(x))
    return count


def share_heap() -> None:
    """Call in a process just before it forks children that inherit its heap."""
    gc.collect()
    try:
        immortalize()
    except Exception as e:  # noqa: BLE001 — a memory measure must never stop the service
        log.warning("could not make the shared heap immortal (%s: %s); each actor will use more memory",
                    type(e).__name__, e)
    gc.freeze()


def after_fork_baseline() -> frozenset[object]:
    """The entries of multiprocessing's after-fork registry before this actor creates its first child."""
    registry = getattr(multiprocessing.util, "_afterfork_registry", None)
    return frozenset(registry.keys()) if registry is not None else frozenset()


def forget_children_queues(baseline: frozenset[object]) -> int:
    """Before an actor forks another child: its earlier children's queues leave multiprocessing's after-fork
    registry, which every new child runs through at birth (a Queue and its three semaphores re-made in the
    child, ~5 kB copied per earlier sibling). A child never uses them: Thespian gives it a transport of its
    own with only its queue, its parent's and the admin's. The parent itself never reads the registry
    (it is for its children), so its queues keep working. Returns how many entries it removed (none where
    the registry is not there: another interpreter)."""
    registry = getattr(multiprocessing.util, "_afterfork_registry", None)
    if registry is None:
        return 0
    stale = [key for key in list(registry.keys()) if key not in baseline]
    for key in stale:
        registry.pop(key, None)
    return len(stale)

