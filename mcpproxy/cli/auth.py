"""`mcpproxy auth status|login|logout` — the form users of the Go mcpproxy know.

Through the running service when there is one. When none runs, `logout` clears the stored token
itself (a tombstone like the TokenActor's own logout) and revokes it when it can; so it does for a
disabled server, which has no session in the service. `logout --all` covers the enabled servers and
says what it left of each disabled one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

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


# ---- logout ----------------------------------------------------------------------------------------

#: The note standalone_logout puts in its sentence; for a disabled server the service may well be running.
STANDALONE_NOTE = "standalone, the service is not running"
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
    click.echo(standalone_logout(config, name).replace(STANDALONE_NOTE, DISABLED_NOTE))


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
