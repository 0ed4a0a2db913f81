"""`mcpproxy-ctl` — the command-line client of the running service's REST API (docs/architecture.md "CLI contract").

Exit codes: 0 success, 1 failure, 2 usage.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from mcpproxy.cli.client import (
    ApiFailure,
    ClientError,
    EventStream,
    ServiceClient,
    ServiceNotRunning,
    SSEEvent,
    locate,
)
from mcpproxy.cli.format import badge, clean, error_sentence, event_line, relative, status_table
from mcpproxy.cli.options import server_option

#: `events` reconnects after a drop: backoff from 0.5 s to 10 s, giving up after 2 minutes without the service.
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 10.0
RECONNECT_GIVE_UP = 120.0

DEFAULT_LOGIN_TIMEOUT = 300.0
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Failed(click.ClickException):
    """Exit 1 with "PROG: sentence" on stderr."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # Named while the command runs: by show() time click has left its context (`mcpproxy auth` is not ctl).
        ctx = click.get_current_context(silent=True)
        self.prog = (ctx.find_root().info_name if ctx is not None else None) or "mcpproxy-ctl"

    def show(self, file: Any = None) -> None:
        click.echo(f"{self.prog}: {clean(self.message)}", err=True)  # the sentence is often the service's


def fail(message: str) -> NoReturn:
    raise Failed(message)


def named(name: str, e: ClientError) -> str:
    """The API's sentence, naming the server when it does not already."""
    text = str(e)
    return text if f"'{name}'" in text or isinstance(e, ApiFailure) and e.status == 401 else f"server '{name}': {text}"


class ClientGroup(click.Group):
    """Turns the client's errors into exit 1 with the sentence, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as e:
            raise Failed(str(e)) from None


@dataclass
class Target:
    url: str | None
    api_key: str | None
    config_path: str | None
    _client: ServiceClient | None = None

    def client(self) -> ServiceClient:
        if self._client is None:
            self._client = locate(self.url, self.api_key, self.config_path)
        return self._client


# ---- command bodies, shared with `mcpproxy auth` --------------------------------------------------


def show_status(client: ServiceClient, name: str | None, as_json: bool) -> None:
    if name:
        try:
            data = client.server(name)
        except ApiFailure as e:
            fail(named(name, e))
        statuses = [data]
    else:
        data = client.servers()
        statuses = list(data.get("servers", []))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(status_table(statuses, color=sys.stdout.isatty()))
    if not name:
        info = client.status()
        click.echo(at_rest_line(info.get("at_rest")))
        for line in config_lines(info):
            click.echo(line)


def config_lines(info: dict[str, Any]) -> list[str]:
    """The config's problems under the status table, as the Web UI's banner says them."""
    problems = [clean(p) for p in info.get("config_problems") or []]
    warnings = [clean(w) for w in info.get("config_warnings") or []]
    lines: list[str] = []
    if problems:
        lines.append("")
        lines.append("The config file has an edit that was not applied; the service runs the previous configuration:"
                     if info.get("config_differs") else "Config problems (these entries are left out):")
        lines += [f"  {p}" for p in problems]
    if warnings:
        lines.append("")
        lines += [f"warning: {w}" for w in warnings]
    return lines


def headless() -> bool:
    """No browser can open here: no display on Linux/BSD (an SSH session, a server)."""
    if sys.platform in ("darwin", "win32"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _reader(stream: EventStream, out: queue.Queue[SSEEvent | None]) -> None:
    try:
        for ev in stream:
            out.put(ev)
    except Exception:  # noqa: BLE001, S110 — the stream ends when we close it or the service stops
        pass
    out.put(None)


def _outcome(ev: SSEEvent, name: str) -> tuple[bool, str] | None:
    payload = ev.data.get("payload", {}) if isinstance(ev.data, dict) else {}
    server = payload.get("server_name") or payload.get("name")
    if server != name:
        return None
    if ev.event == "oauth.login_completed":
        return True, ""
    if ev.event == "servers.changed" and payload.get("reason") == "login_failed":
        err = payload.get("last_error") or {}
        return False, str(err.get("message") or "the login failed")
    return None


class Spinner:
    """A spinner on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.on = sys.stderr.isatty()
        self.i = 0

    def tick(self) -> None:
        if self.on:
            self.i += 1
            sys.stderr.write(f"\r{SPINNER[self.i % len(SPINNER)]} {self.text}")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * (len(self.text) + 2) + "\r")
            sys.stderr.flush()


def run_login(client: ServiceClient, name: str, *, no_browser: bool, timeout: float,
              echo: Callable[[str], None] = click.echo, again: bool = False) -> None:
    """Starts a login, shows or opens its URL, follows /events until it completes; fails otherwise.

    A server already logged in says so and stays as it is, unless `again`."""
    if not again:
        try:
            current = client.server(name)
        except ApiFailure as e:
            fail(named(name, e))
        if current.get("oauth_status") == "authenticated" and not current.get("action"):
            echo(f"Already logged in to '{name}'; the token expires "
                 f"{relative(current.get('token_expires_at'), past='now')}. Add --again to log in anew.")
            return
    try:
        stream = client.events(server=name)  # subscribed before the login starts: nothing is missed
    except ApiFailure as e:
        fail(named(name, e))
    events: queue.Queue[SSEEvent | None] = queue.Queue()
    try:
        try:
            started = client.login(name, open_browser=False)
        except ApiFailure as e:
            fail(named(name, e))
        url = clean(started["auth_url"])
        opened = False
        if not no_browser and not headless():
            try:
                opened = webbrowser.open(url)
            except webbrowser.Error:
                opened = False
        if opened:
            echo(f"Opened your browser to log in to '{name}'. If nothing appeared, open this URL:\n  {url}")
        else:
            echo(f"Open this URL in a browser to log in to '{name}':\n  {url}")
        threading.Thread(target=_reader, args=(stream, events), daemon=True, name="sse").start()
        spinner = Spinner(f"waiting for the login of '{name}' to complete (Ctrl-C to stop)")
        deadline = time.monotonic() + timeout
        result: tuple[bool, str] | None = None
        try:
            while result is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"server '{name}': no login completed within {timeout:.0f}s; the link stays valid for "
                         "10 minutes, or run the command again")
                spinner.tick()
                try:
                    ev = events.get(timeout=min(0.1, left))
                except queue.Empty:
                    continue
                if ev is None:
                    fail(f"server '{name}': the service closed the event stream before the login completed")
                result = _outcome(ev, name)
        finally:
            spinner.clear()
    finally:
        stream.close()
    ok, why = result
    if not ok:
        fail(f"server '{name}': login failed: {why}")
    status = client.server(name)
    if status.get("oauth_status") != "authenticated":
        fail(f"server '{name}': the login completed but the server shows {status.get('oauth_status')!r}")
    echo(f"Logged in to '{name}'; the token expires {relative(status.get('token_expires_at'), past='now')}.")


def logout_one(client: ServiceClient, name: str) -> None:
    try:
        data = client.logout(name)
    except ApiFailure as e:
        fail(named(name, e) + _disabled_hint(client, name, e))
    if data.get("revoked"):
        click.echo(f"Logged out of '{name}': token deleted and revoked at the authorization server.")
    else:
        click.echo(f"Logged out of '{name}': no token held or no revocation endpoint, so nothing to revoke.")


def _disabled_hint(client: ServiceClient, name: str, e: ApiFailure) -> str:
    """The service keeps no session for a disabled server; the local command can still clear its stored token."""
    if e.status != 409:
        return ""
    try:
        enabled = client.server(name).get("enabled")
    except ClientError:
        return ""
    return f"; `mcpproxy auth logout -s {name}` deletes its stored token" if enabled is False else ""


def logout_every(client: ServiceClient) -> None:
    """POST /api/v1/servers/logout covers the enabled OAuth servers; the disabled ones are named as skipped."""
    data = client.logout_all()
    results = list(data.get("results", []))
    skipped = [s["name"] for s in client.servers().get("servers", []) if s.get("is_oauth") and not s.get("enabled")]
    if not results and not skipped:
        click.echo("No OAuth servers to log out of.")
    for r in results:
        if r.get("success"):
            what = "revoked at the authorization server" if r.get("revoked") else "nothing to revoke"
            click.echo(f"Logged out of '{clean(r['server'])}': {what}.")
        else:
            click.echo(f"Could not log out of '{clean(r['server'])}': {clean(r.get('error'))}", err=True)
    for name in skipped:
        click.echo(f"Skipped '{clean(name)}': it is disabled in the configuration; `mcpproxy auth logout -s "
                   f"{clean(name)}` deletes its stored token, if any.")
    if data.get("failed"):
        fail(f"{data['failed']} of {len(results)} logouts failed")


# ---- the CLI -------------------------------------------------------------------------------------


@click.group(cls=ClientGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="MCPPROXY_URL", help="The service's base URL (default: from the config's listen).")
@click.option("--api-key", envvar="MCPPROXY_API_KEY",
              help="The API key (default: the config's api_key, else <data_dir>/api_key).")
@click.option("--config", "config_path", envvar="MCPPROXY_CONFIG", type=click.Path(dir_okay=False),
              help="Config file to find the service from (default ~/.mcpproxy/mcp_config.json).")
@click.version_option(package_name="mcpproxy", prog_name="mcpproxy-ctl")
@click.pass_context
def cli(ctx: click.Context, url: str | None, api_key: str | None, config_path: str | None) -> None:
    """Drive the running mcpproxy service: status, login, logout, refresh, events."""
    ctx.obj = Target(url, api_key, config_path)


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the API's status objects unchanged.")
@click.pass_obj
def status(target: Target, name: str | None, as_json: bool) -> None:
    """Every server's auth state (or NAME's): badge, expiry, next refresh, last error."""
    show_status(target.client(), name, as_json)


def at_rest_line(at_rest: str | None) -> str:
    """How the token store is kept at rest (docs/security.md "Tokens at rest")."""
    where = {"keyring": "the OS keyring", "key_file": "a key file"}.get(str(at_rest))
    return f"Tokens at rest: sealed, with the data key from {where}." if where else "Tokens at rest: unknown."


@cli.command()
@click.argument("name")
@click.option("--no-browser", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--timeout", type=click.FloatRange(min=1), default=DEFAULT_LOGIN_TIMEOUT, show_default=True,
              help="Seconds to wait for the login to complete.")
@click.option("--again", is_flag=True, help="Log in even when already logged in (another account, new scopes).")
@click.pass_obj
def login(target: Target, name: str, no_browser: bool, timeout: float, again: bool) -> None:
    """Log in to NAME: open the authorization URL and wait until the login completes."""
    run_login(target.client(), name, no_browser=no_browser, timeout=timeout, again=again)


@cli.command()
@click.option("--open", "open_", is_flag=True, help="Open it in the browser too.")
@click.pass_obj
def ui(target: Target, open_: bool) -> None:
    """Print the Web UI's address with its key (--open: open it)."""
    client = target.client()
    client.status()  # the service answers and takes this key: the address will work
    url = f"{client.base_url}/?apikey={client.api_key}" if client.api_key else f"{client.base_url}/"
    click.echo(url)
    if open_:
        opened = False
        if not headless() or os.environ.get("BROWSER"):
            try:
                opened = webbrowser.open(url)
            except webbrowser.Error:
                opened = False
        if not opened:
            fail("no browser could be opened here; open the address above yourself")


@cli.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Log out of every enabled OAuth server.")
@click.pass_obj
def logout(target: Target, name: str | None, all_: bool) -> None:
    """Log out of NAME (or --all): delete its token and revoke it. No prompt."""
    if bool(name) == all_:
        raise click.UsageError("give a server NAME or --all (not both)")
    if all_:
        logout_every(target.client())
    else:
        assert name is not None
        logout_one(target.client(), name)


@cli.command()
@click.argument("name")
@click.pass_obj
def refresh(target: Target, name: str) -> None:
    """Refresh NAME's token now."""
    try:
        data = target.client().refresh(name)
    except ApiFailure as e:
        fail(named(name, e))
    click.echo(f"Refreshed '{name}'; the new token expires {relative(data.get('token_expires_at'), past='now')}.")


@cli.command()
@server_option("Only this server's events.", dest="server")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event: {id, event, data}.")
@click.pass_obj
def events(target: Target, server: str | None, as_json: bool) -> None:
    """Follow the service's events until Ctrl-C; reconnects (with Last-Event-ID) when the service restarts."""
    try:
        follow_events(target.client(), server, as_json)
    except KeyboardInterrupt:
        return  # Ctrl-C is how this command ends: exit 0, no "Aborted!"


def follow_events(client: ServiceClient, server: str | None, as_json: bool) -> None:
    if server:
        try:
            client.server(server)  # an unknown name is said now, with the known ones, not followed in silence
        except ApiFailure as e:
            fail(named(server, e))
    last_id: str | None = None
    down_since: float | None = None
    delay = RECONNECT_FIRST
    lines = EventLines()
    while True:
        try:
            stream = client.events(server=server, last_event_id=last_id)
        except (ServiceNotRunning, ApiFailure) as e:
            if down_since is None or isinstance(e, ApiFailure) and e.status in (401, 404):
                raise  # never connected, or refused: say so now
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > RECONNECT_GIVE_UP:
                fail(f"the service has not answered for {RECONNECT_GIVE_UP:.0f}s; giving up")
            time.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)
            continue
        what = f"{client.base_url}/events" + (f" (server '{server}')" if server else "")
        click.echo(f"mcpproxy-ctl: {'reconnected' if down_since is not None else 'connected'} to {what}; "
                   "Ctrl-C to stop", err=True)
        down_since, delay = None, RECONNECT_FIRST
        try:
            for ev in stream:
                if ev.id:
                    last_id = ev.id
                if ev.event == "ping":
                    continue
                if as_json:
                    click.echo(json.dumps({"id": ev.id, "event": ev.event, "data": ev.data}))
                else:
                    line = lines.line(ev.event, ev.data)
                    if line:
                        click.echo(line)
        except Exception:  # noqa: BLE001 — requests raises several kinds when the connection drops
            pass
        finally:
            last_id = stream.last_id or last_id
            stream.close()
        click.echo("mcpproxy-ctl: the event stream broke off (service restarting?); reconnecting…", err=True)
        down_since = time.monotonic()


#: servers.changed reasons that come with an event of their own, which says it better.
TOLD_BY_THEIR_OWN_EVENT = frozenset({"token_refreshed", "login_completed", "logout", "refresh_failed"})


class EventLines:
    """One line per thing that happened: a servers.changed only when what the table would show changed, and
    not when an event of its own (a refresh, a login, a logout) says it."""

    def __init__(self) -> None:
        self.shown: dict[str, tuple[str, str]] = {}

    def line(self, name: str, data: dict[str, Any]) -> str | None:
        if name != "servers.changed":
            return event_line(name, data)
        payload = data.get("payload", {}) if isinstance(data, dict) else {}
        if not isinstance(payload, dict):
            return event_line(name, data)
        server = str(payload.get("name"))
        seen = (badge(payload)[0], error_sentence(payload) if payload.get("last_error") else "")
        before = self.shown.get(server)
        self.shown[server] = seen
        if seen == before or payload.get("reason") in TOLD_BY_THEIR_OWN_EVENT:
            return None
        return event_line(name, data)


def main() -> None:
    try:
        cli(prog_name="mcpproxy-ctl")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
