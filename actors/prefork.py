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

And two keep a child's own allocations off the pages it shares. A child's allocators carry on where the
parent's stopped: the next small object goes into a free block of a partly used pymalloc pool, the next
larger block into a free chunk of glibc's heap, each on some page of the parent's that is then copied,
one page per hole. Filled (`fill_pools`) and drained (`drain_malloc_bins`) before the fork, the holes are
gone and a child's blocks lie side by side in pages of its own: measured at 100 servers, 0.2 MB less per
actor, a TokenActor and an idle one alike (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import logging
import multiprocessing.util
import os
import re
import sys
import tempfile
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


_POOL_ROW = re.compile(r"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$", re.MULTILINE)
#: What fills the holes: kept for the life of the process, shared by every child.
_FILLERS: list[list[object]] = []


def pool_holes() -> dict[int, int]:
    """Free blocks in pymalloc's pools in use, per block size.

    sys._debugmallocstats is the only reader of those counts and prints them to file descriptor 2, which
    points at a scratch file for that millisecond: run it before the process has threads that log."""
    debug = getattr(sys, "_debugmallocstats", None)
    if debug is None:
        return {}
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            debug()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode("ascii", "replace")
    return {int(size): int(free) for size, free in _POOL_ROW.findall(text)}


def _fillers(size: int, count: int) -> list[object]:
    """`count` new objects of `size` bytes, none of them tracked by the collector."""
    if size == 16:
        return [object() for _ in itertools.repeat(None, count)]
    if size == 32:
        return [(1 << 40) + i for i in range(count)]  # a two-digit int: 32 bytes, and ints keep no free list
    return [bytes(size - 33) for _ in itertools.repeat(None, count)]  # a bytes object: 33 bytes + its length


def fill_pools(holes: dict[int, int]) -> int:
    """Fills every free block of pymalloc's partly used pools with an object kept for good; how many."""
    count = 0
    for size, free in holes.items():
        if size > 512 or size % 16 or free <= 0:
            continue
        _FILLERS.append(_fillers(size, free))
        count += free
    return count


_BIN_ROW = re.compile(r'<(?:size|unsorted) from="(\d+)" to="(\d+)" total="\d+" count="(\d+)"/>')
#: glibc's tcache keeps up to 7 freed chunks of each size up to 1,032 bytes, ahead of its bins.
TCACHE_COUNT = 7
TCACHE_MAX = 1040
#: Free chunks up to this size are drained; a larger one is carved up in order, compactly, like the top.
DRAIN_MAX = 4096
#: What drains the holes: held for the life of the process (malloc'd blocks, never freed).
_HELD: list[int] = []


def _free_chunks(libc: ctypes.CDLL) -> list[tuple[int, int]]:
    """(chunk size, count) of the main arena's free chunks in glibc's bins, from malloc_info()."""
    libc.fopen.restype = ctypes.c_void_p
    with tempfile.NamedTemporaryFile() as out:
        stream = libc.fopen(out.name.encode(), b"w")
        if not stream:
            return []
        try:
            libc.malloc_info(0, ctypes.c_void_p(stream))
        finally:
            libc.fclose(ctypes.c_void_p(stream))
        text = out.read().decode("ascii", "replace")
    main = text.split("</heap>", 1)[0]  # the main arena: the one a forked actor's only thread uses
    return [(int(low) & ~7, int(count)) for low, high, count in _BIN_ROW.findall(main)
            if int(low) == int(high)]


def drain_malloc_bins() -> int:
    """Takes every small free chunk out of glibc's tcache and bins and keeps it; how many.

    A child's malloc is served first from the free chunks it inherited — scattered through pages of the
    parent's heap, a page copied for each — and only then from the top, where its blocks lie side by side in
    a few new pages. A forked actor's temporaries above pymalloc's 512 bytes (a pickled message, a dict's
    table) went into such holes (measured at 100 servers: a TokenActor's private heap 0.9 → 0.7 MB). The
    chunks it keeps were free memory of the parent already. Where there is no glibc, nothing happens."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return 0
    if not hasattr(libc, "malloc_info"):  # not glibc
        return 0
    malloc = libc.malloc
    malloc.restype = ctypes.c_void_p
    before = len(_HELD)
    for size in range(32, TCACHE_MAX + 1, 16):  # a chunk of `size` holds size - 8 bytes
        _HELD.extend(malloc(size - 8) for _ in range(TCACHE_COUNT))
    for _ in range(3):  # taking from a bin refills the tcache from it: a few rounds
        chunks = [(size, count) for size, count in _free_chunks(libc) if size <= DRAIN_MAX]
        if not chunks:
            break
        for size, count in chunks:
            _HELD.extend(malloc(size - 8) for _ in range(count))
    return len(_HELD) - before


def share_heap() -> None:
    """Call in a process just before it forks children that inherit its heap."""
    gc.collect()
    try:
        immortalize()
        holes = pool_holes()
        fill_pools(holes)
        immortalize()
        drain_malloc_bins()
    except Exception as e:  # noqa: BLE001 — a memory measure must never stop the service
        log.warning("could not prepare the shared heap (%s: %s); each actor will use more memory",
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

