"""`mcpproxy service install|uninstall|status` — a systemd user unit (Linux) or a launchd agent (macOS).

The files are generated for either platform regardless of the host (`--platform`, hidden), so both
are tested everywhere. Installing writes the file and prints the commands that enable it; it runs
nothing. Uninstalling stops the service first when the service manager is there, then removes the file.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import click

from mcpproxy.config import (
    DEFAULT_DATA_DIR,
    ConfigError,
    config_from_document,
    default_config_document,
    default_config_path,
    load_config,
    write_default_config,
)

UNIT_NAME = "mcpproxy.service"
LAUNCHD_LABEL = "dev.mcpproxy"
PLATFORMS = ("linux", "darwin")


def host_platform() -> str | None:
    """The service manager this machine has: systemd on Linux, launchd on macOS; None elsewhere (Windows)."""
    if sys.platform == "darwin":
        return "darwin"
    return "linux" if sys.platform.startswith("linux") else None


def target_platform(chosen: str | None) -> str:
    """--platform, else the host's; a clear refusal on a host with neither systemd nor launchd."""
    platform = chosen or host_platform()
    if platform is None:
        raise click.ClickException(f"no user service for this platform ({sys.platform}): mcpproxy runs as a "
                                   "systemd user unit on Linux and a launchd agent on macOS (README \"Platforms\")")
    return platform


def executable() -> str:
    """The absolute path of the `mcpproxy` script next to this Python (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "mcpproxy"
    if beside.exists():
        return os.path.abspath(beside)
    found = shutil.which("mcpproxy")
    if found:
        return os.path.abspath(found)
    return os.path.abspath(sys.argv[0])


def unit_path(platform: str, home: Path | None = None) -> Path:
    home = home or Path.home()
    if platform == "darwin":
        return home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    config_home = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home and home == Path.home() else home / ".config"
    return base / "systemd" / "user" / UNIT_NAME


def _systemd_quote(arg: str) -> str:
    """An ExecStart word: "%" is a specifier, so doubled; quoted when it holds a space or a quote."""
    arg = arg.replace("%", "%%")
    if any(c in arg for c in " \t\"'\\;$"):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def serve_args(exe: str, config_path: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The service's command line: the config, and the --data-dir/--listen given at install (they are not in it)."""
    return [exe, "serve", "--config", str(config_path), *extra]


def systemd_unit(exe: str, config_path: Path, extra: tuple[str, ...] = ()) -> str:
    exec_start = " ".join(_systemd_quote(a) for a in serve_args(exe, config_path, extra))
    return f"""[Unit]
Description=mcpproxy - keeps OAuth-protected MCP servers logged in

[Service]
# serve sends READY=1 once the gateway answers and the actors are up.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# `systemctl --user reload mcpproxy` re-reads the config without a restart (SIGHUP).
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
# SIGTERM to serve alone: it lets the refreshes in flight finish and stores their rotated tokens, then
# stops every actor itself. Whatever is left once it has exited gets SIGKILL (the actors share its cgroup).
KillMode=mixed
TimeoutStopSec=30
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=default.target
"""


def launchd_plist(exe: str, config_path: Path, data_dir: Path, extra: tuple[str, ...] = ()) -> bytes:
    # launchd has no reload verb: `kill -HUP $(pgrep -f "mcpproxy serve")` or an edit of the file (watched) does it.
    doc = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": serve_args(exe, config_path, extra),
        "RunAtLoad": True,
        # Restarted when it fails; a clean stop (launchctl bootout, SIGTERM) stays stopped.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "ProcessType": "Background",
        "WorkingDirectory": str(data_dir),
        "StandardOutPath": str(data_dir / "launchd.out.log"),
        "StandardErrorPath": str(data_dir / "launchd.err.log"),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
    }
    return plistlib.dumps(doc)


def render(platform: str, exe: str, config_path: Path, data_dir: Path, extra: tuple[str, ...] = ()) -> bytes:
    if platform == "darwin":
        return launchd_plist(exe, config_path, data_dir, extra)
    return systemd_unit(exe, config_path, extra).encode()


def enable_commands(platform: str, path: Path) -> list[str]:
    if platform == "darwin":
        return [f"launchctl bootstrap gui/$(id -u) {path}", f"launchctl kickstart gui/$(id -u)/{LAUNCHD_LABEL}"]
    return ["systemctl --user daemon-reload", f"systemctl --user enable --now {UNIT_NAME}",
            "loginctl enable-linger $USER   # optional: keep it running while you are logged out"]


def stop_commands(platform: str, path: Path) -> list[list[str]]:
    if platform == "darwin":
        return [["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]]
    return [["systemctl", "--user", "disable", "--now", UNIT_NAME]]


def manager_available(platform: str) -> bool:
    """Only drive the real service manager for the host's own platform."""
    tool = "launchctl" if platform == "darwin" else "systemctl"
    return platform == host_platform() and shutil.which(tool) is not None


def _resolve(config_path: str | None, data_dir: str | None, listen: str | None = None
             ) -> tuple[Path, Path, tuple[str, ...]]:
    """The config file, the data dir, and the serve flags the unit must carry: --data-dir and --listen given here
    (flag or environment) reach the service only through its command line. A listen the service would refuse
    (a non-loopback address without an api_key in the config file) is refused now, saying why."""
    path = (Path(config_path).expanduser() if config_path else default_config_path()).absolute()
    extra: list[str] = []
    if data_dir:
        extra += ["--data-dir", str(Path(data_dir).expanduser().absolute())]
    if listen:
        extra += ["--listen", listen.strip()]
    if path.exists():
        try:
            # MCPPROXY_API_KEY is not carried into the unit: only the file's api_key counts for the check.
            env = {k: v for k, v in os.environ.items() if k != "MCPPROXY_API_KEY"}
            config = load_config(path, data_dir=data_dir, listen=listen, env=env)
        except ConfigError as e:
            raise click.ClickException("; ".join(e.problems)) from None
        dd = config.data_dir
    else:
        try:
            config = config_from_document(default_config_document(), path, data_dir=data_dir, listen=listen, env={})
        except ConfigError as e:
            raise click.ClickException("; ".join(e.problems)) from None
        dd = Path(data_dir or DEFAULT_DATA_DIR).expanduser()
    if not config.loopback_only and not config.api_key:
        raise click.ClickException(
            f"--listen {config.listen} is not a loopback address and {path} has no api_key: the service would "
            "refuse to start (MCPPROXY_API_KEY is not carried into the unit); set api_key in the config first")
    return path, dd.absolute(), tuple(extra)


def _options(f):  # type: ignore[no-untyped-def]
    f = click.option("--listen", envvar="MCPPROXY_LISTEN",
                     help="HOST:PORT the service listens on, when not the config's.")(f)
    f = click.option("--platform", type=click.Choice(PLATFORMS), default=None, hidden=True)(f)
    f = click.option("--data-dir", envvar="MCPPROXY_DATA_DIR", type=click.Path(file_okay=False),
                     help="Data folder (tokens, API key, logs).")(f)
    f = click.option("--config", "config_path", envvar="MCPPROXY_CONFIG", type=click.Path(dir_okay=False),
                     help="Config file the service will use (default ~/.mcpproxy/mcp_config.json).")(f)
    return f


@click.group()
def service() -> None:
    """Run mcpproxy as a user service (systemd on Linux, launchd on macOS)."""


@service.command()
@_options
@click.option("--dry-run", is_flag=True, help="Print the file instead of writing it.")
def install(config_path: str | None, data_dir: str | None, platform: str | None, listen: str | None,
            dry_run: bool) -> None:
    """Write the user unit (or agent) and print the commands that enable it."""
    platform = target_platform(platform)
    cfg, dd, extra = _resolve(config_path, data_dir, listen)
    target = unit_path(platform)
    content = render(platform, executable(), cfg, dd, extra)
    if dry_run:
        click.echo(f"# would write {target}", err=True)
        click.echo(content.decode(), nl=False)
        return
    if not cfg.exists():
        write_default_config(cfg)
        click.echo(f"Created {cfg} (no servers yet).")
    dd.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.parent.mkdir(parents=True, exist_ok=True)
    existed = target.exists()
    target.write_bytes(content)
    click.echo(f"{'Updated' if existed else 'Wrote'} {target}")
    click.echo("Enable and start it with:")
    for cmd in enable_commands(platform, target):
        click.echo(f"  {cmd}")


@service.command()
@_options
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
def uninstall(config_path: str | None, data_dir: str | None, platform: str | None, listen: str | None,
              dry_run: bool) -> None:
    """Stop the service and remove its unit (or agent) file. Tokens and config are kept."""
    platform = target_platform(platform)
    target = unit_path(platform)
    stops = stop_commands(platform, target)
    if dry_run:
        for cmd in stops:
            click.echo(f"would run: {' '.join(cmd)}")
        click.echo(f"would remove: {target}")
        return
    if not target.exists():
        click.echo(f"Not installed ({target} does not exist).")
        return
    if manager_available(platform):
        for cmd in stops:
            subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    else:
        click.echo("Stop it first if it runs: " + "; ".join(" ".join(c) for c in stops))
    target.unlink()
    if platform == "linux" and manager_available(platform):
        subprocess.run(["systemctl", "--user", "daemon-reload"], check=False, timeout=30)
    click.echo(f"Removed {target}. Your config and tokens are kept.")


@service.command("status")
@_options
def status_cmd(config_path: str | None, data_dir: str | None, platform: str | None, listen: str | None) -> None:
    """Whether the unit is installed, what the service manager says, and whether the service answers."""
    from mcpproxy.cli.client import locate

    platform = target_platform(platform)
    target = unit_path(platform)
    installed = target.exists()
    click.echo(f"unit file: {target} ({'installed' if installed else 'not installed'})")
    if installed and manager_available(platform):
        cmd = (["launchctl", "print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"] if platform == "darwin"
               else ["systemctl", "--user", "is-active", UNIT_NAME])
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            state = (out.stdout.strip().splitlines() or [out.stderr.strip() or "unknown"])[0]
        except (OSError, subprocess.TimeoutExpired) as e:
            state = f"could not ask: {e}"
        click.echo(f"service manager: {state}")
    client = locate(config_path=config_path)
    click.echo(f"service: {'answering' if client.is_running() else 'not answering'} at {client.base_url}")
    if not installed:
        click.echo("Install it with: mcpproxy service install")
