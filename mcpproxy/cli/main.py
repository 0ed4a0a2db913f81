"""`mcpproxy` — the service and its local commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mcpproxy import __version__
from mcpproxy.cli.options import config_options
from mcpproxy.config import ConfigError, default_config_path, load_config, write_default_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcpproxy")
def cli() -> None:
    """mcpproxy keeps every OAuth-protected MCP server logged in."""


@cli.command()
@config_options
@click.option("--listen", envvar="MCPPROXY_LISTEN", help="HOST:PORT to listen on (default 127.0.0.1:8080).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]))
def serve(config_path: str | None, data_dir: str | None, listen: str | None, log_level: str,
          log_format: str) -> None:
    """Run the service: keep tokens fresh, serve the API, the Web UI and the pass-through."""
    from mcpproxy.logs import setup_logging
    from mcpproxy.service import serve as run_service
    from mcpproxy.service import unsupported_platform

    refused = unsupported_platform()
    if refused:
        click.echo(f"mcpproxy: {refused}", err=True)
        sys.exit(1)
    path = Path(config_path).expanduser() if config_path else default_config_path()
    created = False
    if not path.exists():
        write_default_config(path)
        created = True
    try:
        config = load_config(path, listen=listen, data_dir=data_dir)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(f"mcpproxy: {problem}", err=True)
        sys.exit(2)
    os.umask(0o077)  # everything the service writes (store, key, logs and their rotations) is the user's alone
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    from mcpproxy.owner import OwnedElsewhere, PortBusy
    from mcpproxy.service import claim

    try:
        owned = claim(config)  # before the log file is opened: a second instance touches nothing
    except (OwnedElsewhere, PortBusy) as e:
        click.echo(f"mcpproxy: {e}", err=True)
        sys.exit(2)
    except ConfigError as e:
        click.echo(f"mcpproxy: {e}", err=True)
        sys.exit(2)
    log_conf = setup_logging(log_level, log_format, config.data_dir / "mcpproxy.log")
    if created:
        click.echo(f"mcpproxy: created {path} (no servers yet; add them under mcpServers)", err=True)
    try:
        sys.exit(run_service(config, log_conf, overrides={"listen": listen, "data_dir": data_dir}, owned=owned))
    except ConfigError as e:
        click.echo(f"mcpproxy: {e}", err=True)
        sys.exit(2)


def _register() -> None:
    from mcpproxy.cli.auth import auth
    from mcpproxy.cli.config_cmd import config
    from mcpproxy.cli.service_cmd import service

    cli.add_command(auth)
    cli.add_command(service)
    cli.add_command(config)


_register()


def main() -> None:
    cli(prog_name="mcpproxy")


if __name__ == "__main__":
    main()
