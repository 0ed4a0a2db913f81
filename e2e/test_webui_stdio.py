"""The Web UI card of a stdio server and of a server left out of /mcp (docs/architecture.md "stdio servers"),
in a real browser, updating live from SSE."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from playwright.sync_api import Page, expect

from e2e.test_webui import assert_not_reloaded, card, mark_page, open_ui
from tests.conftest import ServiceFactory
from tests.mcpserver.control import MCPServerHandle

ROOT = Path(__file__).resolve().parents[1]


def test_a_stdio_card_shows_its_process_tools_and_restarts_live(page: Page, service_factory: ServiceFactory,
                                                                mcp_server: MCPServerHandle) -> None:
    svc = service_factory([
        {"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}},
        {"name": "local", "protocol": "stdio", "command": sys.executable,
         "args": ["-m", "tests.stdioserver", "--name", "local"], "working_dir": str(ROOT)},
    ])
    first = svc.wait_status("local", lambda s: s.get("connected") is True, 30, "the stdio child connected")
    open_ui(page, svc)
    navigations = mark_page(page)
    local = card(page, "local")
    expect(local.get_by_test_id("tools")).to_have_text("5 in /mcp")
    expect(local.get_by_test_id("process")).to_have_text(f"running · pid {first['pid']}")
    expect(local.get_by_test_id("restarts")).to_have_text("0 times")
    # The OAuth server is left out of /mcp until a login, and its card says why.
    expect(card(page, "demo").get_by_test_id("tools")).to_contain_text("not in /mcp — needs a login")

    os.kill(first["pid"], signal.SIGKILL)
    expect(local.get_by_test_id("restarts")).to_have_text("1 time", timeout=20_000)
    expect(local.get_by_test_id("process")).not_to_have_text(f"running · pid {first['pid']}")
    expect(local.get_by_test_id("tools")).to_have_text("5 in /mcp", timeout=20_000)
    assert_not_reloaded(page, navigations)
