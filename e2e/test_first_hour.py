"""Issue 17 in the Web UI: the config banner, the client URL with its copy button, and one voice on the cards,
in the toasts and in the events panel. Debian's Chromium against the real service and test authorization server."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from e2e.test_webui import (
    EVENT_WAIT_MS,
    LONG_TTL,
    badge,
    card,
    demo_servers,
    event_rows,
    login_button,
    open_ui,
)
from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle


def test_a_refused_config_edit_shows_a_banner_until_the_file_is_fixed(page: Page, service: ServiceHandle) -> None:
    """Item 3 (and 1): a misspelt mcpServers keeps the running servers and says so on the page."""
    open_ui(page, service)
    banner = page.get_by_test_id("config-banner")
    expect(banner).to_have_count(0)
    good = service.config_path.read_text()
    doc = json.loads(good)
    doc["mcpServer"] = doc.pop("mcpServers")
    service.config_path.write_text(json.dumps(doc, indent=2))

    expect(banner).to_be_visible(timeout=EVENT_WAIT_MS)
    expect(banner).to_have_attribute("role", "alert")
    expect(banner.get_by_role("heading")).to_have_text(
        "Your last edit of the config file was not applied: mcpproxy keeps running the previous configuration.")
    expect(banner.get_by_test_id("config-problem")).to_have_text(
        [re.compile(r"mcpServer: unknown setting; did you mean 'mcpServers'\?")])
    expect(banner).to_contain_text(str(service.config_path))
    expect(card(page, "demo")).to_be_visible()  # the servers are still there
    expect(card(page, "plain")).to_be_visible()

    service.config_path.write_text(good)
    expect(banner).to_have_count(0, timeout=EVENT_WAIT_MS)


def test_each_card_shows_its_client_url_and_copies_it(page: Page, service: ServiceHandle) -> None:
    """Item 6: the address a person pastes into an MCP client, one click from the clipboard."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service.base_url)
    open_ui(page, service)
    for name in ("demo", "plain"):
        expect(card(page, name).get_by_test_id("client-url")).to_have_text(f"{service.base_url}/mcp/{name}")
    copy = card(page, "demo").get_by_role("button", name="Copy the MCP client URL of demo", exact=True)
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == f"{service.base_url}/mcp/demo"
    expect(copy).to_have_text("Copy", timeout=5000)


def test_a_disabled_server_reads_disabled_and_offers_no_login(
        page: Page, service_factory: ServiceFactory, mcp_server: MCPServerHandle) -> None:
    """Item 8: no Log in button for a server the service holds no session for."""
    svc = service_factory([*demo_servers(mcp_server),
                           {"name": "off", "url": mcp_server.url, "protocol": "http", "oauth": {}, "enabled": False}])
    open_ui(page, svc)
    expect(badge(page, "off")).to_have_text("Disabled")
    expect(login_button(page, "off")).to_have_count(0)
    expect(card(page, "off").get_by_role("button", name=re.compile("Log (in|out)"))).to_have_count(0)
    expect(login_button(page, "demo")).to_be_visible()


def test_a_failed_login_closes_its_tab_names_the_server_and_the_events_speak_the_uis_words(
        page: Page, service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    """Item 8: the person denies access; the sign-in tab closes, the toast says which server, and the events
    panel says "login failed", not the internal reason."""
    auth_server.set_config(access_ttl=LONG_TTL, auto_approve=False)
    open_ui(page, service)
    with page.expect_popup() as popup_info:
        login_button(page).click()
    popup = popup_info.value
    popup.wait_for_url(f"{auth_server.base_url}/authorize?**", timeout=EVENT_WAIT_MS)
    with popup.expect_event("close", timeout=EVENT_WAIT_MS):
        popup.locator("#deny").click()
    assert popup.is_closed()

    notice = page.get_by_test_id("notice").filter(has_text="Could not log in to demo")
    expect(notice).to_be_visible(timeout=EVENT_WAIT_MS)
    expect(notice).to_contain_text("access_denied")
    rows = event_rows(page, "servers.changed").filter(has_text="login failed")
    expect(rows.first).to_be_visible(timeout=EVENT_WAIT_MS)
    expect(rows.first).to_contain_text("Not logged in · login failed: ")
    expect(page.get_by_test_id("events-panel")).not_to_contain_text("login_failed")
    expect(page.get_by_test_id("events-panel")).not_to_contain_text(re.compile(r"\bnone ·"))
