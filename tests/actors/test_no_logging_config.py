"""The actor system starts without a logging config (`serve(config)` called with no log_conf, as a library).

Thespian's own way to say "no logging" (`logDefs=False`) breaks in 4.0.1 as soon as an actor creates one
('bool' object has no attribute 'get'): the Supervisor never started its TokenActors. start_actor_system
passes an empty logging config instead. In a fresh interpreter, since starting one forks the process.
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
from actors.system import start_actor_system, start_supervisor
from mcpproxy.config import load_config

tmp = Path(sys.argv[1])
path = tmp / "config.json"
path.write_text(json.dumps({"mcpServers": [
    {"name": n, "url": "http://127.0.0.1:9/mcp", "protocol": "http", "oauth": {}} for n in ("alpha", "beta")]}))
config = load_config(path, data_dir=str(tmp / "data"))
asys = start_actor_system(config, None)
try:
    sup, started = start_supervisor(asys, config)
    print(sorted(started.actors))
finally:
    asys.shutdown()
"""


def test_the_supervisor_starts_its_actors_with_no_logging_config(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(RUN), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[:1] == ["['alpha', 'beta']"], run.stdout + run.stderr[-2000:]
    assert "has no attribute" not in run.stderr, run.stderr[-2000:]
