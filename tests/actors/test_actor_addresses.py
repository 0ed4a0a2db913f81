"""The gateway's list of TokenActor addresses (mcpproxy/gateway/bridge.py): an older answer never replaces a newer.

The event listener asks the Supervisor for the addresses (GetActors) while a reload may be under way; the
two answers can reach the gateway in either order. Each carries the Supervisor's `actors_version`, and the
bridge keeps the newer list. Here the crossing is made on purpose against a real actor system — in a fresh
interpreter, since starting one forks the process that starts it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import json, sys
from pathlib import Path
from actors.messages import GetActors, Reload
from actors.system import start_actor_system, start_supervisor
from mcpproxy.config import load_config
from mcpproxy.gateway.bridge import ActorBridge
from mcpproxy.logs import setup_logging

tmp = Path(sys.argv[1])
def config(*names):
    path = tmp / "config.json"
    path.write_text(json.dumps({"mcpServers": [
        {"name": n, "url": "http://127.0.0.1:9/mcp", "protocol": "http", "oauth": {}} for n in names]}))
    return load_config(path, data_dir=str(tmp / "data"))

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
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(RUN), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split("\n")[:4] == ["True", "True", "False", "['alpha', 'beta']"], run.stdout + run.stderr[-2000:]
