"""`-s` for `--server` (issue 14.3): on every command of both programs, and run for real against the service."""

from __future__ import annotations

import json
import subprocess

import click

from mcpproxy.cli.ctl import cli as ctl_cli
from mcpproxy.cli.main import cli as mcpproxy_cli
from tests.cli.helpers import CTL, MCPPROXY, clean_env, login_through_cli, mcpproxy
from tests.harness import ROOT, ServiceHandle, wait_until


def _commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        found.append((f"{path} {name}", cmd))
        if isinstance(cmd, click.Group):
            found.extend(_commands(cmd, f"{path} {name}"))
    return found


def test_every_server_option_also_answers_to_dash_s() -> None:
    with_server = []
    for path, cmd in _commands(mcpproxy_cli, "mcpproxy") + _commands(ctl_cli, "mcpproxy-ctl"):
        for param in cmd.params:
            if "--server" in param.opts:
                assert "-s" in param.opts, f"{path}: --server without -s"
                with_server.append(path)
    # If a command gains or loses --server, this list (and docs/cli.md) says so.
    assert sorted(with_server) == ["mcpproxy auth login", "mcpproxy auth logout", "mcpproxy auth status",
                                   "mcpproxy-ctl events"]


def test_dash_s_works_in_each_command_against_the_service(service: ServiceHandle) -> None:
    events = subprocess.Popen([CTL, "--config", str(service.config_path), "events", "--json", "-s", "demo"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env=clean_env())
    try:
        wait_until(lambda: "mcpproxy_sse_clients 1" in service.api("GET", "/metrics").text, 20,
                   "mcpproxy-ctl events -s demo to be subscribed")
        code, out, err = login_through_cli([MCPPROXY, "auth", "login", "-s", "demo", "--no-browser",
                                            "--config", str(service.config_path)])
        assert code == 0, err
        assert "Logged in to 'demo'" in out

        r = mcpproxy(service, "auth", "status", "-s", "demo", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["oauth_status"] == "authenticated"

        r = mcpproxy(service, "auth", "logout", "-s", "demo")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("Logged out of 'demo'")

        def logout_seen() -> bool:
            line = events.stdout.readline()  # type: ignore[union-attr]
            return bool(line) and json.loads(line)["event"] == "oauth.logout"

        wait_until(logout_seen, 20, "oauth.logout on mcpproxy-ctl events -s demo")
    finally:
        events.terminate()
        events.communicate(timeout=10)
