"""The config file (docs/architecture.md "Config"): load, validate, default, environment overrides.

A broken server entry is reported with its field path and left out; the other servers still run.
A broken file (not JSON, wrong top-level types) raises ConfigError naming the file and the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcpproxy.loopback import is_loopback_host

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_DATA_DIR = "~/.mcpproxy"
DEFAULT_THRESHOLD = 0.8
THRESHOLD_RANGE = (0.5, 0.95)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: The top-level settings this version reads; any other key is reported as unknown and ignored.
KNOWN_KEYS = frozenset({"listen", "data_dir", "api_key", "oauth_refresh_threshold", "mcpServers", "key_file"})


class ConfigError(ValueError):
    """The config cannot be used at all; the message names the file and the field."""


@dataclass(frozen=True)
class OAuthSettings:
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    extra_params: tuple[tuple[str, str], ...] = ()

    @property
    def resource_override(self) -> str | None:
        return dict(self.extra_params).get("resource")


@dataclass(frozen=True)
class ServerConfig:
    name: str
    protocol: str
    enabled: bool = True
    url: str | None = None
    oauth: OAuthSettings | None = None
    command: str | None = None
    args: tuple[str, ...] = ()

    @property
    def is_oauth(self) -> bool:
        return self.protocol != "stdio" and self.oauth is not None


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    data_dir: Path
    api_key: str | None = field(repr=False)
    refresh_threshold: float
    servers: tuple[ServerConfig, ...]
    path: Path | None = None
    #: The data key's file when no OS keyring answers (docs/security.md); None: the default place.
    key_file: Path | None = None
    problems: tuple[str, ...] = ()
    #: Unknown top-level keys, one sentence each; not compared, so a reload ignores them.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def listen(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"

    @property
    def base_url(self) -> str:
        host = self.listen_host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.listen_port}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/oauth/callback"

    @property
    def loopback_only(self) -> bool:
        return is_loopback_host(self.listen_host)

    def server(self, name: str) -> ServerConfig | None:
        return next((s for s in self.servers if s.name == name), None)


def default_config_path() -> Path:
    env = os.environ.get("MCPPROXY_CONFIG")
    return Path(env).expanduser() if env else Path(DEFAULT_DATA_DIR).expanduser() / "mcp_config.json"


def default_config_document() -> dict[str, Any]:
    return {
        "listen": DEFAULT_LISTEN,
        "data_dir": DEFAULT_DATA_DIR,
        "oauth_refresh_threshold": DEFAULT_THRESHOLD,
        "mcpServers": [],
    }


def write_default_config(path: Path) -> None:
    """Creates a config with no servers; never overwrites an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(default_config_document(), f, indent=2)
        f.write("\n")


def parse_listen(value: str, where: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([^\]]*?)\]?:(\d{1,5})", value.strip())
    if not m or not m.group(1):
        raise ConfigError(f"{where}: expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    port = int(m.group(2))
    if port > 65535:
        raise ConfigError(f"{where}: port {port} is out of range")
    return m.group(1), port


def load_config(
    path: Path | None = None,
    *,
    listen: str | None = None,
    data_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Reads the config file; CLI flags beat environment variables, which beat the file."""
    env = os.environ if env is None else env
    path = (path or default_config_path()).expanduser()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run `mcpproxy serve` once to create it)") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    return config_from_document(doc, path, listen=listen, data_dir=data_dir, env=env)


def config_from_document(
    doc: Any,
    path: Path | None,
    *,
    listen: str | None = None,
    data_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    env = os.environ if env is None else env
    where = str(path) if path else "config"
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: the top level must be a JSON object")

    listen_value = listen or env.get("MCPPROXY_LISTEN") or doc.get("listen", DEFAULT_LISTEN)
    if not isinstance(listen_value, str):
        raise ConfigError(f"{where}: listen: expected a string such as \"127.0.0.1:8080\"")
    host, port = parse_listen(listen_value, f"{where}: listen")

    dd = data_dir or env.get("MCPPROXY_DATA_DIR") or doc.get("data_dir", DEFAULT_DATA_DIR)
    if not isinstance(dd, str) or not dd:
        raise ConfigError(f"{where}: data_dir: expected a folder path")

    api_key = env.get("MCPPROXY_API_KEY") or doc.get("api_key")
    if api_key is not None and (not isinstance(api_key, str) or len(api_key) < 16):
        raise ConfigError(f"{where}: api_key: expected a string of at least 16 characters")

    key_file = doc.get("key_file")
    if key_file is not None and (not isinstance(key_file, str) or not key_file):
        raise ConfigError(f"{where}: key_file: expected a file path")
    key_path = Path(key_file).expanduser() if key_file else None
    if key_path is not None and (Path(dd).expanduser() / "store") in (key_path.parent, *key_path.parents):
        raise ConfigError(f"{where}: key_file: must be outside the store folder {Path(dd).expanduser() / 'store'}")

    threshold = doc.get("oauth_refresh_threshold", DEFAULT_THRESHOLD)
    lo, hi = THRESHOLD_RANGE
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not lo <= threshold <= hi:
        # 1.0 is allowed as "no proactive refresh" (the pass-through's reactive path still refreshes).
        if threshold != 1.0:
            raise ConfigError(
                f"{where}: oauth_refresh_threshold: expected a number from {lo} to {hi} (or 1.0 to turn "
                f"proactive refresh off), got {threshold!r}"
            )

    servers_doc = doc.get("mcpServers", [])
    if isinstance(servers_doc, dict):  # the Claude Desktop shape: {"name": {...}}
        servers_doc = [{"name": k, **v} if isinstance(v, dict) else v for k, v in servers_doc.items()]
    if not isinstance(servers_doc, list):
        raise ConfigError(f"{where}: mcpServers: expected a list of server objects")

    servers: list[ServerConfig] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, entry in enumerate(servers_doc):
        try:
            server = _parse_server(entry, f"mcpServers[{i}]")
            if server.name in seen:
                raise ConfigError(f"mcpServers[{i}].name: {server.name!r} is used twice")
            seen.add(server.name)
            servers.append(server)
        except ConfigError as e:
            problems.append(f"{where}: {e}")

    return Config(
        listen_host=host,
        listen_port=port,
        data_dir=Path(dd).expanduser(),
        api_key=api_key,
        refresh_threshold=float(threshold),
        servers=tuple(servers),
        path=path,
        key_file=key_path,
        problems=tuple(problems),
        warnings=tuple(f"{where}: {key}: unknown setting, ignored" for key in unknown_keys(doc)),
    )


def unknown_keys(doc: Mapping[str, Any]) -> list[str]:
    """Top-level keys this version does not read (a typo, or a removed setting such as actor_system)."""
    return sorted(str(key) for key in doc if key not in KNOWN_KEYS)


def _parse_server(entry: Any, at: str) -> ServerConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{at}: expected an object")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"{at}.name: expected 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {name!r}"
        )
    at = f"{at} ({name})"
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{at}.enabled: expected true or false")
    protocol = entry.get("protocol")
    url = entry.get("url")
    command = entry.get("command")
    if protocol is None:
        protocol = "stdio" if command and not url else "http"
    if protocol not in ("http", "streamable-http", "sse", "stdio"):
        raise ConfigError(f"{at}.protocol: expected http, streamable-http, sse or stdio, got {protocol!r}")
    if protocol == "stdio":
        if not isinstance(command, str) or not command:
            raise ConfigError(f"{at}.command: a stdio server needs a command")
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError(f"{at}.args: expected a list of strings")
        return ServerConfig(name=name, protocol="stdio", enabled=enabled, command=command, args=tuple(args))

    if not isinstance(url, str) or not url:
        raise ConfigError(f"{at}.url: an HTTP server needs a url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{at}.url: expected an http:// or https:// URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(f"{at}.url: plain http:// is only allowed for loopback hosts; use https://")

    oauth: OAuthSettings | None
    raw = entry.get("oauth", {})
    if raw is None:
        oauth = None
    elif not isinstance(raw, dict):
        raise ConfigError(f"{at}.oauth: expected an object, {{}} to discover, or null for no OAuth")
    else:
        oauth = _parse_oauth(raw, f"{at}.oauth")
    return ServerConfig(name=name, protocol=protocol, enabled=enabled, url=url, oauth=oauth)


def _parse_oauth(raw: dict[str, Any], at: str) -> OAuthSettings:
    client_id = raw.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise ConfigError(f"{at}.client_id: expected a non-empty string")
    secret = raw.get("client_secret")
    if secret is not None and not isinstance(secret, str):
        raise ConfigError(f"{at}.client_secret: expected a string")
    if secret and not client_id:
        raise ConfigError(f"{at}.client_secret: given without a client_id")
    scopes = raw.get("scopes", [])
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise ConfigError(f"{at}.scopes: expected a list of scope strings")
    extra = raw.get("extra_params", {})
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ConfigError(f"{at}.extra_params: expected an object of string values")
    return OAuthSettings(
        client_id=client_id,
        client_secret=secret or None,
        scopes=tuple(scopes),
        extra_params=tuple(sorted(extra.items())),
    )
