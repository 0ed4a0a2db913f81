"""The gateway's list of TokenActor addresses (mcpproxy/gateway/bridge.py): an older answer never replaces a newer.

The event listener asks the Supervisor for the addresses (GetActors) while a reload may be under way; the
two answers can reach the gateway in either order. Each carries the Supervisor's `actors_version`, and the
bridge keeps the newer list. Here the crossing is made on purpose against a real actor system — in a fresh
interpreter, since starting one forks the process that starts it.
"""

from __future__ import annotations

from pathlib import Path

from tests.actors.fresh import run_fresh

RUN = """
from actors.messages import GetActors, Reload
from actors.system import start_actor_system, start_supervisor
from mcpproxy.gateway.bridge import ActorBridge
from mcpproxy.logs import setup_logging

first = config("alpha")
asys = start_actor_system(first, setup_logging("INFO", "text", tmp / "mcpproxy.log"))
try:
    sup, started = start_supervisor(asys, first)
    bridge = ActorBridge(asys, sup, started.hub, started.actors, started.actors_version)
    stale = bridge.ask_sync(sup, GetActors())  # asked before the reload ...
    reloaded = bridge.ask_sync(sup, Reload(config("alpha", "beta")), 60)
    print(reloaded.actors_version > stale.actors_version)
    print(bridge.take_actors(reloaded.actors, reloaded.actors_version))
    print(bridge.take_actors(stale.actors, stale.actors_version))  # ... heard of after it
    print(sorted(bridge.actors))
    bridge.close()
finally:
    asys.shutdown()
"""


def test_an_answer_heard_late_never_undoes_a_reload(tmp_path: Path) -> None:
    lines, stderr = run_fresh(RUN, tmp_path)
    assert lines[:4] == ["True", "True", "False", "['alpha', 'beta']"], lines + [stderr[-2000:]]
