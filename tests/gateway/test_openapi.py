"""The OpenAPI 3.1 description: valid, complete (every route of the app), and true (real answers validate)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import requests
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from mcpproxy.config import config_from_document
from mcpproxy.gateway.app import create_app
from mcpproxy.gateway.bridge import ActorBridge
from mcpproxy.gateway.openapi import spec
from mcpproxy.status import static_status
from tests.harness import ServiceHandle

SPEC_URI = "urn:mcpproxy:openapi"
MCP = "/mcp/{name}"
RPC_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = ('{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", '
              '"capabilities": {}, "clientInfo": {"name": "spec-test", "version": "0"}}}')
METHODS = ("get", "post", "put", "patch", "delete")


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class SpecChecker:
    """Finds the documented response of (path template, method, status, media type) and validates bodies."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))

    def _resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            node: Any = self.doc
            for part in obj["$ref"].lstrip("#/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            obj = node
        return obj

    def response(self, template: str, method: str, status: int) -> tuple[dict[str, Any], str]:
        op = self.doc["paths"][template][method.lower()]
        code = str(status)
        assert code in op["responses"], (
            f"{method} {template} answered {status}, which the spec does not document "
            f"(documented: {sorted(op['responses'])})")
        raw = op["responses"][code]
        pointer = f"#/paths/{_pointer(template, method.lower(), 'responses', code)}"
        while "$ref" in raw:
            pointer = raw["$ref"]
            raw = self._resolve({"$ref": pointer})
        return raw, pointer

    def check(self, template: str, method: str, resp: requests.Response) -> None:
        documented, pointer = self.response(template, method, resp.status_code)
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        content = documented.get("content", {})
        assert media in content, (
            f"{method} {template} {resp.status_code} answered {media!r}; the spec says {sorted(content)}")
        if media != "application/json":
            return
        schema_ref = {"$ref": f"{SPEC_URI}{pointer}/content/{_pointer(media)}/schema"}
        validator = Draft202012Validator(schema_ref, registry=self.registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(resp.json()), key=lambda e: list(e.path))
        assert not errors, f"{method} {template} {resp.status_code}: " + "; ".join(
            f"{list(e.path)}: {e.message}" for e in errors[:5])


@pytest.fixture(scope="module")
def checker() -> SpecChecker:
    return SpecChecker(spec())


# ---- the document --------------------------------------------------------------------------------


def test_spec_is_valid_openapi_3_1() -> None:
    doc = spec()
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)  # raises OpenAPIValidationError with the path of the first problem


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    for name, schema in spec()["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as e:  # noqa: BLE001 — name the schema that failed
            raise AssertionError(f"components.schemas.{name}: {e}") from None


def test_every_route_of_the_app_is_documented() -> None:
    config = config_from_document({"listen": "127.0.0.1:1", "mcpServers": []}, None)
    app = create_app(config, cast(ActorBridge, object()), "k" * 32)
    doc = spec()
    missing = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        if route.method == "HEAD" or "directory" in info or "prefix" in info:
            continue  # HEAD mirrors GET; /assets is the Web UI's static files
        canonical = route.resource.canonical if route.resource else ""
        if canonical == "/api/{tail}":
            continue  # the catch-all that answers 404 as JSON for unknown API paths
        template = canonical.split("{tail}")[0].rstrip("/") or canonical
        ops = doc["paths"].get(template) or doc["paths"].get(canonical)
        if ops is None:
            missing.append(f"{route.method} {canonical}")
        elif route.method == "*":
            if not any(m in ops for m in METHODS):
                missing.append(f"* {canonical}")
        elif route.method.lower() not in ops:
            missing.append(f"{route.method} {canonical}")
    assert not missing, f"routes missing from the OpenAPI description: {missing}"


def test_the_documented_paths_are_the_designed_ones() -> None:
    paths = spec()["paths"]
    for path in ("/healthz", "/readyz", "/api/v1/status", "/api/v1/servers", "/api/v1/servers/{name}",
                 "/api/v1/servers/{name}/login", "/api/v1/servers/{name}/logout", "/api/v1/servers/logout",
                 "/api/v1/servers/{name}/refresh", "/api/v1/openapi.json", "/events", "/oauth/callback",
                 "/metrics", "/mcp", "/mcp/{name}", "/"):
        assert path in paths, path
    assert set(paths["/mcp/{name}"]) >= {"get", "post", "delete"}


def test_server_status_schema_has_every_field_of_the_status_object() -> None:
    from mcpproxy.config import ServerConfig

    fields = set(static_status(ServerConfig(name="x", protocol="http", url="http://127.0.0.1:9/")))
    schema = spec()["components"]["schemas"]["ServerStatus"]
    # The gateway's part (its MCP clients) is merged in whenever the gateway has reported it.
    gateway = {"tools", "in_aggregate", "aggregate_note", "process", "pid", "restarts"}
    assert set(schema["properties"]) == fields | gateway
    assert set(schema["required"]) == fields


def test_security_schemes_and_error_codes() -> None:
    doc = spec()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["ApiKeyQuery"]["in"] == "query" and schemes["ApiKeyQuery"]["name"] == "apikey"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method not in METHODS:
                continue
            codes = set(op["responses"])
            assert "421" in codes, f"{method} {path}: 421 (Host check) not documented"
            if path.startswith(("/api/", "/events", "/metrics")):
                assert "401" in codes, f"{method} {path}: 401 not documented"
                assert op["security"], f"{method} {path}: no security requirement"
            if method != "get" or path in ("/events", "/mcp/{name}"):
                assert "403" in codes, f"{method} {path}: 403 (Origin check) not documented"
    login = doc["paths"]["/api/v1/servers/{name}/login"]["post"]
    body = login["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/LoginRequest"}
    assert doc["components"]["schemas"]["LoginRequest"]["properties"]["open_browser"]["type"] == "boolean"
    assert {"400", "404", "409"} <= set(login["responses"])
    assert "409" in doc["paths"]["/api/v1/servers/{name}/refresh"]["post"]["responses"]


# ---- real answers --------------------------------------------------------------------------------


def test_served_document_is_the_spec(service: ServiceHandle) -> None:
    r = service.api("GET", "/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.json() == spec()


def test_real_answers_validate_against_the_spec(service: ServiceHandle, checker: SpecChecker) -> None:
    svc = service
    base = svc.base_url

    def api(method: str, path: str, template: str, **kw: Any) -> requests.Response:
        r = svc.api(method, path, **kw)
        checker.check(template, method, r)
        return r

    def bare(method: str, path: str, template: str, **kw: Any) -> requests.Response:
        r = requests.request(method, base + path, timeout=30, **kw)
        checker.check(template, method, r)
        return r

    # Before any login.
    assert bare("GET", "/healthz", "/healthz").status_code == 200
    assert bare("GET", "/readyz", "/readyz").status_code == 200
    assert api("GET", "/api/v1/status", "/api/v1/status").status_code == 200
    assert api("GET", "/api/v1/servers", "/api/v1/servers").status_code == 200
    for name in ("demo", "plain"):
        assert api("GET", f"/api/v1/servers/{name}", "/api/v1/servers/{name}").status_code == 200
    assert api("GET", "/api/v1/servers/ghost", "/api/v1/servers/{name}").status_code == 404
    assert api("POST", "/api/v1/servers/demo/refresh", "/api/v1/servers/{name}/refresh").status_code == 409
    assert api("POST", "/api/v1/servers/plain/refresh", "/api/v1/servers/{name}/refresh").status_code == 400
    assert api("POST", "/api/v1/servers/ghost/refresh", "/api/v1/servers/{name}/refresh").status_code == 404
    login = "/api/v1/servers/{name}/login"
    assert api("POST", "/api/v1/servers/plain/login", login).status_code == 400
    assert api("POST", "/api/v1/servers/ghost/login", login).status_code == 404
    assert api("POST", "/api/v1/servers/demo/login", login, data=b"{not json").status_code == 400
    assert api("POST", "/api/v1/servers/demo/login", login, json=[1]).status_code == 400
    assert api("POST", "/api/v1/servers/demo/login", login, json={"open_browser": "yes"}).status_code == 400
    assert api("POST", "/api/v1/servers/demo/login", login, json={"open_browser": False}).status_code == 200
    assert api("GET", "/api/v1/openapi.json", "/api/v1/openapi.json").status_code == 200
    assert api("GET", "/metrics", "/metrics").status_code == 200
    assert bare("POST", "/mcp/ghost", MCP, data=INITIALIZE, headers=RPC_HEADERS).status_code == 404
    assert bare("POST", "/mcp/demo", MCP, data=INITIALIZE, headers=RPC_HEADERS).status_code == 401
    assert bare("POST", "/mcp/plain", MCP, data=INITIALIZE, headers=RPC_HEADERS).status_code == 502

    # Logged in: the status object with a token, a refresh, a logout.
    svc.login("demo")
    assert api("GET", "/api/v1/servers/demo", "/api/v1/servers/{name}").json()["data"]["oauth_status"] == \
        "authenticated"
    assert api("GET", "/api/v1/servers", "/api/v1/servers").status_code == 200
    assert api("POST", "/api/v1/servers/demo/refresh", "/api/v1/servers/{name}/refresh").status_code == 200
    assert bare("POST", "/mcp/demo", MCP, data=INITIALIZE, headers=RPC_HEADERS).status_code == 200
    assert api("POST", "/api/v1/servers/demo/logout", "/api/v1/servers/{name}/logout").status_code == 200
    assert api("POST", "/api/v1/servers/plain/logout", "/api/v1/servers/{name}/logout").status_code == 400
    assert api("POST", "/api/v1/servers/ghost/logout", "/api/v1/servers/{name}/logout").status_code == 404
    assert api("POST", "/api/v1/servers/logout", "/api/v1/servers/logout").status_code == 200
    assert api("GET", "/api/v1/servers/demo", "/api/v1/servers/{name}").json()["data"]["user_logged_out"]

    # The security middleware's answers.
    for path, template in (("/api/v1/status", "/api/v1/status"), ("/metrics", "/metrics"),
                           ("/api/v1/openapi.json", "/api/v1/openapi.json")):
        assert bare("GET", path, template).status_code == 401
        assert bare("GET", path, template, headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401
        assert bare("GET", path, template, headers={**svc.headers, "Host": f"evil.example:{svc.port}"}
                    ).status_code == 421
    assert bare("POST", "/api/v1/servers/demo/logout", "/api/v1/servers/{name}/logout",
                headers={**svc.headers, "Origin": "http://evil.example"}).status_code == 403
    assert bare("GET", "/events", "/events", headers={**svc.headers, "Origin": "http://evil.example"}
                ).status_code == 403
    assert bare("GET", "/events", "/events").status_code == 401
    assert bare("GET", "/events", "/events", headers={**svc.headers, "Last-Event-ID": "x"}).status_code == 400
    with requests.get(base + "/events", headers=svc.headers, stream=True, timeout=10) as r:
        checker.check("/events", "GET", r)
        assert r.status_code == 200
    assert bare("GET", "/oauth/callback", "/oauth/callback").status_code == 400
    assert bare("GET", "/oauth/callback?state=nope&code=x", "/oauth/callback").status_code == 400
    assert bare("GET", "/", "/").status_code in (200, 503)


def test_unknown_api_path_is_a_json_404(service: ServiceHandle) -> None:
    r = service.api("GET", "/api/v1/nope")
    assert r.status_code == 404
    assert r.json()["success"] is False


WRONG_METHODS = [("DELETE", "/api/v1/status"), ("PUT", "/api/v1/servers"), ("GET", "/api/v1/servers/demo/login"),
                 ("POST", "/api/v1/servers/demo"), ("DELETE", "/api/v1/servers/demo/logout")]


def test_wrong_method_on_a_known_api_path_is_405(service: ServiceHandle) -> None:
    # docs/architecture.md "REST contract": "wrong method 405"; the spec documents 405 on every /api operation.
    wrong = []
    for method, path in WRONG_METHODS:
        r = service.api(method, path)
        if r.status_code != 405 or r.json()["success"] is not False:
            wrong.append(f"{method} {path} → {r.status_code} {r.text.strip()}")
    assert not wrong, "wrong methods not answered 405:\n" + "\n".join(wrong)
