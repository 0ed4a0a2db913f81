"""The actor system starts without a logging config (`serve(config)` called with no log_conf, as a library).

Thespian's own way to say "no logging" (`logDefs=False`) breaks in 4.0.1 as soon as an actor creates one
('bool' object has no attribute 'get'): the Supervisor never started its TokenActors. start_actor_system
passes an empty logging config instead. In a fresh interpreter, since starting one forks the process.
"""

from __future__ import annotations

from pathlib import Path

from tests.actors.fresh import run_fresh

RUN = """
from actors.system import start_actor_system, start_supervisor

first = config("alpha", "beta")
asys = start_actor_system(first, None)
try:
    sup, started = start_supervisor(asys, first)
    print(sorted(started.actors))
finally:
    asys.shutdown()
"""


def test_the_supervisor_starts_its_actors_with_no_logging_config(tmp_path: Path) -> None:
    lines, stderr = run_fresh(RUN, tmp_path)
    assert lines[:1] == ["['alpha', 'beta']"], lines + [stderr[-2000:]]
    assert "has no attribute" not in stderr, stderr[-2000:]
