"""A real actor system in a fresh interpreter: starting one forks the process that starts it, which must
not be pytest's. A script gets `tmp` (a folder of its own) and `config(*names)` (HTTP OAuth servers that
are never reached), and prints what the test compares."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import json, sys
from pathlib import Path
from mcpproxy.config import load_config

tmp = Path(sys.argv[1])
def config(*names):
    path = tmp / "config.json"
    path.write_text(json.dumps({"mcpServers": [
        {"name": n, "url": "http://127.0.0.1:9/mcp", "protocol": "http", "oauth": {}} for n in names]}))
    return load_config(path, data_dir=str(tmp / "data"))
"""


def run_fresh(script: str, tmp_path: Path) -> tuple[list[str], str]:
    """The script's printed lines and its stderr; fails the test when it exits with an error."""
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines(), done.stderr
