"""`mcpproxy serve`: the actor system first (before any socket or thread), then the gateway."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mcpproxy import datakey, owner
from mcpproxy.config import Config, ConfigError, load_config
from mcpproxy.sealing import DataKey
from mcpproxy.store import ensure_private_dir

if TYPE_CHECKING:
    from mcpproxy.gateway.bridge import ActorBridge
    from mcpproxy.gateway.lease import Leases
    from mcpproxy.gateway.shared import ConfigRef

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


#: Where mcpproxy runs (README "Platforms"). Linux-only calls (prctl: the child subreaper, process names)
#: are no-ops elsewhere, so macOS starts the same way; Windows has no fork for the actors, so it is refused.
SUPPORTED_PLATFORMS = ("linux", "darwin")


def unsupported_platform(platform: str | None = None) -> str | None:
    """The sentence `serve` stops with on a platform mcpproxy does not run on; None where it does."""
    platform = platform or sys.platform
    if platform.startswith("linux") or platform == "darwin":
        return None
    if platform in ("win32", "cygwin"):
        return ("Windows is not supported: mcpproxy runs on Linux and macOS (its actors are forked processes); "
                "use WSL 2 on Windows")
    return None  # other POSIX systems (the BSDs): untested, but nothing there is known to stop it


def check_listen(config: Config) -> None:
    if not config.loopback_only and not config.api_key:
        raise ConfigError(
            f"listen: {config.listen} is not a loopback address; set api_key in the config (or MCPPROXY_API_KEY) "
            "before exposing the service to the network"
        )


def claim(config: Config) -> owner.Owned:
    """The data dir's lock and the bound port, before the actor system exists (docs/architecture.md
    "Start-up order"); owner.OwnedElsewhere or owner.PortBusy, one line each, when another holds them."""
    check_listen(config)
    try:
        ensure_private_dir(config.data_dir)
        return owner.own(config.data_dir, config.listen_host, config.listen_port, config.listen, config.base_url)
    except OSError as e:  # a data dir that cannot be written: one line, not a traceback
        raise ConfigError(f"data_dir {config.data_dir}: {e.strerror}") from None


def load_data_key(config: Config) -> DataKey:
    """The store's data key (mcpproxy/datakey.py), asked for before the actor system: the keyring's D-Bus
    connection is closed again before any actor is forked."""
    from mcpproxy.store import sealing_key_ids

    try:
        return datakey.load(config.data_dir, config.key_file, sealing_key_ids(config.data_dir))
    except datakey.DataKeyError as e:
        raise ConfigError(str(e)) from None


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


START_TIMEOUT = 60.0
START_PER_SERVER = 0.25
WATCH_EVERY = 1.0
RELOAD_TIMEOUT = 30.0


def _file_id(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class ConfigReloader:
    """Applies edits of the config file (polled every second) and SIGHUP without a restart.

    A broken edit is logged with its file and field and the running set is kept; listen, data_dir,
    and api_key only change on a restart.
    """

    def __init__(self, ref: ConfigRef, bridge: ActorBridge, overrides: dict[str, str | None],
                 leases: Leases | None = None) -> None:
        self.ref = ref
        self.bridge = bridge
        self.leases = leases
        self.overrides = overrides
        self.path = ref.current.path
        self.seen = _file_id(self.path) if self.path else None
        self.lock = asyncio.Lock()
        self.reloads = 0
        #: Called with each applied config, after the Supervisor took it (the gateway's MCP clients).
        self.on_applied: list[Callable[[Config], None]] = []

    async def reload(self, reason: str) -> bool:
        """True when a new config was applied."""
        if self.path is None:
            return False
        async with self.lock:
            self.seen = _file_id(self.path)
            old = self.ref.current
            try:
                new = load_config(self.path, listen=self.overrides.get("listen"),
                                  data_dir=self.overrides.get("data_dir"))
            except ConfigError as e:
                return self._refuse(reason, e.problems)
            broken = [p for p in new.problems if p not in old.problems]
            if broken:
                # A half-finished edit of one server must not stop its running actor.
                return self._refuse(reason, tuple(broken))
            if old.servers and not new.servers:
                # An empty or misspelt mcpServers is far likelier a mistake than a wish to stop everything.
                return self._refuse(reason, (
                    f"{self.path}: the edit leaves no servers (mcpServers is empty or missing); keeping the "
                    f"running {len(old.servers)} server(s) — restart mcpproxy to run with none",))
            self.ref.refused = ()
            new = self._keep_restart_only(old, new)
            if new == old:
                log.info("config reload (%s): nothing changed", reason)
                return False
            from actors.messages import Reload, Reloaded

            try:
                answer = await self.bridge.ask(self.bridge.supervisor, Reload(new), RELOAD_TIMEOUT)
            except Exception as e:  # noqa: BLE001 — a failed reload keeps the running set
                log.error("config reload (%s): %s; keeping the running configuration", reason, e)
                return False
            if not isinstance(answer, Reloaded):
                log.error("config reload (%s): the supervisor answered %s; keeping the running configuration",
                          reason, type(answer).__name__)
                return False
            self.bridge.take_actors(answer.actors, answer.actors_version)
            if self.leases is not None:
                for name in (*answer.added, *answer.removed, *answer.changed):
                    self.leases.cut(name)  # its URL, its enabling or its actor may have changed
            self.ref.current = new
            self.reloads += 1
            for hook in self.on_applied:
                hook(new)
            log.info("config reloaded (%s): added %s, removed %s, changed %s", reason,
                     ", ".join(answer.added) or "none", ", ".join(answer.removed) or "none",
                     ", ".join(answer.changed) or "none")
            return True

    def _refuse(self, reason: str, problems: tuple[str, ...]) -> bool:
        """Keeps the running set; the problems go to the log and to the status (`config_problems`) until fixed."""
        for problem in problems:
            log.error("config reload (%s): %s", reason, problem)
        log.error("config reload (%s): keeping the running configuration until %s is fixed", reason, self.path)
        self.ref.refused = problems
        return False

    @staticmethod
    def _keep_restart_only(old: Config, new: Config) -> Config:
        kept = []
        for field_name, label in (("listen", "listen"), ("data_dir", "data_dir"), ("api_key", "api_key"),
                                  ("key_file", "key_file")):
            if getattr(old, field_name) != getattr(new, field_name):
                kept.append(label)
        if kept:
            log.warning("config: %s changed; restart mcpproxy to apply (keeping the running value)", ", ".join(kept))
        return replace(new, listen_host=old.listen_host, listen_port=old.listen_port, data_dir=old.data_dir,
                       api_key=old.api_key, key_file=old.key_file)

    async def watch(self) -> None:
        assert self.path is not None
        missing_logged = False
        while True:
            await asyncio.sleep(WATCH_EVERY)
            now = _file_id(self.path)
            if now is None:
                if not missing_logged:
                    log.warning("config: %s is gone; keeping the running configuration", self.path)
                    missing_logged = True
                continue
            missing_logged = False
            if now != self.seen:
                await self.reload("file changed")

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self.watch()) if self.path else None
        yield
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


#: Descriptors each actor process costs the parent that routes for it (its queue's pipe ends and semaphore,
#: measured with multiprocQueueBase: about 4), plus the gateway's sockets and LMDB's files.
FDS_PER_SERVER = 4
FDS_BASE = 1024


def raise_open_files(servers: int) -> None:
    """Raises the soft RLIMIT_NOFILE to the hard limit when it is below it (1,000 servers need ~4,000
    descriptors in the Supervisor alone; a 1,024 soft limit is common), before anything forks, and says so."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FDS_BASE + FDS_PER_SERVER * servers
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.info("raised the open-file limit from %d to %d (the hard limit)", soft, hard)
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-file limit from %d: %s", soft, e)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("the open-file limit is %d, and %d servers may need about %d: raise it (ulimit -n, or "
                    "LimitNOFILE= in the service unit)", soft, servers, wanted)


def _announce(config: Config, api_key: str) -> None:
    """The user's own terminal gets the Web UI URL with its key; a log (journal, file) never does."""
    if sys.stderr.isatty():
        print(f"\n  Web UI:  {config.base_url}/?apikey={api_key}\n  Config:  {config.path}\n", file=sys.stderr,
              flush=True)


def serve(config: Config, log_conf: dict[str, Any] | None = None,
          overrides: dict[str, str | None] | None = None, owned: owner.Owned | None = None) -> int:
    owned = owned or claim(config)
    try:
        return _serve(config, log_conf, overrides, owned)
    finally:
        owned.close()


#: "asyncio" runs the gateway on Python's own event loop (to tell a uvloop fault from ours); "uvloop" requires it.
EVENT_LOOP_ENV = "MCPPROXY_EVENT_LOOP"


def event_loop_kind() -> str:
    """The gateway's loop: uvloop (a dependency) — a proxied MCP call costs the gateway about a sixth less CPU
    on it (docs/architecture.md "Pass-through") — else asyncio's own, where a packager left uvloop out. Asked
    before the actors fork; uvloop is imported after, as the gateway is (they never need it)."""
    wanted = os.environ.get(EVENT_LOOP_ENV, "").strip().lower()
    if wanted not in ("", "uvloop", "asyncio"):
        raise ConfigError(f"{EVENT_LOOP_ENV}={wanted[:40]!r}: use 'uvloop' or 'asyncio', or leave it unset")
    installed = importlib.util.find_spec("uvloop") is not None
    if wanted == "uvloop" and not installed:
        raise ConfigError(f"{EVENT_LOOP_ENV}=uvloop, but uvloop is not installed (pip install uvloop)")
    return wanted or ("uvloop" if installed else "asyncio")


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _serve(config: Config, log_conf: dict[str, Any] | None, overrides: dict[str, str | None] | None,
           owned: owner.Owned) -> int:
    from actors.system import start_actor_system, start_supervisor

    loop_kind = event_loop_kind()
    api_key, key_source = resolve_api_key(config)
    data_key = load_data_key(config)
    for problem in config.problems:
        log.error("config: %s", problem)
    for warning in config.warnings:
        log.warning("config: %s", warning)

    oauth_servers = sum(1 for s in config.servers if s.is_oauth and s.enabled)
    raise_open_files(oauth_servers)
    asys = start_actor_system(config, log_conf)
    # The gateway (and the MCP SDK under it) is imported after the actors are forked: they never need it.
    from mcpproxy.gateway.app import QuietAccessLogger, create_app
    from mcpproxy.gateway.bridge import ActorBridge
    from mcpproxy.gateway.lease import LEASES
    from mcpproxy.gateway.shared import AT_REST, CONFIG
    from mcpproxy.gateway.upstreams import apply_config

    runner: web.AppRunner | None = None
    bridge: ActorBridge | None = None
    try:
        # The Supervisor answers once it has forked every actor: ~12 ms each on a quiet machine, far more on a busy one.
        sup, started = start_supervisor(asys, config, data_key=data_key,
                                        timeout=START_TIMEOUT + START_PER_SERVER * oauth_servers)
        if started.store_note:
            log.error("store: %s", started.store_note)
        bridge = ActorBridge(asys, sup, started.hub, started.actors, started.actors_version)
        app = create_app(config, bridge, api_key)
        app[AT_REST] = data_key.source
        reloader = ConfigReloader(app[CONFIG], bridge, overrides or {}, app[LEASES])
        reloader.on_applied.append(lambda new: apply_config(app, new))
        app.cleanup_ctx.append(reloader.context)

        loop = new_event_loop(loop_kind)
        asyncio.set_event_loop(loop)
        log.debug("event loop: %s", loop_kind)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if hasattr(signal, "SIGHUP"):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reloader.reload("SIGHUP")))

        async def run() -> None:
            nonlocal runner
            runner = web.AppRunner(app, access_log_class=QuietAccessLogger,
                                   access_log=logging.getLogger("mcpproxy.access"), handle_signals=False)
            await runner.setup()
            site = web.SockSite(runner, owned.sock)  # bound before the actors started (owner.claim)
            await site.start()
            log.info("mcpproxy ready on %s — %d servers (%d OAuth); Web UI %s/ ; API key from %s; config %s; "
                     "tokens sealed at rest with the data key from %s", config.base_url, len(config.servers), oauth_servers,
                     config.base_url, key_source, config.path, data_key.where)
            _notify_systemd("READY=1")
            _announce(config, api_key)
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
            drain(bridge)
            bridge.close()
        asys.shutdown()
        reap_children(SHUTDOWN_WAIT)


SHUTDOWN_WAIT = 60.0
#: How long a clean stop waits for refreshes and code exchanges in flight: an authorization server may
#: already have rotated the refresh token the store holds, so their answers must be persisted. Long enough
#: for a slow token endpoint that answers; a hanging one (whose answer would be a failure) does not hold a
#: stop longer than this.
DRAIN_TIMEOUT = 3.0


def drain(bridge: ActorBridge) -> None:
    """Before the actor system stops: no new refresh starts, and those in flight are answered and stored."""
    from actors.messages import Drain, Drained
    from mcpproxy.gateway.bridge import ActorUnavailable

    try:
        answer = bridge.ask_sync(bridge.supervisor, Drain(DRAIN_TIMEOUT), DRAIN_TIMEOUT + 5.0)
    except ActorUnavailable as e:
        log.warning("stopping without waiting for the refreshes in flight: %s", e)
        return
    except KeyboardInterrupt:  # a second Ctrl-C: stop now
        log.warning("stopping without waiting for the refreshes in flight (interrupted)")
        return
    if isinstance(answer, Drained) and answer.waiting:
        log.warning("stopping after %.0f s with a refresh or login of %s still in flight; its new tokens may be "
                    "lost", DRAIN_TIMEOUT, ", ".join(answer.waiting))


def reap_children(timeout: float) -> None:
    """Thespian's shutdown returns before every actor process has gone (measured: hundreds still exiting at 1,000
    servers); as their subreaper we wait for them, so `serve` leaves no process behind."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # none left
        if pid == 0:
            if time.monotonic() >= deadline:
                log.warning("actor processes were still running %.0f s after the actor system stopped", timeout)
                return
            time.sleep(0.02)
