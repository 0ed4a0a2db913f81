"""`mcpproxy auth status|login|logout` — the form users of the Go mcpproxy know.

Through the running service when there is one. When none runs, `logout` runs the session core's own
logout rules here (tombstone, then revocation) and `status` shows the session the store would restore.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from mcpproxy import session as core
from mcpproxy.cli.client import ServiceClient, ServiceNotRunning, locate
from mcpproxy.cli.ctl import (
    DEFAULT_LOGIN_TIMEOUT,
    ClientGroup,
    fail,
    logout_one,
    run_login,
    show_status,
)
from mcpproxy.cli.format import status_table
from mcpproxy.cli.options import config_options
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
    client = locate(config=config)
    return client if client.is_running() else None


# ---- standalone: the service is not running --------------------------------------------------------


def _restored(config: Config, server: ServerConfig, store: TokenStore | None) -> core.Session:
    """The server's session as the service would rebuild it from the store at start-up."""
    try:
        loaded = core.Loaded(store.get_token(server.name) if store is not None else None)
    except RecordError as e:
        loaded = core.Loaded(None, str(e), unreadable=True)
    session, _ = core.restored(server, config.refresh_threshold, config.redirect_uri, loaded)
    return session


def standalone_logout(config: Config, name: str) -> str:
    """The service's own logout rules, carried out here: the tombstone is written, then the tokens revoked."""
    where = f"Logged out of '{name}' (standalone, the service is not running)"
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
@click.option("--server", "name", metavar="NAME", help="Only this server.")
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
@click.option("--server", "name", metavar="NAME", required=True, help="The server to log in to.")
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


@auth.command("logout")
@config_options
@click.option("--server", "name", metavar="NAME", help="The server to log out of.")
@click.option("--all", "all_", is_flag=True, help="Every OAuth server.")
def logout_cmd(config_path: str | None, data_dir: str | None, name: str | None, all_: bool) -> None:
    """Log out of --server NAME (or --all); works without the service too."""
    if bool(name) == all_:
        raise click.UsageError("give --server NAME or --all (not both)")
    config = load(config_path, data_dir)
    names = [oauth_server(config, name).name] if name else [s.name for s in config.servers if s.is_oauth]
    if not names:
        click.echo("No OAuth servers in the configuration.")
        return
    client = running_client(config)
    for n in names:
        if client is not None:
            try:
                logout_one(client, n)
                continue
            except ServiceNotRunning:
                client = None  # it stopped meanwhile
        click.echo(standalone_logout(config, n))
