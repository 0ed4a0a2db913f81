"""Actor queues whose feeder thread ends when it has nothing to send (docs/architecture.md "Start-up order").

Thespian's queue base gives every actor a `multiprocessing.Queue`, and a Queue's first `put` starts a
feeder thread that writes its buffer into the pipe and then waits forever. The Supervisor puts into every
child's queue, so it kept one idle thread per server (1,003 at 1,000 servers, ~47 MB of stacks), and each
new child, forked from it, copied the pages that the after-fork cleanup of every one of those threads writes
(its thread state, its stack's header, its Thread object): ~3.5 kB per elder sibling, the last of 300
TokenActors 0.8 MB bigger than the first. Here a feeder that has waited FEEDER_IDLE seconds with an empty
buffer ends, and the next `put` starts another, as the first one did: a thread start (~0.1 ms) per message
after a quiet spell.
"""

from __future__ import annotations

import errno
import threading
import weakref
from collections import deque
from collections.abc import Callable
from multiprocessing import context, queues
from multiprocessing.reduction import ForkingPickler
from multiprocessing.util import Finalize, info, is_exiting
from typing import Any

#: How long a feeder waits for more before it ends. Messages come in bursts (a refresh's ask and answer,
#: a login's steps), so a burst keeps its thread; a quiet queue holds none.
FEEDER_IDLE = 0.5


class IdleFeederQueue(queues.Queue):  # type: ignore[type-arg]
    """`multiprocessing.Queue`, the same pipe and framing, with a feeder that ends when idle.

    The feeder clears `_thread` under the buffer's lock before it ends, and `put` starts one under the same
    lock when `_thread` is None: a message is never left in the buffer with no thread to send it, and one
    feeder at a time keeps the order.
    """

    def _start_thread(self) -> None:
        q: Any = self  # the attributes CPython's Queue sets in _reset(), which typeshed does not list
        for old in (q._close, q._jointhread):  # the ended feeder's; else each start leaves two behind
            if old is not None:
                old.cancel()
        q._buffer.clear()
        q._thread = threading.Thread(
            target=_feed_until_idle,
            args=(weakref.ref(self), q._buffer, q._notempty, q._send_bytes, q._wlock, q._reader.close,
                  q._writer.close, q._ignore_epipe, q._on_queue_feeder_error, q._sem),
            name="QueueFeederThread", daemon=True)
        try:
            q._thread.start()
        except BaseException:
            q._thread = None
            raise
        if not q._joincancelled:
            q._jointhread = Finalize(q._thread, q._finalize_join, [weakref.ref(q._thread)], exitpriority=-5)
        q._close = Finalize(self, q._finalize_close, [q._buffer, q._notempty], exitpriority=10)

    def close(self) -> None:
        q: Any = self
        # An ended feeder cannot see the closing sentinel: start one to flush and close the pipe, as before.
        with q._notempty:
            if q._thread is None and q._close is not None:
                self._start_thread()
        super().close()


def _feed_until_idle(queue_ref: Callable[[], Any], buffer: deque[Any],
                     notempty: threading.Condition, send_bytes: Callable[[Any], None], writelock: Any,
                     reader_close: Callable[[], None], writer_close: Callable[[], None], ignore_epipe: bool,
                     onerror: Callable[[Exception, Any], None], queue_sem: Any) -> None:
    """CPython's `Queue._feed` (3.11–3.13), but an empty buffer after FEEDER_IDLE ends the thread."""
    sentinel = queues._sentinel  # type: ignore[attr-defined]
    me = threading.current_thread()
    obj = None
    while True:
        try:
            with notempty:
                if not buffer and not notempty.wait(FEEDER_IDLE) and not buffer:
                    queue = queue_ref()
                    if queue is not None and queue._thread is me:
                        queue._thread = None
                    return
            try:
                while True:
                    obj = buffer.popleft()
                    if obj is sentinel:
                        reader_close()
                        writer_close()
                        return
                    data = ForkingPickler.dumps(obj)  # serialized before the write lock, as CPython does
                    if writelock is None:
                        send_bytes(data)
                    else:
                        with writelock:
                            send_bytes(data)
            except IndexError:
                pass
        except Exception as e:  # noqa: BLE001 — CPython's feeder's own handling, kept as it is
            if ignore_epipe and getattr(e, "errno", 0) == errno.EPIPE:
                return
            if is_exiting():
                info("error in queue thread: %s", e)
                return
            queue_sem.release()
            onerror(e, obj)


class IdleFeederContext(context.ForkContext):
    """The fork start method, with IdleFeederQueue for every queue Thespian makes through it."""

    def Queue(self, maxsize: int = 0) -> IdleFeederQueue:  # noqa: N802 — multiprocessing's name
        return IdleFeederQueue(maxsize, ctx=self.get_context())


def use_idle_feeders() -> None:
    """Thespian's queue base takes its multiprocessing context from `get_multiproc_context`: where that is
    the fork method (Linux, macOS), it gets IdleFeederContext instead."""
    import thespian.system.multiprocCommon as common

    original = getattr(common.get_multiproc_context, "__wrapped__", common.get_multiproc_context)

    def get_multiproc_context(capabilities: dict[str, Any]) -> Any:
        ctx = original(capabilities)
        return IDLE_FEEDER_CONTEXT if ctx is not None and ctx.get_start_method() == "fork" else ctx

    get_multiproc_context.__wrapped__ = original  # type: ignore[attr-defined]
    common.get_multiproc_context = get_multiproc_context


IDLE_FEEDER_CONTEXT = IdleFeederContext()
