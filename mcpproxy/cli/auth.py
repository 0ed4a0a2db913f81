"""`mcpproxy auth status|login|logout` — the form users of the Go mcpproxy know.

Through the running service when there is one. When none runs, `logout` runs the session core's own
logout rules here (tombstone, then revocation) and `status` shows the session the store would restore;
so does `logout` of a disabled server, which has no session in the service. `logout --all` covers the
enabled servers and says what it left of each disabled one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from mcpproxy import owner
from mcpproxy import session as core
from mcpproxy.cli.client import ClientError, ServiceClient, ServiceNotRunning, locate
from mcpproxy.cli.ctl import (
    DEFAULT_LOGIN_TIMEOUT,
    ClientGroup,
    Failed,
    fail,
    logout_one,
    named,
    run_login,
    show_status,
)
from mcpproxy.cli.format import status_table
from mcpproxy.cli.options import config_options, server_option
from mcpproxy.config import Config, ConfigError, ServerConfig, default_config_path, load_config
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.http import new_session
from mcpproxy.record import RecordError
from mcpproxy.status import static_status
from mcpproxy.store import TokenStore, store_path
from mcpproxy.work import Revoke


def load(config_path: str | None, data_dir: str | None) -> Config:
    path = Path(config_path).expanduser() if config_path else default_config_path()
    try:
        return load_config(path, data_dir=data_dir)
    except ConfigError as e:
        fail(str(e))


def oauth_server(config: Config, name: str) -> ServerConfig:
    server = config.server(name)
    if server is None:
        available = ", ".join(s.name for s in config.servers) or "none"
        fail(f"server '{name}' not found in configuration. Available servers: {available}")
    if not server.is_oauth:
        fail(f"server '{name}' does not use OAuth")
    return server


def running_client(config: Config) -> ServiceClient | None:
    """The service to go through: the one at the configured address, else the one that owns the data dir
    (it may listen elsewhere: --listen, MCPPROXY_LISTEN). None only when no service owns the data dir."""
    client = locate(config=config)
    if client.is_running():
        return client
    held = owner.owner(config.data_dir)
    if held is None:
        return None
    if held.url:
        other = ServiceClient(held.url.rstrip("/"), client.api_key, client.key_source)
        if other.is_running():
            return other
    # Writing the store behind a running service's back would leave its actors and its gateway with the old token.
    fail(f"a service (pid {held.pid or '?'}{', ' + held.url if held.url else ''}) owns {config.data_dir} but does "
         "not answer; retry when it does, or stop it first")


# ---- standalone: the service is not running --------------------------------------------------------


def _restored(config: Config, server: ServerConfig, store: TokenStore | None) -> core.Session:
    """The server's session as the service would rebuild it from the store at start-up."""
    try:
        loaded = core.Loaded(store.get_token(server.name) if store is not None else None)
    except RecordError as e:
        loaded = core.Loaded(None, str(e), unreadable=True)
    session, _ = core.restored(server, config.refresh_threshold, config.redirect_uri, loaded)
    return session


STANDALONE_NOTE = "standalone, the service is not running"


def standalone_logout(config: Config, name: str, note: str = STANDALONE_NOTE) -> str:
    """The service's own logout rules, carried out here: the tombstone is written, then the tokens revoked."""
    where = f"Logged out of '{name}' ({note})"
    owned_by = owner.owner(config.data_dir)
    if note == STANDALONE_NOTE and owned_by is not None:
        fail(f"'{name}': a service (pid {owned_by.pid or '?'}) owns {config.data_dir}; log out through it "
             "(`mcpproxy-ctl logout`), not behind its back")
    if not store_path(config.data_dir).exists():
        return f"{where}: no token store, nothing to delete."
    server = oauth_server(config, name)
    store = TokenStore(config.data_dir)
    try:
        session = _restored(config, server, store)
        held = session.token is not None
        _, effects = core.step(session, core.LogoutWanted(reply_to=None, reason="cli"), time.time())
        revocations = []
        for effect in effects:
            if isinstance(effect, core.Persist):
                store.put_token(name, effect.record)
            elif isinstance(effect, core.SendWork) and isinstance(effect.op, Revoke):
                revocations.append(effect.op)
    finally:
        store.close()
    if not held:
        return f"{where}: no token was stored."
    if not revocations:
        return (f"{where}: token deleted; the authorization server has no revocation endpoint, so it was not "
                "revoked.")
    try:
        for op in revocations:
            op.run(new_session())
    except OAuthError as e:
        return f"{where}: token deleted, but revoking it failed ({e.message})."
    return f"{where}: token deleted and revoked at the authorization server."


def standalone_status(config: Config, name: str | None) -> list[dict[str, Any]]:
    """What the store holds, as the status objects the service would show right after it starts."""
    servers = [oauth_server(config, name)] if name else list(config.servers)
    store = TokenStore(config.data_dir) if store_path(config.data_dir).exists() else None
    now = time.time()
    try:
        return [_restored(config, s, store).status(now) if s.is_oauth else static_status(s)
                for s in servers]
    finally:
        if store is not None:
            store.close()


# ---- the commands ----------------------------------------------------------------------------------


@click.group(cls=ClientGroup)
def auth() -> None:
    """Log in to, log out of, and inspect OAuth servers."""


@auth.command("status")
@config_options
@server_option("Only this server.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's status objects unchanged.")
def status_cmd(config_path: str | None, data_dir: str | None, name: str | None, as_json: bool) -> None:
    """Auth state of every server (or --server NAME)."""
    config = load(config_path, data_dir)
    if name:
        oauth_server(config, name)
    client = running_client(config)
    if client is not None:
        show_status(client, name, as_json)
        return
    rows = standalone_status(config, name)
    if as_json:
        click.echo(json.dumps({"service": "not running", "servers": rows}, indent=2))
        return
    click.echo(f"The service is not running ({locate(config=config).base_url}); showing the stored tokens.",
               err=True)
    click.echo(status_table(rows, color=sys.stdout.isatty()))


@auth.command("login")
@config_options
@server_option("The server to log in to.", required=True)
@click.option("--no-browser", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--timeout", type=click.FloatRange(min=1), default=DEFAULT_LOGIN_TIMEOUT, show_default=True,
              help="Seconds to wait for the login to complete.")
def login_cmd(config_path: str | None, data_dir: str | None, name: str, no_browser: bool, timeout: float) -> None:
    """Log in to --server NAME (the service receives the browser's redirect, so it must be running)."""
    config = load(config_path, data_dir)
    oauth_server(config, name)
    client = running_client(config)
    if client is None:
        fail(str(ServiceNotRunning(locate(config=config).base_url)) + "; a login needs the running service")
    run_login(client, name, no_browser=no_browser, timeout=timeout)


# ---- logout ----------------------------------------------------------------------------------------

#: The note standalone_logout puts in its sentence; for a disabled server the service may well be running.
DISABLED_NOTE = "disabled in the configuration, so in the token store directly"


def enabled_now(config: Config, client: ServiceClient | None) -> dict[str, bool]:
    """Which OAuth servers have a session in the service: its own view when it runs (it may not have reloaded
    an edited config yet), else the config's."""
    enabled = {s.name: s.enabled for s in config.servers if s.is_oauth}
    if client is not None:
        try:
            running = client.servers().get("servers", [])
        except ClientError:
            return enabled
        enabled.update({s["name"]: bool(s.get("enabled")) for s in running if s.get("name") in enabled})
    return enabled


def logout_enabled(config: Config, client: ServiceClient | None, name: str) -> ServiceClient | None:
    """Through the running service, else standalone; returns the client for the next server (None once it stopped)."""
    if client is not None:
        try:
            logout_one(client, name)
            return client
        except ServiceNotRunning:
            client = None  # it stopped meanwhile
    click.echo(standalone_logout(config, name))
    return client


def logout_disabled(config: Config, name: str) -> None:
    """The service holds no session for a disabled server, so its stored token is cleared in the store itself."""
    click.echo(standalone_logout(config, name, DISABLED_NOTE))


def skipped_disabled(config: Config, name: str) -> str:
    """What --all did with a disabled server: nothing, and whether a stored token is left behind."""
    try:
        held = any(row["oauth_status"] != "none" for row in standalone_status(config, name))
    except Exception:  # noqa: BLE001 — an unreadable store must not stop the other logouts
        return (f"Skipped '{name}': it is disabled in the configuration; `mcpproxy auth logout -s {name}` deletes "
                "its stored token, if any.")
    if held:
        return (f"Skipped '{name}': it is disabled in the configuration; its stored token is kept — "
                f"`mcpproxy auth logout -s {name}` deletes it.")
    return f"Skipped '{name}': it is disabled in the configuration and holds no stored token."


def logout_every_enabled(config: Config, client: ServiceClient | None) -> None:
    """Every enabled OAuth server, in config order, past any failure; exit 1 only when one of them failed."""
    enabled = enabled_now(config, client)
    if not enabled:
        click.echo("No OAuth servers in the configuration.")
        return
    failed: list[str] = []
    for name, on in enabled.items():
        if not on:
            click.echo(skipped_disabled(config, name))
            continue
        try:
            client = logout_enabled(config, client, name)
        except Failed as e:
            click.echo(f"mcpproxy: {e.message}", err=True)
            failed.append(name)
        except ClientError as e:
            click.echo(f"mcpproxy: {named(name, e)}", err=True)
            failed.append(name)
    if failed:
        attempted = sum(1 for on in enabled.values() if on)
        fail(f"{len(failed)} of {attempted} logouts failed: {', '.join(failed)}")


@auth.command("logout")
@config_options
@server_option("The server to log out of (a disabled one too: its stored token).")
@click.option("--all", "all_", is_flag=True, help="Every enabled OAuth server (disabled ones are skipped, and said).")
def logout_cmd(config_path: str | None, data_dir: str | None, name: str | None, all_: bool) -> None:
    """Log out of --server NAME (or --all); works without the service too."""
    if bool(name) == all_:
        raise click.UsageError("give --server NAME or --all (not both)")
    config = load(config_path, data_dir)
    server = oauth_server(config, name) if name else None
    client = running_client(config)
    if server is None:
        logout_every_enabled(config, client)
        return
    if enabled_now(config, client).get(server.name, server.enabled):
        logout_enabled(config, client, server.name)
    else:
        logout_disabled(config, server.name)
