"""`make demo`: the test authorization server (20 s tokens, rotation on), two test MCP servers and
mcpproxy configured for both, in a throw-away data dir on a free port. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

import requests

from tests.harness import ROOT, free_port, wait_until, write_config
from tests.mcpserver.control import start_mcp_server
from tests.oauthserver.control import start_oauth_server

MCPPROXY = str(Path(sys.executable).parent / "mcpproxy")
ACCESS_TTL = 20


def _banner(base: str, key: str, config: Path, names: list[str]) -> str:
    ctl = f"{Path(sys.executable).parent / 'mcpproxy-ctl'} --config {config}"
    lines = [
        "",
        "mcpproxy demo is running.",
        "",
        f"  Web UI:  {base}/?apikey={key}",
        f"  Config:  {config}   (edit it: the service reloads it by itself)",
        "",
        f"Two OAuth-protected MCP servers ({', '.join(names)}); their tokens live {ACCESS_TTL} s, so you",
        "see a refresh about every 16 s. Try:",
        "",
        f"  {ctl} status",
        f"  {ctl} login {names[0]} --no-browser",
        f"  {ctl} events",
        f"  {ctl} logout {names[0]}",
        "",
        "MCP clients reach the servers through the pass-through:",
        *(f"  {base}/mcp/{n}" for n in names),
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    data_dir = Path(tempfile.mkdtemp(prefix="mcpproxy-demo-"))
    proc: subprocess.Popen[bytes] | None = None
    with ExitStack() as stack:
        try:
            auth = stack.enter_context(start_oauth_server(access_ttl=ACCESS_TTL))
            names = ["notes", "calendar"]
            servers = [stack.enter_context(start_mcp_server(auth.base_url, name=n)) for n in names]
            port = free_port()
            key = secrets.token_urlsafe(24)
            config = write_config(data_dir, port, [
                {"name": n, "url": s.url, "protocol": "http", "oauth": {}} for n, s in zip(names, servers, strict=True)
            ], api_key=key)
            env = {k: v for k, v in os.environ.items() if not k.startswith("MCPPROXY_")}
            proc = subprocess.Popen([MCPPROXY, "serve", "--config", str(config)], cwd=ROOT, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            base = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"mcpproxy exited with {proc.returncode}")
                try:
                    return requests.get(base + "/readyz", timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            wait_until(ready, 60, "mcpproxy to be ready")
            print(_banner(base, key, config, names), file=sys.stderr, flush=True)
            while not stop.is_set() and proc.poll() is None:
                stop.wait(0.5)
            if proc.poll() is not None:
                print(f"mcpproxy exited with {proc.returncode}", file=sys.stderr)
                return 1
            return 0
        finally:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
