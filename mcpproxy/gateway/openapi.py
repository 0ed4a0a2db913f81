"""`GET /api/v1/openapi.json` — the OpenAPI 3.1 description of every route the gateway serves (docs/architecture.md "REST contract").

Schemas are JSON Schema 2020-12 (OpenAPI 3.1): nullable fields are `type: [..., "null"]`. The status
object mirrors mcpproxy.status.build_status field for field; tests/gateway/test_openapi.py holds the two
together and validates real answers against these schemas.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mcpproxy import __version__
from mcpproxy.status import OAUTH_STATUSES, TOKEN_EXPIRY_SOURCES

REFRESH_STATES = ("idle", "scheduled", "refreshing", "retrying", "failed")
ERROR_KINDS = ("network", "server", "invalid_grant", "invalid_client", "protocol", "config", "process")
PROTOCOLS = ("http", "streamable-http", "sse", "stdio")

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(type_: str, **kw: Any) -> Json:
    return {"type": [type_, "null"], **kw}


def _timestamp(description: str) -> Json:
    return _nullable("string", format="date-time", description=description + " (ISO 8601 UTC), or null.")


def _envelope(data: Json) -> Json:
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": data},
        "additionalProperties": False,
    }


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str, media: str = "text/plain") -> Json:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def _error(description: str) -> Json:
    return {"$ref": f"#/components/responses/{description}"}


# Errors every route can answer, by what the security middleware checks (docs/architecture.md "Security").
MISDIRECTED = {"421": _error("Misdirected")}
NO_KEY = {"401": _error("Unauthorized")}
CROSS_ORIGIN = {"403": _error("CrossOrigin")}
API_ERRORS = {**NO_KEY, **MISDIRECTED, "405": _error("MethodNotAllowed"), "503": _error("Unavailable")}
KEYED: list[Json] = [{"ApiKeyHeader": []}, {"BearerAuth": []}, {"ApiKeyQuery": []}]
NAME_PARAM: Json = {"$ref": "#/components/parameters/ServerName"}


def _schemas() -> Json:
    status_fields: Json = {
        "name": {"type": "string", "description": "The server's name in the config."},
        "url": _nullable("string", description="The upstream MCP URL; null for a stdio server."),
        "protocol": {"type": "string", "enum": list(PROTOCOLS)},
        "enabled": {"type": "boolean"},
        "is_oauth": {"type": "boolean", "description": "False for stdio servers and `oauth: null`."},
        "oauth_status": {
            "type": "string", "enum": list(OAUTH_STATUSES),
            "description": "none: no token; authenticated: the access token is valid (also while a failed "
                           "refresh is retried); expired: past expiry, no successful refresh yet; error: a "
                           "permanent failure, a person must log in.",
        },
        "token_held": {"type": "boolean", "description": "Whether a token is stored for this server (even an "
                                                         "expired one): Logout shows whenever it is true."},
        "refresh_state": {"type": "string", "enum": list(REFRESH_STATES)},
        "token_expires_at": _timestamp("When the access token expires"),
        "token_expiry": {"type": ["string", "null"], "enum": [*TOKEN_EXPIRY_SOURCES, None],
                         "description": "Where token_expires_at comes from: expires_in, jwt_exp (the access "
                                        "token's JWT exp, read as a hint), or unknown (the server gave no "
                                        "lifetime: no proactive refresh; an upstream 401 triggers one). Null "
                                        "without a token."},
        "next_refresh_at": _timestamp("When the next refresh (or retry) is due"),
        "last_refresh_at": _timestamp("When the last successful refresh happened"),
        "refresh_count": {"type": "integer", "minimum": 0},
        "retry_count": {"type": "integer", "minimum": 0,
                        "description": "Failed attempts in the current failing streak (0 when none)."},
        "retrying_since": _timestamp("When the current failing streak began; null when none"),
        "last_error": {"oneOf": [{"type": "null"}, _ref("LastError")]},
        "action": {"type": ["string", "null"], "enum": ["login", None],
                   "description": "`login` when a person must log in, else null."},
        "user_logged_out": {"type": "boolean", "description": "True after a logout until the next login."},
        "connected": _nullable("boolean", description="The last upstream check with the current token; "
                                                      "null before any."),
        "last_probe_at": _timestamp("When the upstream was last checked"),
        "scopes": {"type": "array", "items": {"type": "string"}, "description": "Scopes of the held token."},
        "missing_scopes": {"type": "array", "items": {"type": "string"},
                           "description": "Scopes the upstream asked for that the token lacks."},
        "oauth_settings": {"oneOf": [{"type": "null"}, _ref("OAuthSettings")],
                           "description": "The server's `oauth` config as it is applied; null when not OAuth."},
    }
    required = list(status_fields)
    # The gateway's part (mcpproxy/gateway/upstreams.py): every server's MCP side, and a stdio server's process.
    status_fields |= {
        "tools": _nullable("integer", description="How many tools the server listed; null before it was reached."),
        "in_aggregate": {"type": "boolean", "description": "Whether its tools are in the aggregated /mcp now."},
        "aggregate_note": _nullable("string", description="Why its tools are not in /mcp (a login needed, "
                                                          "unreachable, its process exiting, disabled)."),
        "process": {"type": "string", "enum": ["stopped", "starting", "running", "waiting", "stopping", "failed"],
                    "description": "A stdio server's process: `waiting` between an exit and its restart, `failed` "
                                   "after 5 restarts within a minute (reload the config to try again)."},
        "pid": _nullable("integer", description="A stdio server's process ID while it runs."),
        "restarts": {"type": "integer", "minimum": 0,
                     "description": "How often a stdio server's process was restarted after it exited."},
    }
    counts = {"type": "object", "required": list(OAUTH_STATUSES),
              "properties": {s: {"type": "integer", "minimum": 0} for s in OAUTH_STATUSES},
              "additionalProperties": False}
    return {
        "ErrorEnvelope": {
            "type": "object",
            "required": ["success", "error"],
            "properties": {
                "success": {"const": False},
                "error": {"type": "string", "description": "A sentence for people; never a secret."},
                "kind": {"type": "string", "description": "What went wrong, when classified: network, server, "
                                                          "invalid_grant, invalid_client, protocol, config, "
                                                          "login_required, cancelled, …"},
            },
            "additionalProperties": False,
        },
        "JsonRpcError": {
            "type": "object",
            "description": "What the pass-through answers by itself: a JSON-RPC error (id null) MCP clients show.",
            "required": ["jsonrpc", "error", "id"],
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "data": {"type": "object", "properties": {"server": {"type": "string"},
                                                             "kind": {"type": "string"}}},
                }},
                "id": {"type": "null"},
            },
        },
        "LastError": {
            "type": "object",
            "required": ["kind", "message"],
            "properties": {"kind": {"type": "string", "enum": list(ERROR_KINDS)}, "message": {"type": "string"}},
            "additionalProperties": False,
        },
        "OAuthSettings": {
            "type": "object",
            "description": "A server's `oauth` settings (docs/configuration.md); the client secret only as "
                           "whether one is set.",
            "required": ["client_id", "client_secret_set", "resource", "redirect_uri", "assume_pkce_s256"],
            "properties": {
                "client_id": _nullable("string", description="The configured client; null: registered dynamically."),
                "client_secret_set": {"type": "boolean"},
                "resource": {"type": "string", "description": "`auto`, `omit`, or the resource indicator sent."},
                "redirect_uri": _nullable("string", description="A fixed loopback redirect URI, served during a "
                                                                "login only; null: the service's /oauth/callback."),
                "assume_pkce_s256": {"type": "boolean", "description": "Use S256 although the metadata does not "
                                                                       "advertise it."},
            },
            "additionalProperties": False,
        },
        "ServerStatus": {
            "type": "object",
            "description": "One server's status (docs/architecture.md \"Status object\"): the same object in /servers, /servers/{name}, "
                           "`servers.changed` events and `mcpproxy-ctl status --json`.",
            "required": required,
            "properties": status_fields,
            "additionalProperties": False,
        },
        "Stats": {
            "type": "object",
            "required": ["total", "oauth", "by_status", "needs_login"],
            "properties": {
                "total": {"type": "integer", "minimum": 0},
                "oauth": {"type": "integer", "minimum": 0},
                "by_status": counts,
                "needs_login": {"type": "integer", "minimum": 0},
            },
            "additionalProperties": False,
        },
        "Status": {
            "type": "object",
            "required": ["version", "uptime_seconds", "listen", "servers", "counts", "needs_login",
                         "config_file", "config_problems", "config_warnings", "config_differs", "at_rest"],
            "properties": {
                "version": {"type": "string"},
                "uptime_seconds": {"type": "number", "minimum": 0},
                "listen": {"type": "string", "description": "HOST:PORT the gateway listens on."},
                "servers": {"type": "integer", "minimum": 0},
                "counts": counts,
                "needs_login": {"type": "integer", "minimum": 0},
                "config_file": _nullable("string", description="The config file the service reads."),
                "config_problems": {"type": "array", "items": {"type": "string"},
                                    "description": "One sentence per problem, naming the file and the field: "
                                                   "first why the last edit was refused (see config_differs), "
                                                   "then the server entries left out when the running config "
                                                   "was loaded."},
                "config_warnings": {"type": "array", "items": {"type": "string"},
                                    "description": "Unknown settings of the running config, ignored."},
                "config_differs": {"type": "boolean",
                                   "description": "True while the file holds an edit that was refused (a broken "
                                                  "entry, an unknown key close to a known one, or no servers "
                                                  "left): the service keeps running the previous configuration."},
                "at_rest": {"type": "string", "enum": ["keyring", "key_file"],
                            "description": "Where the key that seals the token store comes from (docs/security.md)."},
            },
            "additionalProperties": False,
        },
        "ServerList": {
            "type": "object",
            "required": ["servers", "stats"],
            "properties": {"servers": {"type": "array", "items": _ref("ServerStatus")}, "stats": _ref("Stats")},
            "additionalProperties": False,
        },
        "LoginRequest": {
            "type": "object",
            "properties": {"open_browser": {"type": "boolean", "default": False,
                                            "description": "Open the authorization URL in the desktop's browser."}},
        },
        "LoginStarted": {
            "type": "object",
            "required": ["server", "auth_url", "browser_opened"],
            "properties": {
                "server": {"type": "string"},
                "auth_url": {"type": "string", "format": "uri",
                             "description": "Open it in a browser; the authorization server sends the browser "
                                            "back to /oauth/callback."},
                "browser_opened": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "LogoutResult": {
            "type": "object",
            "required": ["server", "action", "revoked"],
            "properties": {
                "server": {"type": "string"},
                "action": {"const": "logout"},
                "revoked": {"type": "boolean", "description": "Whether revocation (RFC 7009) is under way."},
            },
            "additionalProperties": False,
        },
        "LogoutAllResult": {
            "type": "object",
            "required": ["results", "count", "failed"],
            "properties": {
                "results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["server", "action", "success"],
                    "properties": {
                        "server": {"type": "string"},
                        "action": {"const": "logout"},
                        "success": {"type": "boolean"},
                        "revoked": {"type": "boolean"},
                        "error": {"type": "string"},
                    },
                    "additionalProperties": False,
                }},
                "count": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0},
            },
            "additionalProperties": False,
        },
        "Refreshed": {
            "type": "object",
            "required": ["server", "token_expires_at"],
            "properties": {"server": {"type": "string"}, "token_expires_at": _timestamp("The new token's expiry")},
            "additionalProperties": False,
        },
        "Health": {
            "type": "object", "required": ["status"],
            "properties": {"status": {"const": "ok"}}, "additionalProperties": False,
        },
        "Readiness": {
            "oneOf": [
                {"type": "object", "required": ["status", "servers"], "additionalProperties": False,
                 "properties": {"status": {"const": "ready"}, "servers": {"type": "integer", "minimum": 0}}},
                {"type": "object", "required": ["status", "waiting_for"], "additionalProperties": False,
                 "properties": {"status": {"const": "starting"},
                                "waiting_for": {"type": "array", "items": {"type": "string"}}}},
            ],
        },
        "Event": {
            "type": "object",
            "description": "The `data:` line of an SSE frame. Events: servers.changed (payload: a ServerStatus "
                           "and `reason`), oauth.login_completed, oauth.token_refreshed (server_name, "
                           "expires_at), oauth.refresh_failed (server_name, error, action), oauth.logout "
                           "(server_name, revoked, reason), ping. No event ever carries a token.",
            "required": ["payload", "timestamp"],
            "properties": {"payload": {"type": "object"}, "timestamp": {"type": "number"}},
        },
    }


def _responses() -> Json:
    def err(description: str) -> Json:
        return _json(_ref("ErrorEnvelope"), description)

    return {
        "BadRequest": err("Malformed input: the body is not a JSON object, a field has the wrong type, or the "
                          "server does not use OAuth."),
        "Unauthorized": err("The API key is missing or wrong (X-API-Key, Authorization: Bearer or ?apikey=)."),
        "CrossOrigin": err("A state change (or /events, /mcp) from a page on another origin: refused."),
        "NotFound": err("No server of that name in the configuration, or no such API path."),
        "MethodNotAllowed": err("This method is not allowed on this path."),
        "Conflict": err("The server needs a login first, is disabled, or the login was cancelled."),
        "Misdirected": err("The Host header is not the service's listen address or a localhost name "
                           "(DNS rebinding defence)."),
        "BadGateway": err("The authorization server failed or answered something unusable."),
        "Unavailable": err("The service is starting, busy or restarting an actor: try again."),
    }


def _op(op_id: str, summary: str, responses: Json, *, tags: list[str], keyed: bool = True,
        description: str | None = None, **extra: Any) -> Json:
    op: Json = {"operationId": op_id, "summary": summary, "tags": tags, "responses": responses, **extra}
    if description:
        op["description"] = description
    op["security"] = KEYED if keyed else []
    return op


def _paths() -> Json:
    server_error = {"404": _error("NotFound")}
    oauth_action = {**server_error, "400": _error("BadRequest"), "403": _error("CrossOrigin"),
                    "409": _error("Conflict")}
    login_body = {
        "required": False,
        "content": {"application/json": {"schema": _ref("LoginRequest")}},
    }
    sse_params: list[Json] = [
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "Replays the events after this id from the service's ring."},
        {"name": "lastEventId", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "Same as Last-Event-ID, for clients that cannot send headers."},
        {"name": "server", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "Only events about this server."},
    ]
    callback_params: list[Json] = [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}, "description": d}
        for n, d in (("state", "The single-use state of a login started by this service (10 min)."),
                     ("code", "The authorization code."),
                     ("iss", "The issuer (RFC 9207), checked when sent."),
                     ("error", "An error code from the authorization server."),
                     ("error_description", "Its description."))
    ]
    def rpc(description: str) -> Json:
        return _json(_ref("JsonRpcError"), description)

    mcp_responses = {
        "200": {"description": "The upstream's answer, JSON or an SSE stream, passed through.",
                "content": {"application/json": {"schema": {}}, "text/event-stream": {"schema": {"type": "string"}}}},
        "202": {"description": "Accepted (notifications and responses), from the upstream."},
        "400": {"description": "A malformed MCP request to a stdio server (the MCP SDK's JSON-RPC error)."},
        "401": _json({"oneOf": [_ref("JsonRpcError"), _ref("ErrorEnvelope")]},
                     "No usable token for this server (JSON-RPC error naming the login command), or the API key "
                     "is missing while the gateway listens off loopback (error envelope)."),
        "403": _error("CrossOrigin"),
        "404": rpc("No server of that name."),
        "405": rpc("Not a Streamable HTTP method."),
        "409": rpc("The server is disabled in the configuration."),
        "413": rpc("The request body is too large."),
        **MISDIRECTED,
        "502": rpc("The upstream MCP server cannot be reached, its answer broke off, or no token could be had."),
        "503": rpc("The server's token actor is busy or restarting."),
        "default": {"description": "Any other status is the upstream's own, passed through."},
    }
    mcp_op = {"tags": ["pass-through"], "parameters": [NAME_PARAM], "responses": mcp_responses,
              "security": [{}, *KEYED]}
    agg_responses = {
        "200": {"description": "The MCP server's answer, an SSE stream or JSON.",
                "content": {"application/json": {"schema": {}}, "text/event-stream": {"schema": {"type": "string"}}}},
        "202": {"description": "Accepted (notifications and responses)."},
        "400": {"description": "A malformed MCP request (the SDK's JSON-RPC error)."},
        "401": _error("Unauthorized"),
        "403": _error("CrossOrigin"),
        "404": {"description": "An unknown or ended Mcp-Session-Id."},
        "405": rpc("Not a Streamable HTTP method."),
        **MISDIRECTED,
        "default": {"description": "Any other status comes from the MCP SDK's transport."},
    }
    agg_op = {"tags": ["aggregate"], "responses": agg_responses, "security": [{}, *KEYED]}
    return {
        "/healthz": {"get": _op("healthz", "Liveness: 200 while the gateway runs.", {
            "200": _json(_ref("Health"), "Up."), **MISDIRECTED}, tags=["health"], keyed=False)},
        "/readyz": {"get": _op("readyz", "Readiness: 200 once every actor answered.", {
            "200": _json(_ref("Readiness"), "Ready."),
            "503": {"description": "Still starting (JSON), or the actor system did not answer (text).",
                    "content": {"application/json": {"schema": _ref("Readiness")},
                                "text/plain": {"schema": {"type": "string"}}}},
            **MISDIRECTED}, tags=["health"], keyed=False)},
        "/api/v1/status": {"get": _op("getStatus", "Version, uptime and counts by oauth_status.", {
            "200": _json(_envelope(_ref("Status")), "The service's status."), **API_ERRORS}, tags=["status"])},
        "/api/v1/servers": {"get": _op("listServers", "Every configured server's status (OAuth or not).", {
            "200": _json(_envelope(_ref("ServerList")), "One status object per server, in config order."),
            **API_ERRORS}, tags=["servers"])},
        "/api/v1/servers/logout": {"post": _op("logoutAll", "Log out of every OAuth server.", {
            "200": _json(_envelope(_ref("LogoutAllResult")), "Per-server results."),
            "400": _error("BadRequest"), **CROSS_ORIGIN, **API_ERRORS}, tags=["auth"],
            description="Deletes each server's tokens, then revokes them at the authorization server.")},
        "/api/v1/servers/{name}": {
            "parameters": [NAME_PARAM],
            "get": _op("getServer", "One server's status.", {
                "200": _json(_envelope(_ref("ServerStatus")), "The status object."), **server_error,
                **API_ERRORS}, tags=["servers"]),
        },
        "/api/v1/servers/{name}/login": {
            "parameters": [NAME_PARAM],
            "post": _op("login", "Start a login: authorization code + PKCE (S256).", {
                "200": _json(_envelope(_ref("LoginStarted")), "Open auth_url to finish the login."),
                **oauth_action, "502": _error("BadGateway"), **API_ERRORS}, tags=["auth"], requestBody=login_body,
                description="Discovers the authorization server and registers a client when needed. 400 for a "
                            "server that does not use OAuth or a bad body; 409 when it is disabled."),
        },
        "/api/v1/servers/{name}/logout": {
            "parameters": [NAME_PARAM],
            "post": _op("logout", "Log out: delete the token, cancel refreshes, then revoke (RFC 7009).", {
                "200": _json(_envelope(_ref("LogoutResult")), "Logged out (also when no token was held)."),
                **oauth_action, **API_ERRORS}, tags=["auth"]),
        },
        "/api/v1/servers/{name}/refresh": {
            "parameters": [NAME_PARAM],
            "post": _op("refresh", "Refresh the token now (joins a refresh already in flight).", {
                "200": _json(_envelope(_ref("Refreshed")), "The new token's expiry."),
                **oauth_action, "502": _error("BadGateway"), **API_ERRORS}, tags=["auth"],
                description="409 when no refresh is possible (no token, no refresh token, or a permanent "
                            "failure): a person must log in. 502 when the authorization server failed."),
        },
        "/api/v1/openapi.json": {"get": _op("openapi", "This document.", {
            "200": {"description": "OpenAPI 3.1.", "content": {"application/json": {"schema": {"type": "object"}}}},
            **NO_KEY, **MISDIRECTED, "405": _error("MethodNotAllowed")}, tags=["meta"])},
        "/events": {"get": _op("events", "Server-sent events: status changes, logins, refreshes, logouts.", {
            "200": {"description": "An endless `text/event-stream`: frames with `id:`, `event:` and `data:` (an "
                                   "Event as JSON); a `ping` every 15 s.",
                    "content": {"text/event-stream": {"schema": {"type": "string"},
                                                      "x-data-schema": _ref("Event")}}},
            "400": _text("Last-Event-ID is not an id given by this service."),
            **NO_KEY, **CROSS_ORIGIN, **MISDIRECTED,
            "503": _text("The service is busy or restarting.")}, tags=["events"], parameters=sse_params)},
        "/oauth/callback": {"get": _op("oauthCallback", "The OAuth redirect URI: finishes a login.", {
            "200": _text("The login worked: a small page says so.", "text/html"),
            "400": _text("Unknown, used or expired state, no code, or the exchange failed: the page says why.",
                         "text/html"),
            **MISDIRECTED,
            "503": _text("The service is busy or restarting.")}, tags=["auth"], keyed=False,
            parameters=callback_params,
            description="No API key: the browser comes here from the authorization server. `state` is single use.")},
        "/metrics": {"get": _op("metrics", "Prometheus text format.", {
            "200": _text("Counters and gauges: mcpproxy_refresh_total, mcpproxy_refresh_lateness_seconds, "
                         "mcpproxy_tokens, mcpproxy_servers, mcpproxy_sse_clients, mcpproxy_uptime_seconds."),
            **NO_KEY, **MISDIRECTED, "503": _text("The service is busy or restarting.")}, tags=["meta"])},
        "/": {"get": _op("webui", "The Web UI (takes the API key once from `/?apikey=`).", {
            "200": _text("The single-page app.", "text/html"),
            **MISDIRECTED,
            "503": _text("The Web UI is not built: run `make install`.")}, tags=["meta"], keyed=False)},
        "/mcp": {
            "summary": "Every server's tools in one MCP server (Streamable HTTP).",
            "description": "The MCP SDK's server: tools named SERVER__TOOL (the separator is `tool_separator` in "
                           "the config), each description starting with [SERVER]; tools/call goes to that server "
                           "(an HTTP server with its current token, a stdio server through its child). "
                           "notifications/tools/list_changed when the union changes. Tools only. No API key while "
                           "the gateway listens on loopback; the key otherwise.",
            "post": {**agg_op, "operationId": "aggregatePost", "summary": "JSON-RPC messages to the aggregate.",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}},
            "get": {**agg_op, "operationId": "aggregateGet", "summary": "Open the aggregate's SSE stream."},
            "delete": {**agg_op, "operationId": "aggregateDelete", "summary": "End the MCP session."},
        },
        "/mcp/{name}": {
            "summary": "MCP Streamable HTTP pass-through to the named server (a stdio server: through its child).",
            "description": "The client's own Authorization is dropped and the server's current bearer token "
                           "added; Mcp-Session-Id, MCP-Protocol-Version, Accept and Last-Event-ID pass both "
                           "ways; SSE answers stream as they come. An upstream 401 makes the service refresh "
                           "(single-flight) and retry once. No API key while the gateway listens on loopback; "
                           "the key otherwise.",
            "post": {**mcp_op, "operationId": "mcpPost", "summary": "JSON-RPC messages to the server.",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}},
            "get": {**mcp_op, "operationId": "mcpGet", "summary": "Open the server's SSE stream."},
            "delete": {**mcp_op, "operationId": "mcpDelete", "summary": "End the MCP session."},
        },
    }


def spec() -> Json:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "mcpproxy",
            "version": __version__,
            "summary": "Keeps every OAuth-protected MCP server logged in.",
            "description": "REST API of the local mcpproxy service. Every answer under /api/ is JSON: "
                           "`{success: true, data}` or `{success: false, error, kind?}`. The service checks "
                           "Host (421) on every request and Origin (403) on state changes, /events and /mcp.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/", "description": "The service itself (default http://127.0.0.1:8080)."}],
        "tags": [{"name": n} for n in
                 ("health", "status", "servers", "auth", "events", "pass-through", "meta")],
        "security": KEYED,
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "parameters": {
                "ServerName": {"name": "name", "in": "path", "required": True,
                               "schema": {"type": "string", "minLength": 1},
                               "description": "The server's name in the config."},
            },
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "BearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "The API key as a bearer token."},
                "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "apikey",
                                "description": "For EventSource and the Web UI's first load, which cannot send "
                                               "headers."},
            },
        },
    }


async def handler(request: web.Request) -> web.Response:
    return web.json_response(spec())
