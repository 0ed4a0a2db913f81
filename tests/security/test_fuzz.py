"""OpenAPI-driven fuzzing (issue 6): schemathesis against the running service's own /api/v1/openapi.json.

Bounded (30 examples per operation, a fixed seed; about 15 s) so it fits in `make test`; set
MCPPROXY_FUZZ_SEED to explore other inputs and MCPPROXY_FUZZ_EXAMPLES for more of them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from mcpproxy.gateway.openapi import spec
from tests.harness import ServiceHandle

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

# What a clean run means: no 5xx, every status, media type, header and body as documented, malformed input
# refused with a 4xx, and no operation that declares security answering without the key.
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection", "ignored_auth", "missing_required_header",
])
# Left out: positive_data_acceptance (400 for a server that does not use OAuth and 400 for an unknown login
# state are the contract, not a rejection of valid data) and unsupported_method (405 for a wrong method is
# tested in tests/gateway/test_openapi.py).


def test_fuzz_the_api_from_its_openapi_description(service: ServiceHandle, tmp_path: Path) -> None:
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is missing: install the test extras (pip install -e '.[test]')"
    svc = service
    served = svc.api("GET", "/api/v1/openapi.json").json()
    assert served == spec()
    svc.login("demo")  # so refresh and logout reach a held token before the fuzzer logs it out

    args = [
        str(SCHEMATHESIS), "run", f"{svc.base_url}/api/v1/openapi.json",
        "--header", f"X-API-Key: {svc.api_key}",
        # /events never ends; /mcp is the MCP pass-through, fuzzed by its own tests.
        "--exclude-path", "/events", "--exclude-path-regex", "^/mcp/",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--checks", CHECKS,
        "--max-examples", os.environ.get("MCPPROXY_FUZZ_EXAMPLES", "30"),
        "--seed", os.environ.get("MCPPROXY_FUZZ_SEED", "20240607"),
        "--request-timeout", "20",
        "--workers", "1",
        "--generation-database", "none",
        "--no-color",
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis found problems (exit {done.returncode}):\n{report[-12000:]}"
    generated = re.search(r"(\d+) generated", report)
    assert generated and int(generated.group(1)) >= 200, f"too few test cases ran:\n{report[-4000:]}"
    tested = re.search(r"Tested:\s+(\d+)", report)
    assert tested and int(tested.group(1)) >= 10, f"too few operations were tested:\n{report[-4000:]}"

    # Still healthy, and nothing went unhandled on the way.
    assert requests.get(f"{svc.base_url}/readyz", timeout=10).status_code == 200
    assert svc.api("GET", "/api/v1/servers").status_code == 200
    logs = svc.logs()
    # Malformed HTTP (the fuzzer's NULL-byte probe) is one "malformed HTTP request" warning, answered 400 by
    # aiohttp; "Error handling request" is left for what reached a handler and escaped it.
    unhandled = [m.group(0) for m in re.finditer(r"(Traceback|Error handling request|Unhandled).*(\n\s+\[(\w+)\])?", logs)]
    assert not unhandled, "the service logged unhandled errors while fuzzed:\n" + "\n".join(unhandled[:20])
