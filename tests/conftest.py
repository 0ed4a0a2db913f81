"""Fixtures that start real servers on loopback and stop what they start."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ServiceHandle, make_service
from tests.mcpserver.control import MCPServerHandle, start_mcp_server
from tests.oauthserver.control import OAuthServerHandle, start_oauth_server


@pytest.fixture
def auth_server() -> Iterator[OAuthServerHandle]:
    """A test authorization server with 2 s access tokens (tests may change it with set_config)."""
    with start_oauth_server(access_ttl=2.0) as handle:
        yield handle


@pytest.fixture
def mcp_server(auth_server: OAuthServerHandle) -> Iterator[MCPServerHandle]:
    with start_mcp_server(auth_server.base_url) as handle:
        yield handle


#: No test reaches the keyring of the person running them: the ones that test the keyring start their own
#: Secret Service (tests/security/test_at_rest.py); every other service uses its key file.
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


@pytest.fixture(autouse=True, scope="session")
def _own_config_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A service started without `key_file` makes its data key under $XDG_CONFIG_HOME: never the tester's."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))

ServiceFactory = Callable[..., ServiceHandle]


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[ServiceFactory]:
    """make(servers, threshold=…, start=True) → a running `mcpproxy serve`; all are stopped after the test."""
    made: list[ServiceHandle] = []

    def make(servers: list[dict[str, Any]], *, start: bool = True, subdir: str = "svc", **kw: Any) -> ServiceHandle:
        svc = make_service(tmp_path / subdir, servers, **kw)
        made.append(svc)
        return svc.start() if start else svc

    yield make
    for svc in made:
        svc.stop()
        assert not svc.pids(), f"processes left behind: {svc.pids()}"


@pytest.fixture
def service(service_factory: ServiceFactory, mcp_server: MCPServerHandle) -> ServiceHandle:
    """The service with one OAuth server ('demo', discovered) and one non-OAuth server ('plain')."""
    return service_factory([
        {"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}},
        {"name": "plain", "url": "http://127.0.0.1:9/mcp", "protocol": "http", "oauth": None},
    ])
