"""`mcpproxy auth status|login|logout` — the form users of the Go mcpproxy know.

Through the running service when there is one. When none runs, `logout` clears the stored token
itself (a tombstone like the TokenActor's own logout) and revokes it when it can.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

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
from mcpproxy.cli.options import config_options, server_option
from mcpproxy.config import Config, ConfigError, ServerConfig, default_config_path, load_config


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


def standalone_logout(config: Config, name: str) -> str:
    """Deletes the stored token (leaving a user_logged_out tombstone) and revokes it; one sentence back."""
    from mcpproxy.oauth.errors import OAuthError
    from mcpproxy.oauth.revocation import revoke
    from mcpproxy.store import RecordError, TokenStore, store_path

    if not store_path(config.data_dir).exists():
        return f"Logged out of '{name}' (standalone, the service is not running): no token store, nothing to delete."
    store = TokenStore(config.data_dir)
    try:
        try:
            record = store.get_token(name)
        except RecordError:
            record = None
        generation = int(record.get("generation", 0)) if record else 0
        # The same tombstone the TokenActor writes on logout, so the next start shows "logged out".
        store.put_token(name, {"generation": generation + 1, "user_logged_out": True})
    finally:
        store.close()
    if not record or not record.get("access_token"):
        return f"Logged out of '{name}' (standalone, the service is not running): no token was stored."
    endpoint = record.get("revocation_endpoint")
    if not endpoint:
        return (f"Logged out of '{name}' (standalone, the service is not running): token deleted; the "
                "authorization server has no revocation endpoint, so it was not revoked.")
    tokens = [(record["refresh_token"], "refresh_token")] if record.get("refresh_token") else []
    tokens.append((record["access_token"], "access_token"))
    errors: list[str] = []
    for token, hint in tokens:  # RFC 7009 §2: the refresh token first
        try:
            revoke(endpoint, token=token, token_type_hint=hint, client_id=record.get("client_id") or "",
                   client_secret=record.get("client_secret"))
        except OAuthError as e:
            errors.append(f"{hint}: {e.message}")
    if errors:
        return (f"Logged out of '{name}' (standalone, the service is not running): token deleted, but revoking "
                f"it failed ({'; '.join(errors)}).")
    return (f"Logged out of '{name}' (standalone, the service is not running): token deleted and revoked at "
            "the authorization server.")


def standalone_status(config: Config, name: str | None) -> list[dict[str, Any]]:
    """What the store holds, shaped like the API's status objects (the fields the table shows)."""
    from mcpproxy.status import iso
    from mcpproxy.store import RecordError, TokenStore, store_path

    servers = [oauth_server(config, name)] if name else list(config.servers)
    rows: list[dict[str, Any]] = []
    store = TokenStore(config.data_dir) if store_path(config.data_dir).exists() else None
    try:
        for s in servers:
            rec: dict[str, Any] | None = None
            if store is not None and s.is_oauth:
                try:
                    rec = store.get_token(s.name)
                except RecordError:
                    rec = None
            has = bool(rec and rec.get("access_token"))
            expires = rec.get("expires_at") if rec and has else None
            status = "none" if not has else "expired" if expires is not None and expires <= time.time() \
                else "authenticated"
            rows.append({"name": s.name, "is_oauth": s.is_oauth, "enabled": s.enabled, "oauth_status": status,
                         "token_expires_at": iso(expires), "next_refresh_at": None,
                         "user_logged_out": bool(rec and rec.get("user_logged_out")),
                         "last_error": rec.get("failed") if rec else None, "action": None})
    finally:
        if store is not None:
            store.close()
    return rows


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


@auth.command("logout")
@config_options
@server_option("The server to log out of.")
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
