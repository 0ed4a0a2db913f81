"""`mcpproxy serve`: the actor system first (before any socket or thread), then the gateway."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from pathlib import Path
from typing import Any

from aiohttp import web

from mcpproxy.config import Config, ConfigError
from mcpproxy.store import ensure_private_dir

log = logging.getLogger("mcpproxy")

API_KEY_FILE = "api_key"


def api_key_path(data_dir: Path) -> Path:
    return data_dir / API_KEY_FILE


def read_api_key(data_dir: Path) -> str | None:
    try:
        return api_key_path(data_dir).read_text().strip() or None
    except OSError:
        return None


def resolve_api_key(config: Config) -> tuple[str, str]:
    """The configured key, else the one saved in the data dir, else a new one saved there (0600)."""
    if config.api_key:
        return config.api_key, "config"
    saved = read_api_key(config.data_dir)
    if saved:
        return saved, str(api_key_path(config.data_dir))
    key = secrets.token_urlsafe(32)
    path = api_key_path(config.data_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, f"{path} (new)"


def check_listen(config: Config) -> None:
    if not config.loopback_only and not config.api_key:
        raise ConfigError(
            f"listen: {config.listen} is not a loopback address; set api_key in the config (or MCPPROXY_API_KEY) "
            "before exposing the service to the network"
        )


def _notify_systemd(state: str) -> None:
    """sd_notify for Type=notify units; a no-op elsewhere."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(state.encode())


def serve(config: Config, log_conf: dict[str, Any] | None = None) -> int:
    from actors.system import start_actor_system, start_supervisor
    from mcpproxy.gateway.app import create_app
    from mcpproxy.gateway.bridge import ActorBridge

    check_listen(config)
    ensure_private_dir(config.data_dir)
    api_key, key_source = resolve_api_key(config)
    for problem in config.problems:
        log.error("config: %s", problem)

    asys = start_actor_system(config, log_conf)
    runner: web.AppRunner | None = None
    bridge: ActorBridge | None = None
    try:
        sup, started = start_supervisor(asys, config)
        if started.store_note:
            log.error("store: %s", started.store_note)
        bridge = ActorBridge(asys, sup, started.hub, started.actors)
        app = create_app(config, bridge, api_key)
        from mcpproxy.gateway.app import QuietAccessLogger

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if hasattr(signal, "SIGHUP"):
            loop.add_signal_handler(signal.SIGHUP, lambda: app.get("reload", lambda: None)())

        async def run() -> None:
            nonlocal runner
            runner = web.AppRunner(app, access_log_class=QuietAccessLogger,
                                   access_log=logging.getLogger("mcpproxy.access"), handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, config.listen_host, config.listen_port, reuse_address=True)
            await site.start()
            oauth = sum(1 for s in config.servers if s.is_oauth and s.enabled)
            log.info("mcpproxy ready on %s — %d servers (%d OAuth); Web UI %s/ ; API key from %s; config %s",
                     config.base_url, len(config.servers), oauth, config.base_url, key_source, config.path)
            _notify_systemd("READY=1")
            await stop.wait()
            log.info("stopping")
            _notify_systemd("STOPPING=1")
            await runner.cleanup()

        try:
            loop.run_until_complete(run())
        finally:
            loop.close()
        return 0
    finally:
        if bridge is not None:
            bridge.close()
        asys.shutdown()
