"""`mcpproxy config validate [PATH]` — checks a config file without starting anything."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mcpproxy.config import ConfigError, default_config_path, load_config


def validate(path: Path) -> tuple[list[str], list[str], str]:
    """(problems, warnings, summary): each problem names the file and the field."""
    from mcpproxy.service import check_listen

    try:
        config = load_config(path)
    except ConfigError as e:
        return list(e.problems), list(e.warnings), ""
    problems = list(config.problems)
    try:
        check_listen(config)
    except ConfigError as e:
        problems.append(f"{path}: {e}")
    warnings = list(config.warnings)
    oauth = sum(1 for s in config.servers if s.is_oauth)
    summary = (f"{path}: valid — {len(config.servers)} server(s), {oauth} with OAuth; listen {config.listen}; "
               f"data_dir {config.data_dir}")
    return problems, warnings, summary


@click.group()
def config() -> None:
    """Check the config file."""


@config.command("validate")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--config", "config_path", envvar="MCPPROXY_CONFIG", type=click.Path(dir_okay=False),
              help="Config file (default ~/.mcpproxy/mcp_config.json); PATH wins.")
def validate_cmd(path: str | None, config_path: str | None) -> None:
    """Check PATH (default: the config file) and print every problem; exit 1 when there is one."""
    given = path or config_path
    target = Path(given).expanduser() if given else default_config_path()
    problems, warnings, summary = validate(target)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        click.echo(f"{target}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(summary)
