"""Options the `mcpproxy` and `mcpproxy-ctl` commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def config_options(f: F) -> F:
    """--config and --data-dir (or MCPPROXY_CONFIG, MCPPROXY_DATA_DIR) (docs/architecture.md "Config")."""
    f = click.option("--data-dir", envvar="MCPPROXY_DATA_DIR", type=click.Path(file_okay=False),
                     help="Data folder (tokens, API key, logs).")(f)
    f = click.option("--config", "config_path", envvar="MCPPROXY_CONFIG", type=click.Path(dir_okay=False),
                     help="Config file (default ~/.mcpproxy/mcp_config.json).")(f)
    return f


def server_option(help_text: str, *, dest: str = "name", required: bool = False) -> Callable[[F], F]:
    """`--server NAME`, also `-s NAME` as users of the Go mcpproxy type it: the one definition every command uses."""
    return click.option("-s", "--server", dest, metavar="NAME", required=required, help=help_text)
