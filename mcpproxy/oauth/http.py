"""HTTP plumbing for the OAuth functions: one session shape, URL checks, failures mapped to OAuthError."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit

import requests
from requests.adapters import HTTPAdapter

from mcpproxy import __version__
from mcpproxy.loopback import is_loopback_host
from mcpproxy.oauth.errors import (
    CONFIRM_CODES,
    OAuthError,
    classify_status,
    clean_server_text,
    parse_retry_after,
)

# requests-oauthlib and oauthlib log tokens at DEBUG (docs/architecture.md "Processes"); the
# service's logging config (mcpproxy/logs.py) holds them at WARNING too, whatever --log-level says.
for _name in ("requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).setLevel(logging.WARNING)

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 20.0)  # connect, read
USER_AGENT = f"mcpproxy/{__version__}"

#: The most the OAuth code reads of any answer (metadata, registration, token, revocation): real
#: ones are a few KiB; a hostile server must not be able to grow the shared worker without bound.
MAX_ANSWER_BYTES = 1024 * 1024
_CHUNK = 64 * 1024

# RFC 6749 §5.2: error codes are %x20-21 / %x23-5B / %x5D-7E.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")


def new_session() -> requests.Session:
    """A pooled session that ignores proxy and netrc settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


@contextlib.contextmanager
def session_scope(session: requests.Session | None) -> Iterator[requests.Session]:
    """The caller's session, or a fresh one closed on exit."""
    if session is not None:
        yield session
        return
    own = new_session()
    try:
        yield own
    finally:
        own.close()


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment: fit for a message."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return clean_server_text(url.split("?", 1)[0].split("#", 1)[0], 200)
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return clean_server_text(f"{parts.scheme}://{netloc}{parts.path}", 300)


def require_secure(url: str, what: str) -> None:
    """OAuthError("config") unless `url` is https, or http to a loopback host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise OAuthError("config", f"{what}: {safe_url(url)} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if not host:
        raise OAuthError("config", f"{what}: {safe_url(url)} is not an absolute http(s) URL")
    if scheme == "https":
        return
    if scheme == "http" and is_loopback_host(host):
        return
    raise OAuthError(
        "config", f"{what}: {safe_url(url)} must use https (plain http is allowed only on loopback)"
    )


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    what: str,
    read_body: bool = True,
    max_bytes: int = MAX_ANSWER_BYTES,
    **kw: Any,
) -> requests.Response:
    """session.request with a timeout, no redirects, a bounded body and failures classified.

    Redirects are never followed: a 3xx comes back as it is, so no hop reaches an address nobody
    checked (discovery names the redirect; token, registration and revocation answers treat it
    as a protocol error). The body is read streamed and refused past `max_bytes`
    (OAuthError "protocol"); with read_body=False the caller gets it unread and must close it.
    """
    kw.setdefault("timeout", DEFAULT_TIMEOUT)
    kw["allow_redirects"] = False
    kw["stream"] = True
    try:
        host = urlsplit(url).hostname or "?"
    except ValueError:
        host = "?"
    try:
        resp = session.request(method, url, **kw)
        if read_body:
            _read_bounded(resp, max_bytes, what)
        return resp
    except (
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidURL,
        requests.exceptions.URLRequired,
    ):
        raise OAuthError("config", f"{what}: {safe_url(url)} is not a valid URL") from None
    except requests.exceptions.RequestException as exc:
        # `from None`: the chained urllib3 errors quote the request path.
        raise OAuthError("network", f"{what}: cannot reach {host}: {_short_reason(exc)}") from None


def _read_bounded(resp: requests.Response, max_bytes: int, what: str) -> None:
    """Reads the body into resp.content, stopping (and closing) once it passes max_bytes."""
    too_big = OAuthError(
        "protocol",
        f"{what}: the answer is larger than {_size(max_bytes)}; refused (HTTP {resp.status_code})",
    )
    declared = resp.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        resp.close()  # refused before reading a byte
        raise too_big
    body = bytearray()
    try:
        # Decoded bytes count: a small gzip answer cannot inflate past the bound either.
        for chunk in resp.iter_content(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise too_big
    except BaseException:
        resp.close()
        raise
    resp._content = bytes(body)  # requests has no public setter; .content/.text now read this


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and every exception it wraps (causes, contexts, urllib3 reasons, args)."""
    found: list[BaseException] = []
    seen: set[int] = set()
    stack = [exc]
    while stack and len(found) < 32:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        found.append(cur)
        for nxt in (getattr(cur, "reason", None), cur.__cause__, cur.__context__, *cur.args):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return found


def _short_reason(exc: BaseException) -> str:
    """A few words on why a request failed, free of URLs, bodies and headers."""
    chain = _chain(exc)

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted ({clean_server_text(e.verify_message or 'verify failed', 80)})"
    if has(requests.exceptions.SSLError, ssl.SSLError):
        return "TLS handshake failed"
    if has(requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if has(requests.exceptions.ReadTimeout, socket.timeout, TimeoutError):
        return "no answer in time"
    if has(ConnectionRefusedError):
        return "connection refused"
    if has(socket.gaierror) or any("NameResolution" in type(e).__name__ for e in chain):
        return "host name not resolved"
    if has(ConnectionResetError):
        return "connection reset"
    if has(http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if has(requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
        return "answer cut off"
    if has(requests.exceptions.ProxyError):
        return "proxy failed"
    return "connection failed"


def answer_document(resp: requests.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or as a form-encoded map when the server says it is one (GitHub answers
    `application/x-www-form-urlencoded` to a client that does not ask for JSON); None otherwise."""
    doc = json_object(resp)
    if doc is not None:
        return doc
    if resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    try:
        pairs = parse_qsl(resp.content.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        return None
    return dict(pairs) or None


def error_fields(resp: requests.Response) -> tuple[str | None, str | None]:
    """The RFC 6749 §5.2 `error` code and cleaned `error_description` of an error body (JSON or form)."""
    doc = answer_document(resp)
    if doc is None:
        return None, None
    return error_fields_of(doc)


def error_fields_of(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """`error` and a cleaned `error_description` of an answer's fields; None for what is missing or bad."""
    code = doc.get("error")
    desc = doc.get("error_description")
    code = code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None
    desc = clean_server_text(desc, 200) if isinstance(desc, str) and desc.strip() else None
    return code, desc


def error_from_response(
    resp: requests.Response, what: str, *, invalid_grant_message: str | None = None
) -> OAuthError:
    """The classified OAuthError for a non-2xx answer (status first, then the §5.2 error code)."""
    status = resp.status_code
    code, desc = error_fields(resp)
    return error_from_fields(
        status,
        code,
        desc,
        what,
        retry_after_header=resp.headers.get("Retry-After"),
        invalid_grant_message=invalid_grant_message,
    )


def error_from_fields(
    status: int,
    code: str | None,
    desc: str | None,
    what: str,
    *,
    retry_after_header: str | None = None,
    invalid_grant_message: str | None = None,
) -> OAuthError:
    kind = classify_status(status, code)
    detail = f" ({desc})" if desc else ""
    # A refusal a glitch could explain is believed after one confirming retry (docs/providers.md).
    confirm = code in CONFIRM_CODES
    if kind == "server":
        retry_after = parse_retry_after(retry_after_header)
        msg = f"{what}: the server answered HTTP {status}"
        if code:
            msg += f" {code}"
        if retry_after is not None:
            msg += f"; retry after {retry_after:.0f} s"
        return OAuthError("server", msg, retry_after)
    if kind == "invalid_grant":
        sentence = (
            invalid_grant_message or "the authorization server rejected the grant — log in again"
        )
        return OAuthError("invalid_grant", f"{what}: {sentence} ({code or 'invalid_grant'}){detail}")
    if kind == "invalid_client":
        return OAuthError(
            "invalid_client",
            f"{what}: the authorization server does not accept this client ({code or f'HTTP {status}'}){detail}"
            " — check oauth.client_id / client_secret, then log in again",
            confirm=confirm,
        )
    if code:
        return OAuthError("protocol", f"{what}: the server answered HTTP {status} {code}{detail}", confirm=confirm)
    return OAuthError("protocol", f"{what}: the server answered HTTP {status}")


def client_auth(form: dict[str, str], client_id: str, client_secret: str | None,
                auth_method: str | None = None) -> dict[str, str]:
    """Headers for client authentication as registered (one method, never two); adds client_id to `form`
    for a public client, and the secret too for client_secret_post."""
    if client_secret is None or auth_method == "none":
        form["client_id"] = client_id
        return {}
    if auth_method == "client_secret_post":
        form["client_id"] = client_id
        form["client_secret"] = client_secret
        return {}
    return basic_auth(client_id, client_secret)


def basic_auth(client_id: str, client_secret: str | None) -> dict[str, str]:
    """The client_secret_basic header, {} for a public client.

    RFC 6749 §2.3.1: each part form-urlencoded before base64 (requests' HTTPBasicAuth, which
    requests-oauthlib uses, skips that step).
    """
    if client_secret is None:
        return {}
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode("ascii")
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def json_object(resp: requests.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        doc = json.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None
