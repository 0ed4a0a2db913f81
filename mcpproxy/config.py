"""The config file (docs/architecture.md "Config"): load, validate, default, environment overrides.

A broken server entry is reported with its field path and left out; the other servers still run.
A broken file (not JSON, a wrong top-level field, a misspelt key) raises ConfigError with every problem
found, each naming the file and the field. Unknown keys are checked against the known-keys table.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcpproxy.loopback import is_loopback_host

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_DATA_DIR = "~/.mcpproxy"
DEFAULT_THRESHOLD = 0.8
THRESHOLD_RANGE = (0.5, 0.95)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: The known-keys table: the keys this version reads at each level of the file. A key not listed is reported
#: with its path — an error when it is close to a known one (a typo), else a warning — so a new setting is one
#: entry here.
KNOWN_KEYS = frozenset({"listen", "data_dir", "api_key", "oauth_refresh_threshold", "mcpServers", "tool_separator",
                        "key_file"})
SERVER_KEYS = frozenset({"name", "protocol", "enabled", "url", "oauth", "command", "args", "env", "working_dir"})
#: The settings a server's `oauth` object reads (docs/configuration.md "Server fields").
OAUTH_KEYS = frozenset({"client_id", "client_secret", "scopes", "extra_params", "resource", "redirect_uri",
                        "assume_pkce_s256"})
#: `oauth.resource`: send the RFC 8707 indicator discovery found (`auto`), none (`omit`), or a given URI.
RESOURCE_MODES = ("auto", "omit")
#: How alike an unknown key and a known one must be (difflib ratio) to be taken for a typo of it.
TYPO_CUTOFF = 0.75
#: Between a server's name and its tool's in the aggregated /mcp (`github__create_issue`).
DEFAULT_TOOL_SEPARATOR = "__"
#: A separator keeps the joined name a valid MCP tool name (letters, digits, `_`, `-`, `.`).
SEPARATOR_RE = re.compile(r"^[A-Za-z0-9_.-]{1,4}$")
#: Environment variable names a stdio server's `env` may set (POSIX portable names).
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ConfigError(ValueError):
    """The config cannot be used at all; the message names the file and the field, one line per problem."""

    def __init__(self, *problems: str, warnings: tuple[str, ...] = (), partial: Config | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems
        self.warnings = warnings  # found on the way, for `config validate`
        #: What could be read (listen, data_dir, api_key): enough for the CLI to find the running service.
        self.partial = partial


@dataclass(frozen=True)
class OAuthSettings:
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    extra_params: tuple[tuple[str, str], ...] = ()
    resource: str = "auto"  # "auto", "omit", or the URI to send as the RFC 8707 resource indicator
    redirect_uri: str | None = None  # a fixed loopback redirect URI the provider insists on (Slack)
    assume_pkce_s256: bool = False  # log in with S256 although the metadata does not advertise it (Entra)

    @property
    def resource_override(self) -> str | None:
        """An explicit resource indicator: `oauth.resource`, or the older `extra_params.resource`."""
        if self.resource not in RESOURCE_MODES:
            return self.resource
        return dict(self.extra_params).get("resource")

    def describe(self) -> dict[str, Any]:
        """The settings as the status object shows them: never the client secret."""
        return {"client_id": self.client_id, "client_secret_set": self.client_secret is not None,
                "resource": self.resource, "redirect_uri": self.redirect_uri,
                "assume_pkce_s256": self.assume_pkce_s256}


@dataclass(frozen=True)
class ServerConfig:
    name: str
    protocol: str
    enabled: bool = True
    url: str | None = None
    oauth: OAuthSettings | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    #: A stdio server's own environment, over the minimal inherited one (values may be secrets).
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    working_dir: str | None = None

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
    tool_separator: str = DEFAULT_TOOL_SEPARATOR
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

    # Asked on every request the gateway serves: worked out once per config (a reload makes a new one).
    @cached_property
    def loopback_only(self) -> bool:
        return is_loopback_host(self.listen_host)

    @cached_property
    def host_names(self) -> frozenset[str] | None:
        """Every `host:port` a request's Host (or Origin) may name; None when bound to every interface."""
        if self.listen_host in ("0.0.0.0", "::"):
            return None  # the API key is required there, and the name a client uses cannot be known
        port = self.listen_port
        names = {self.listen_host, "127.0.0.1", "localhost", "[::1]", "::1"}
        if ":" in self.listen_host:
            names.add(f"[{self.listen_host}]")
        return frozenset(f"{n}:{port}" for n in names)

    @cached_property
    def _by_name(self) -> dict[str, ServerConfig]:
        return {s.name: s for s in self.servers}

    def server(self, name: str) -> ServerConfig | None:
        return self._by_name.get(name)


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
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run `mcpproxy serve` once to create it)") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    return config_from_document(doc, path, listen=listen, data_dir=data_dir, env=env, text=text)


def config_from_document(
    doc: Any,
    path: Path | None,
    *,
    listen: str | None = None,
    data_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    text: str | None = None,
) -> Config:
    """Every problem of the file in one pass: the top-level ones raise ConfigError together with the servers'."""
    env = os.environ if env is None else env
    where = str(path) if path else "config"
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: the top level must be a JSON object")
    fatal: list[str] = []
    warnings: list[str] = []

    def check_keys(obj: dict[str, Any], known: frozenset[str], at: str) -> list[str]:
        """Reports the unknown keys of one object; returns the errors (a typo of a known key)."""
        errors: list[str] = []
        for key in sorted(str(k) for k in obj if k not in known):
            sentence = f"{where}: {_joined(at, key)}: {unknown_key(key, known)}{_line(text, key)}"
            (errors if typo_of(key, known) else warnings).append(sentence)
        return errors

    fatal += check_keys(doc, KNOWN_KEYS, "")

    host, port = "127.0.0.1", 0
    listen_value = listen or env.get("MCPPROXY_LISTEN") or doc.get("listen", DEFAULT_LISTEN)
    try:
        if not isinstance(listen_value, str):
            raise ConfigError(f"{where}: listen: expected a string such as \"127.0.0.1:8080\"")
        host, port = parse_listen(listen_value, f"{where}: listen")
    except ConfigError as e:
        fatal.append(str(e))

    dd = data_dir or env.get("MCPPROXY_DATA_DIR") or doc.get("data_dir", DEFAULT_DATA_DIR)
    if not isinstance(dd, str) or not dd:
        fatal.append(f"{where}: data_dir: expected a folder path")
        dd = DEFAULT_DATA_DIR

    api_key = env.get("MCPPROXY_API_KEY") or doc.get("api_key")
    if api_key is not None and (not isinstance(api_key, str) or len(api_key) < 16):
        fatal.append(f"{where}: api_key: expected a string of at least 16 characters")
        api_key = None

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
            fatal.append(
                f"{where}: oauth_refresh_threshold: expected a number from {lo} to {hi} (or 1.0 to turn "
                f"proactive refresh off), got {threshold!r}"
            )
            threshold = DEFAULT_THRESHOLD

    separator = doc.get("tool_separator", DEFAULT_TOOL_SEPARATOR)
    if not isinstance(separator, str) or not SEPARATOR_RE.match(separator):
        fatal.append(f"{where}: tool_separator: expected 1-4 letters, digits, '_', '-' or '.', got {separator!r}")
        separator = DEFAULT_TOOL_SEPARATOR

    misspelt = [k for k in doc if k not in KNOWN_KEYS and typo_of(str(k), KNOWN_KEYS) == "mcpServers"]
    # Under a misspelt key the servers are checked too, so one run reports their problems as well.
    servers_doc = doc.get("mcpServers", doc[misspelt[0]] if misspelt else [])
    if isinstance(servers_doc, dict):  # the Claude Desktop shape: {"name": {...}}
        servers_doc = [{"name": k, **v} if isinstance(v, dict) else v for k, v in servers_doc.items()]
    if not isinstance(servers_doc, list):
        fatal.append(f"{where}: mcpServers: expected a list of server objects")
        servers_doc = []

    servers: list[ServerConfig] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, entry in enumerate(servers_doc):
        at = f"mcpServers[{i}]"
        errors: list[str] = []
        if isinstance(entry, dict):
            name = entry.get("name")
            label = f"{at} ({name})" if isinstance(name, str) else at
            errors += check_keys(entry, SERVER_KEYS, label)
            if isinstance(entry.get("oauth"), dict):
                errors += check_keys(entry["oauth"], OAUTH_KEYS, f"{label}.oauth")
        try:
            server = _parse_server(entry, at)
            fixed = server.oauth.redirect_uri if server.oauth else None
            if fixed and urlsplit(fixed).port == port:
                raise ConfigError(f"{at} ({server.name}).oauth.redirect_uri: port {port} is the service's "
                                  "own; leave redirect_uri out to use its /oauth/callback, or pick another port")
            if server.name in seen:
                raise ConfigError(f"{at}.name: {server.name!r} is used twice")
        except ConfigError as e:
            errors.append(f"{where}: {e}")
        if errors:
            problems += errors  # a typo may change what the entry means ("oauht" would mean "discover")
            continue
        seen.add(server.name)
        servers.append(server)

    config = Config(
        listen_host=host,
        listen_port=port,
        data_dir=Path(dd).expanduser(),
        api_key=api_key,
        refresh_threshold=float(threshold),
        servers=tuple(servers),
        path=path,
        key_file=key_path,
        problems=tuple(problems),
        tool_separator=separator,
        warnings=tuple(warnings),
    )
    if fatal:
        partial = config if port else None
        raise ConfigError(*fatal, *problems, warnings=tuple(warnings), partial=partial)
    return config


def typo_of(key: str, known: frozenset[str]) -> str | None:
    """The known key `key` is most likely a typo of (another case, a letter more or less), else None."""
    folded = {k.lower(): k for k in known}
    if key.lower() in folded:
        return folded[key.lower()]
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=TYPO_CUTOFF)
    return close[0] if close else None


def unknown_key(key: str, known: frozenset[str]) -> str:
    """The sentence for an unknown key: the known key it is a typo of, else the keys known there."""
    guess = typo_of(key, known)
    if guess:
        return f"unknown setting; did you mean '{guess}'?"
    return f"unknown setting, ignored (known here: {', '.join(sorted(known))})"


def unknown_keys(doc: Mapping[str, Any]) -> list[str]:
    """Top-level keys this version does not read (a typo, or a removed setting such as actor_system)."""
    return sorted(str(key) for key in doc if key not in KNOWN_KEYS)


def _joined(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _line(text: str | None, key: str) -> str:
    """ " (line N)" when the key occurs exactly once in the file's text: the parser gives no positions of keys."""
    if not text:
        return ""
    found = [m.start() for m in re.finditer(r'"' + re.escape(json.dumps(key)[1:-1]) + r'"\s*:', text)]
    return f" (line {text.count(chr(10), 0, found[0]) + 1})" if len(found) == 1 else ""


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
        env = entry.get("env", {})
        if env is None:
            env = {}
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ConfigError(f"{at}.env: expected an object of string values")
        bad = next((k for k in env if not ENV_NAME_RE.match(k)), None)
        if bad is not None:
            raise ConfigError(f"{at}.env: {bad!r} is not an environment variable name")
        working_dir = entry.get("working_dir")
        if working_dir is not None and (not isinstance(working_dir, str) or not working_dir):
            raise ConfigError(f"{at}.working_dir: expected a folder path")
        return ServerConfig(name=name, protocol="stdio", enabled=enabled, command=command, args=tuple(args),
                            env=tuple(sorted(env.items())),
                            working_dir=str(Path(working_dir).expanduser()) if working_dir else None)

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
    resource = _parse_resource(raw.get("resource", "auto"), f"{at}.resource")
    if resource not in RESOURCE_MODES and "resource" in extra:
        raise ConfigError(f"{at}.resource: given twice (also as extra_params.resource); keep oauth.resource")
    assume = raw.get("assume_pkce_s256", False)
    if not isinstance(assume, bool):
        raise ConfigError(f"{at}.assume_pkce_s256: expected true or false")
    redirect_uri = raw.get("redirect_uri")
    if redirect_uri is not None:
        _check_redirect_uri(redirect_uri, f"{at}.redirect_uri")
    return OAuthSettings(
        client_id=client_id,
        client_secret=secret or None,
        scopes=tuple(scopes),
        extra_params=tuple(sorted(extra.items())),
        resource=resource,
        redirect_uri=redirect_uri,
        assume_pkce_s256=assume,
    )


def _parse_resource(value: Any, at: str) -> str:
    if value in RESOURCE_MODES:
        return str(value)
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc and not parts.fragment:
            return value  # RFC 8707 §2: an absolute URI without a fragment
    raise ConfigError(f"{at}: expected \"auto\", \"omit\" or an absolute http(s) URI without a fragment, "
                      f"got {value!r}")


def _check_redirect_uri(value: Any, at: str) -> None:
    """A fixed redirect URI is served by this service for the length of a login: loopback http only
    (RFC 8252 §7.3), with an explicit port and a path."""
    if not isinstance(value, str):
        raise ConfigError(f"{at}: expected a URL such as \"http://localhost:3118/callback\"")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{at}: {value!r} is not a valid URL") from None
    if parts.scheme != "http" or not parts.hostname or not is_loopback_host(parts.hostname):
        raise ConfigError(f"{at}: expected an http:// URL on a loopback host (localhost, 127.0.0.1, [::1]), "
                          f"got {value!r}")
    if port is None or port == 0:
        raise ConfigError(f"{at}: expected an explicit port, as in http://localhost:3118/callback")
    if not parts.path.startswith("/") or parts.query or parts.fragment:
        raise ConfigError(f"{at}: expected a path and no query or fragment, as in http://localhost:3118/callback")
