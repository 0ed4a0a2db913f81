"""`/mcp/{name}`: the MCP Streamable HTTP pass-through (docs/architecture.md "Pass-through") — MCP clients never meet OAuth.

Each request takes the server's current token from the gateway's lease (mcpproxy/gateway/lease.py; its
TokenActor is asked only when there is none), drops what the client sent for credentials, and relays the answer — JSON and `text/event-stream` alike —
chunk by chunk as it arrives, so that no answer's size grows the gateway. An upstream 401 is reported
to the actor (single-flight refresh) and the request is replayed once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from actors.messages import Failure, ScopeRequired, TokenAnswer
from mcpproxy.gateway import lease
from mcpproxy.gateway.bridge import ActorUnavailable
from mcpproxy.gateway.shared import BRIDGE, CONFIG, printable
from mcpproxy.oauth.challenge import insufficient_scope

log = logging.getLogger("mcpproxy.passthrough")

UPSTREAM = web.AppKey("upstream", aiohttp.ClientSession)
STREAMS = web.AppKey("mcp_streams", set)  # upstream answers being relayed; closed on shutdown

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0  # a tool may think for minutes between two bytes of its answer
ASK_TIMEOUT = 10.0
#: While an answer stream is idle, how often to look whether the client is still there.
LIVENESS_CHECK = 5.0
MAX_BODY = 32 * 1024 * 1024
#: A refused (401) answer up to this size is read to keep its connection; a larger one closes it unread.
DISCARD_LIMIT = 64 * 1024
METHODS = ("GET", "POST", "DELETE")

# Only these, and every `Mcp-*` header (Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name,
# Mcp-Param-…), cross the proxy: never Authorization, Cookie, X-API-Key, Host or Origin.
REQUEST_HEADERS = frozenset({"accept", "content-type", "last-event-id", "user-agent"})
RESPONSE_HEADERS = frozenset({"content-type", "last-event-id", "cache-control", "retry-after", "allow"})
#: The only answers MCP Streamable HTTP has; anything else (an HTML page above all) is never relayed.
RELAYED_TYPES = frozenset({"application/json", "text/event-stream"})

LOGIN_NEEDED = -32001
PROXY_ERROR = -32000


async def upstream_client(app: web.Application) -> AsyncIterator[None]:
    """One pooled client for every upstream (cleanup_ctx): no total timeout, cookies never kept."""
    timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=0, enable_cleanup_closed=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(),
                                     trust_env=False) as session:
        app[UPSTREAM] = session
        app[STREAMS] = set()
        yield


async def close_streams(app: web.Application) -> None:
    """on_shutdown: end every relayed stream (a client's GET stream would otherwise hold the shutdown)."""
    for upstream in list(app.get(STREAMS, ())):
        upstream.close()


def rpc_error(status: int, code: int, message: str, server: str, kind: str) -> web.Response:
    """A JSON-RPC error body (id null: the proxy does not parse the request), which MCP clients show."""
    body = {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": {"server": server, "kind": kind}},
            "id": None}
    return web.json_response(body, status=status)


def login_needed(name: str) -> web.Response:
    return rpc_error(401, LOGIN_NEEDED, f"server '{name}' needs a login: run `mcpproxy-ctl login {name}`",
                     name, "login_required")


def _pick(headers: Mapping[str, str], allowed: frozenset[str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in allowed or k.lower().startswith("mcp-")}


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def handler(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    config = request.app[CONFIG].current
    server = config.server(name)
    if server is None:
        # No list of the configured names: this answer needs no key while the gateway is on loopback.
        return rpc_error(404, PROXY_ERROR, f"server '{name}' is not in the configuration", name, "not_found")
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={"Allow": ", ".join((*METHODS, "OPTIONS"))})
    if request.method not in METHODS:
        resp = rpc_error(405, PROXY_ERROR, f"{request.method} is not part of MCP Streamable HTTP", name, "method")
        resp.headers["Allow"] = ", ".join((*METHODS, "OPTIONS"))
        return resp
    if not server.enabled:
        return rpc_error(409, PROXY_ERROR, f"server '{name}' is disabled in the configuration", name, "disabled")
    if server.protocol == "stdio" or not server.url:
        return rpc_error(400, PROXY_ERROR, f"server '{name}' is a stdio server; /mcp/ passes HTTP servers through",
                         name, "config")
    body = await _read_body(request)
    if body is None:
        return rpc_error(413, PROXY_ERROR, f"the request body is larger than {MAX_BODY} bytes", name, "too_large")
    try:
        return await _proxy(request, name, server.url, server.is_oauth, body)
    except ActorUnavailable as e:
        log.error("server=%s token actor unavailable: %s", name, e)
        return rpc_error(503, PROXY_ERROR, f"server '{name}': the service is busy or restarting ({e})",
                         name, "unavailable")


async def _read_body(request: web.Request) -> bytes | None:
    """The whole request body (small JSON-RPC) so that it can be replayed; None when over MAX_BODY."""
    if not request.body_exists:
        return b""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def token_for(app: web.Application, name: str) -> TokenAnswer | web.Response:
    """The server's current token (lease.current_token), or the JSON-RPC error an MCP client is shown."""
    return _rendered(name, await lease.current_token(app, name))


def _rendered(name: str, answer: TokenAnswer | Failure) -> TokenAnswer | web.Response:
    if isinstance(answer, TokenAnswer):
        return answer
    if answer.needs_login:
        return login_needed(name)
    return rpc_error(502, PROXY_ERROR, f"server '{name}': no usable token — {answer.message}", name, answer.kind)


async def _proxy(request: web.Request, name: str, url: str, oauth: bool, body: bytes) -> web.StreamResponse:
    bridge = request.app[BRIDGE]
    if oauth and name not in bridge.actors:
        return rpc_error(503, PROXY_ERROR, f"server '{name}' has no running token actor", name, "unavailable")
    target = URL(url)
    extra = [(k, v) for k, v in request.query.items() if k != "apikey"]
    if extra:
        target = target.extend_query(extra)
    headers = _pick(request.headers, REQUEST_HEADERS)

    token: TokenAnswer | None = None
    if oauth:
        got = await token_for(request.app, name)
        if isinstance(got, web.Response):
            return got
        token = got
    try:
        upstream = await _send(request, target, headers, body, token)
        if token is not None and upstream.status == 401:
            await _discard(upstream)
            got = _rendered(name, await lease.rejected_token(request.app, name, token))
            if isinstance(got, web.Response):
                return got
            token = got
            log.info("server=%s upstream refused the token; replaying with a fresh one", name)
            upstream = await _send(request, target, headers, body, token)
            if upstream.status == 401:
                await _discard(upstream)
                await lease.refused_token(request.app, name, token)
                log.warning("server=%s upstream refused a fresh token too", name)
                return login_needed(name)
        if token is not None and upstream.status == 403:
            scopes = insufficient_scope(upstream.headers.getall("WWW-Authenticate", []))
            if scopes:
                await bridge.ask_server(name, ScopeRequired(scopes), ASK_TIMEOUT)
    except (aiohttp.ClientError, TimeoutError) as e:
        why = _why(e)
        log.warning("server=%s upstream %s unreachable: %s", name, _where(url), why)
        return rpc_error(502, PROXY_ERROR, f"server '{name}' ({_where(url)}) is unreachable: {why}", name, "upstream")
    return await _relay(request, name, upstream)


def _why(e: BaseException) -> str:
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:.0f}s"
    if isinstance(e, TimeoutError):
        return f"no answer within {READ_TIMEOUT:.0f}s"
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"cannot connect ({e.os_error.strerror or type(e.os_error).__name__})"
    return type(e).__name__


async def _send(request: web.Request, target: URL, headers: dict[str, str], body: bytes,
                token: TokenAnswer | None) -> aiohttp.ClientResponse:
    if token is not None:
        headers = {**headers, "Authorization": f"Bearer {token.access_token}"}
    timeout = None
    if request.method == "GET":
        # The GET stream carries server-initiated messages and may stay quiet for hours.
        timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=CONNECT_TIMEOUT, sock_read=None)
    return await request.app[UPSTREAM].request(request.method, target, headers=headers, data=body or None,
                                               allow_redirects=False, timeout=timeout)


async def _discard(upstream: aiohttp.ClientResponse) -> None:
    """Drops a refused answer: a small one is read so that its connection is reused, any other is cut off."""
    if upstream.content_length is None or upstream.content_length > DISCARD_LIMIT:
        upstream.close()
        return
    try:
        await upstream.read()
    except (aiohttp.ClientError, TimeoutError):
        pass
    upstream.release()


async def _relay(request: web.Request, name: str, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Relays the answer chunk by chunk as it arrives, JSON and SSE alike: the gateway never holds more than
    a few buffers of it, whatever its size."""
    headers = _pick(upstream.headers, RESPONSE_HEADERS)
    try:
        if not _relayable(upstream):  # left unread: the finally below closes that connection
            log.warning("server=%s upstream answered HTTP %d with %s; not relayed", name, upstream.status,
                        printable(upstream.content_type, 80))
            return rpc_error(upstream.status if upstream.status >= 400 else 502, PROXY_ERROR,
                             f"server '{name}' answered HTTP {upstream.status} with "
                             f"{printable(upstream.content_type, 80)}, which is not an MCP answer", name, "upstream")
        sse = upstream.content_type == "text/event-stream"
        if sse:
            headers.setdefault("Cache-Control", "no-cache")
        out = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        if not sse and upstream.content_length is not None:
            out.content_length = upstream.content_length  # so a client can tell a cut-off answer from a whole one
        streams = request.app[STREAMS]
        streams.add(upstream)
        try:
            await out.prepare(request)
            if await _pump(request, upstream, out):
                await out.write_eof()  # a no-op when _pump has ended the answer with its last chunk
            elif not sse and request.transport is not None and not request.transport.is_closing():
                # The upstream broke off mid-answer and the status is already sent: closing the connection
                # without the last chunk is the only way left to tell the client its JSON is incomplete.
                log.warning("server=%s upstream answer broke off; the client's connection is closed", name)
                request.transport.close()
        except ConnectionError:
            pass  # the client stopped reading once it had its answer, or went away
        finally:
            streams.discard(upstream)
        return out
    finally:
        if upstream.content.at_eof():
            upstream.release()  # back to the pool: the next call skips the TCP handshake
        else:
            upstream.close()  # cut off mid-answer: that connection cannot be reused


def _relayable(upstream: aiohttp.ClientResponse) -> bool:
    """JSON and SSE answers, and empty ones (202 to a notification, 204 to a DELETE) that carry no type."""
    if upstream.content_type in RELAYED_TYPES:
        return True
    return "Content-Type" not in upstream.headers and (upstream.status in (202, 204) or upstream.content_length == 0)


async def _pump(request: web.Request, upstream: aiohttp.ClientResponse, out: web.StreamResponse) -> bool:
    """Writes each chunk as it arrives; False when either side went away mid-stream.

    Each read is awaited in place under a deadline of its own (no task per chunk: an answer of a few chunks
    takes a few turns of the event loop, not a dozen); a read cut short by that deadline has taken no data."""
    try:
        while True:
            liveness = asyncio.timeout(LIVENESS_CHECK)
            try:
                async with liveness:
                    chunk = await upstream.content.readany()
            except TimeoutError:
                if not liveness.expired():
                    raise  # the upstream's own read timeout, not our look at the client
                if request.transport is None or request.transport.is_closing():
                    return False  # the client left a quiet stream: close the upstream one too
                continue
            if not chunk:
                return True
            if upstream.content.at_eof():
                # The answer's last bytes came with its end (a tool call's one SSE event, a JSON answer):
                # one send, and the client reads its whole answer in one wake-up.
                await out.write_eof(chunk)
                return True
            await out.write(chunk)
    except ConnectionError:
        return False  # the client went away
    except (aiohttp.ClientError, TimeoutError) as e:
        log.info("answer for %s ended early upstream: %s", printable(request.path), type(e).__name__)
        return False
