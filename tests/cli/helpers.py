"""Running the CLIs as subprocesses against a service from tests/harness.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from tests.harness import ROOT, ServiceHandle

BIN = Path(sys.executable).parent
CTL = str(BIN / "mcpproxy-ctl")
MCPPROXY = str(BIN / "mcpproxy")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPPROXY_")}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run(argv: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=clean_env(**env))


def ctl(svc: ServiceHandle, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run([CTL, "--config", str(svc.config_path), *args], timeout=timeout)


def mcpproxy(svc: ServiceHandle, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run([MCPPROXY, *args, "--config", str(svc.config_path)], timeout=timeout)


def start_login(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Starts a `login --no-browser` and reads the URL it prints."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=clean_env())
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "Open this URL in a browser to log in to" in first, (first, proc.stderr.read() if proc.stderr else "")
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    return proc, url


def follow_like_a_browser(url: str) -> requests.Response:
    r = requests.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    return requests.get(r.headers["Location"], timeout=60)


def login_through_cli(argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
    """Runs a `login --no-browser` command, follows the URL it prints like a browser, and waits for it."""
    proc, url = start_login(argv)
    try:
        assert follow_like_a_browser(url).status_code == 200
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err
