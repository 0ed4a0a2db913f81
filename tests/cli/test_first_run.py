"""First run: `mcpproxy serve` with no config creates one and, on a terminal, prints the Web UI URL with its key."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

from tests.cli.helpers import MCPPROXY, clean_env
from tests.harness import ROOT, free_port


def test_first_run_creates_the_config_and_prints_the_url_with_its_key(tmp_path: Path) -> None:
    config = tmp_path / "fresh" / "mcp_config.json"
    data_dir = tmp_path / "data"
    port = free_port()
    master, slave = pty.openpty()
    proc = subprocess.Popen([MCPPROXY, "serve", "--config", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, cwd=ROOT, start_new_session=True,
                            env=clean_env(MCPPROXY_DATA_DIR=str(data_dir), MCPPROXY_LISTEN=f"127.0.0.1:{port}"))
    os.close(slave)
    text = ""
    try:
        deadline = time.monotonic() + 60
        while "Config:" not in text and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    text += os.read(master, 65536).decode(errors="replace")
                except OSError:
                    break
        key = (data_dir / "api_key").read_text().strip()
        assert f"Web UI:  http://127.0.0.1:{port}/?apikey={key}" in text, text
        assert f"Config:  {config}" in text
        assert json.loads(config.read_text())["mcpServers"] == []
        assert "created" in text and str(config) in text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        os.close(master)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of that session still around
        except ProcessLookupError:
            pass
    assert code == 0
    log = (data_dir / "mcpproxy.log").read_text()
    assert key not in log, "the key goes to the terminal only, never to the log"
