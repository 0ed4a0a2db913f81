"""The memory floor: N idle Thespian actors forked the way mcpproxy forks its TokenActors.

`python -m bench.floor N` (run by bench/memory.py as a subprocess, measured from outside) imports
what `mcpproxy serve` imports, starts the actor system through the service's own
`actors.system.start_actor_system` (same pre-fork imports, malloc setting, rehearsal and `share_heap()`), then
creates one top-level `FloorParent` that — like the Supervisor — runs `share_heap()` and forks N `Idle`
children, each after its earlier siblings' queues left the after-fork registry (`forget_children_queues`). Each child names its process `mcpproxy-idle`, answers one ping, and then does nothing: what
it costs is what any actor of this shape costs before it holds a single server.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thespian.actors import ActorTypeDispatcher

IDLE_NAME = "mcpproxy-idle"
READY = "floor ready"


@dataclass(frozen=True)
class Spawn:
    n: int


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Spawned:
    n: int


class Idle(ActorTypeDispatcher):
    def receiveMsg_Ping(self, msg: Ping, sender: Any) -> None:
        from actors.base import name_process

        name_process(IDLE_NAME)
        self.send(sender, msg)


class FloorParent(ActorTypeDispatcher):
    """The Supervisor's forking path without its work: collect, freeze, then fork every child."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.asker: Any = None
        self.waiting = 0

    def receiveMsg_Spawn(self, msg: Spawn, sender: Any) -> None:
        from actors.base import name_process
        from actors.prefork import after_fork_baseline, forget_children_queues, share_heap

        name_process("mcpproxy-sup")
        share_heap()
        self.asker, self.waiting = sender, msg.n
        baseline = after_fork_baseline()
        for _ in range(msg.n):
            forget_children_queues(baseline)  # as the Supervisor does before each fork
            self.send(self.createActor(Idle), Ping())

    def receiveMsg_Ping(self, msg: Ping, sender: Any) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.send(self.asker, Spawned(0))


def main(n: int) -> int:
    import mcpproxy.cli.main  # noqa: F401 — what `mcpproxy serve` has imported when it starts the actors
    import mcpproxy.service  # noqa: F401
    from actors.system import start_actor_system
    from mcpproxy.config import load_config
    from mcpproxy.logs import setup_logging

    with tempfile.TemporaryDirectory(prefix="mcpproxy-floor-") as tmp:
        conf_path = Path(tmp) / "config.json"
        conf_path.write_text('{"mcpServers": {}}')
        config = load_config(conf_path, data_dir=tmp)
        asys = start_actor_system(config, setup_logging("INFO", "text", Path(tmp) / "mcpproxy.log"))
        try:
            parent = asys.createActor(FloorParent)
            answer = asys.ask(parent, Spawn(n), 30 + n)
            if not isinstance(answer, Spawned):
                print(f"the floor did not start: {answer!r}", flush=True)
                return 1
            print(READY, flush=True)
            sys.stdin.read()  # until the bench closes our stdin
            return 0
        finally:
            asys.shutdown()


if __name__ == "__main__":
    # The actor classes by their importable name (bench.floor.Idle), not as __main__'s.
    from bench.floor import main as floor_main

    raise SystemExit(floor_main(int(sys.argv[1])))
