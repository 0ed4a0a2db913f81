"""A small client of the running service's REST API and SSE stream, for mcpproxy-ctl and `mcpproxy auth`."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from mcpproxy.config import (
    DEFAULT_DATA_DIR,
    DEFAULT_LISTEN,
    Config,
    ConfigError,
    default_config_path,
    load_config,
    parse_listen,
)

TIMEOUT = 30.0
#: Longer than the service's 15 s ping, so a live stream never times out.
SSE_READ_TIMEOUT = 40.0
START_HINT = "start it with `mcpproxy serve` (or `make run` in the repository, or "\
             "`systemctl --user start mcpproxy` when installed as a service)"


class ClientError(Exception):
    """Something the user has to fix; the message says what."""


class ServiceNotRunning(ClientError):
    def __init__(self, url: str) -> None:
        super().__init__(f"the mcpproxy service is not running at {url} (nothing answered); {START_HINT}; "
                         "if it runs at another address, pass --url or set MCPPROXY_URL")
        self.url = url


class ApiFailure(ClientError):
    """The service answered {"success": false, "error": …}."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass(frozen=True)
class SSEEvent:
    id: str | None
    event: str
    data: dict[str, Any]


@dataclass
class ServiceClient:
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    key_source: str = ""
    #: Where the service's own key is, as far as the client can tell: the file the key sent must match.
    key_home: str = "api_key in the service's config, else <data_dir>/api_key"
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = TIMEOUT) -> Any:
        """The envelope's `data`; ApiFailure with the API's sentence otherwise.

        A GET whose connection fails is sent once more on a new one: a kept-alive connection the service
        has just closed must not read as "not running". Nothing else is repeated (a POST may have acted)."""
        tries = 2 if method == "GET" else 1
        try:
            for left in range(tries - 1, -1, -1):
                try:
                    resp = self.session.request(method, self.base_url + path, json=body, headers=self.headers,
                                                timeout=timeout)
                    break
                except requests.ConnectionError:
                    if not left:
                        raise
        except requests.ConnectionError:
            raise ServiceNotRunning(self.base_url) from None
        except requests.Timeout:
            raise ClientError(f"the service at {self.base_url} did not answer {method} {path} within "
                              f"{timeout:.0f}s") from None
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "success" not in doc:
            raise ApiFailure(resp.status_code, f"{self.base_url} answered HTTP {resp.status_code} to {path}, "
                             "not an mcpproxy API answer — is something else listening there?")
        if resp.status_code == 401:
            raise self.wrong_key()
        if not doc.get("success"):
            raise ApiFailure(resp.status_code, str(doc.get("error", f"HTTP {resp.status_code}")), doc.get("kind"))
        return doc.get("data")

    def wrong_key(self) -> ApiFailure:
        """The one wrong-key sentence of every command: where the key came from, which file it must match."""
        sent = f"the API key from {self.key_source}" if self.key_source and self.api_key else "no API key (none found)"
        return ApiFailure(401, f"the service at {self.base_url} refused {sent}; the key must match the service's "
                          f"own: {self.key_home} (or pass --api-key / set MCPPROXY_API_KEY)", "unauthorized")

    def is_running(self) -> bool:
        try:
            self.session.get(self.base_url + "/healthz", timeout=3)
        except requests.RequestException:
            return False
        return True

    # ---- the REST API (docs/architecture.md "REST contract") ---------------------------------------

    def status(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/status"))

    def servers(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/servers"))

    def server(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/servers/{_q(name)}"))

    def login(self, name: str, open_browser: bool = False) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/v1/servers/{_q(name)}/login", {"open_browser": open_browser},
                                 timeout=60))

    def logout(self, name: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/v1/servers/{_q(name)}/logout", {}))

    def logout_all(self) -> dict[str, Any]:
        return dict(self.request("POST", "/api/v1/servers/logout", {}))

    def refresh(self, name: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/v1/servers/{_q(name)}/refresh", {}, timeout=90))

    def events(self, server: str | None = None, last_event_id: str | None = None) -> EventStream:
        """Opens /events; once this returns the service has subscribed us, so nothing later is missed.

        With last_event_id the service first replays what came after it (a reconnect loses nothing).
        """
        params = {"server": server} if server else {}
        headers = {**self.headers, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        try:
            resp = self.session.get(self.base_url + "/events", params=params, headers=headers, stream=True,
                                    timeout=(10, SSE_READ_TIMEOUT))
        except requests.ConnectionError:
            raise ServiceNotRunning(self.base_url) from None
        if resp.status_code == 401:
            resp.close()
            raise self.wrong_key()
        if resp.status_code != 200:
            try:
                message = str(resp.json().get("error"))
            except ValueError:
                message = f"HTTP {resp.status_code}"
            resp.close()
            raise ApiFailure(resp.status_code, message)
        return EventStream(resp)


class EventStream:
    """Iterates SSE frames (pings included); close() ends it from any thread."""

    def __init__(self, resp: requests.Response) -> None:
        self.resp = resp
        self.last_id: str | None = None  # the newest id seen, also from a data-less `id:` block

    def __iter__(self) -> Iterator[SSEEvent]:
        ev_id: str | None = None
        name = "message"
        data: list[str] = []
        for raw in self.resp.iter_lines(decode_unicode=True):
            if raw is None:
                continue
            if raw == "":
                if data:
                    try:
                        doc = json.loads("\n".join(data))
                    except ValueError:
                        doc = {"payload": {}, "raw": "\n".join(data)}
                    yield SSEEvent(ev_id, name, doc if isinstance(doc, dict) else {"payload": doc})
                ev_id, name, data = None, "message", []
            elif raw.startswith(":"):
                continue
            elif raw.startswith("id:"):
                ev_id = self.last_id = raw[3:].strip()
            elif raw.startswith("event:"):
                name = raw[6:].strip()
            elif raw.startswith("data:"):
                data.append(raw[5:].lstrip())

    def close(self) -> None:
        # A thread blocked reading holds the buffer's lock until the next ping (15 s); shutting the
        # socket down wakes it, so close() returns at once.
        sock = getattr(getattr(self.resp.raw, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.resp.close()


def _q(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def load_config_quietly(config_path: str | None) -> tuple[Config | None, Path, str | None]:
    """The config if it can be read, its path, and why not otherwise."""
    path = Path(config_path).expanduser() if config_path else default_config_path()
    try:
        return load_config(path), path, None
    except ConfigError as e:
        return e.partial, path, str(e)  # a broken edit still names the service's address and key


def base_url(url: str, where: str) -> str:
    """An http(s) base URL from what the user gave; `127.0.0.1:9801` means http://127.0.0.1:9801."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 — raises on a port that is not a number
    except ValueError:
        raise ClientError(f"{where}: {url!r} is not a URL such as http://127.0.0.1:8080") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"{where}: {url!r} is not a URL such as http://127.0.0.1:8080")
    return text.rstrip("/")


def locate(url: str | None = None, api_key: str | None = None, config_path: str | None = None,
           config: Config | None = None) -> ServiceClient:
    """Where the service is and its key: flags and MCPPROXY_URL/MCPPROXY_API_KEY first, then the runtime file
    of the running service of the data dir (mcpproxy/owner.py), then the config's listen address."""
    from mcpproxy.owner import owner_runtime
    from mcpproxy.service import api_key_path, read_api_key

    url = url or os.environ.get("MCPPROXY_URL")
    where = "MCPPROXY_URL" if url and url == os.environ.get("MCPPROXY_URL") else "--url"  # click reads it too
    if url:
        url = base_url(url, where)
    key = api_key or os.environ.get("MCPPROXY_API_KEY")
    source = "--api-key or MCPPROXY_API_KEY" if key else ""
    if config is None and (not url or not key):
        config, _path, _why = load_config_quietly(config_path)
    if not url:
        data_dir = config.data_dir if config is not None else Path(
            os.environ.get("MCPPROXY_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
        runtime = owner_runtime(data_dir)
        if runtime is not None:
            url = runtime.url
        elif config is not None:
            url = config.base_url
        else:
            try:
                host, port = parse_listen(os.environ.get("MCPPROXY_LISTEN") or DEFAULT_LISTEN, "MCPPROXY_LISTEN")
            except ConfigError as e:
                raise ClientError(str(e)) from None
            url = f"http://{host}:{port}"
    data_dir = config.data_dir if config is not None else Path(
        os.environ.get("MCPPROXY_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    env_key = os.environ.get("MCPPROXY_API_KEY")
    if config is not None and config.api_key and config.api_key != env_key:
        home = f"api_key in {config.path}"
    else:  # the key the service generated, unless it was started with a key of its own
        home = f"{api_key_path(data_dir)}" + (", or the MCPPROXY_API_KEY it was started with" if env_key else "")
    if not key:
        if config is not None and config.api_key:
            key, source = config.api_key, f"api_key in {config.path}"
        else:
            key = read_api_key(data_dir)
            source = str(api_key_path(data_dir)) if key else ""
    return ServiceClient(url.rstrip("/"), key, source, home)
