"""The Web UI in Debian's Chromium against the real service and the test authorization server.

Each test gets its own service (it starts in about a second). Every wait is Playwright's
auto-wait with an explicit deadline. Screenshots of each badge state are written to
e2e/screenshots/badge-<state>.png on every run; docs/webui.md describes them.
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any

from playwright.sync_api import Browser, Locator, Page, Request, expect

from e2e import SCREENSHOTS
from tests.conftest import ServiceFactory
from tests.faults import one_pid
from tests.harness import ServiceHandle
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle

# Auth-server round trips on a loaded 2-core machine: generous, but far below pytest's timeout.
EVENT_WAIT_MS = 10_000
LONG_TTL = 900.0  # 15 min: nothing refreshes or expires during a test, and no warning


def demo_servers(mcp: MCPServerHandle) -> list[dict[str, Any]]:
    return [
        {"name": "demo", "url": mcp.url, "protocol": "http", "oauth": {}},
        {"name": "plain", "url": "http://127.0.0.1:9/mcp", "protocol": "http", "oauth": None},
    ]


def open_ui(page: Page, svc: ServiceHandle) -> None:
    """Opens the page the way a person does (key in the address) and waits for the live stream."""
    page.goto(f"{svc.base_url}/?apikey={svc.api_key}")
    expect(page.get_by_test_id("connection")).to_have_text("Live", timeout=EVENT_WAIT_MS)
    expect(page.get_by_test_id("server-card-demo")).to_be_visible()


def card(page: Page, name: str = "demo") -> Locator:
    return page.get_by_test_id(f"server-card-{name}")


def badge(page: Page, name: str = "demo") -> Locator:
    return card(page, name).get_by_test_id("auth-badge")


def login_button(page: Page, name: str = "demo") -> Locator:
    return card(page, name).get_by_role("button", name=f"Log in to {name}", exact=True)


def logout_button(page: Page, name: str = "demo") -> Locator:
    return card(page, name).get_by_role("button", name=f"Log out of {name}", exact=True)


def event_rows(page: Page, event: str, server: str = "demo") -> Locator:
    rows = page.get_by_test_id("events-panel").get_by_test_id("event-row")
    return (rows.filter(has=page.get_by_test_id("event-name").filter(has_text=re.compile(rf"^{re.escape(event)}$")))
                .filter(has=page.get_by_test_id("event-server").filter(has_text=re.compile(rf"^{server}$"))))


def mark_page(page: Page) -> list[str]:
    """Leaves a marker in the page and records main-frame navigations: proof that nothing reloads."""
    page.evaluate("window.__e2eMarker = 'still here'")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    return navigations


def assert_not_reloaded(page: Page, navigations: list[str]) -> None:
    assert page.evaluate("window.__e2eMarker") == "still here", "the page was reloaded"
    assert navigations == [], f"the page navigated: {navigations}"


def shoot_badge(page: Page, state: str, name: str = "demo") -> None:
    """The card with its badge, for docs/webui.md and the issue's closing note."""
    SCREENSHOTS.mkdir(exist_ok=True)
    card(page, name).screenshot(path=str(SCREENSHOTS / f"badge-{state}.png"), animations="disabled")


def shoot_page(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled")


# ---- tests ------------------------------------------------------------------------------------


def test_not_logged_in_card_offers_login(page: Page, service: ServiceHandle) -> None:
    open_ui(page, service)
    expect(badge(page)).to_have_text("Not logged in")
    expect(login_button(page)).to_be_visible()
    expect(logout_button(page)).to_have_count(0)
    expect(card(page).get_by_test_id("expiry")).to_have_count(0)
    # A non-OAuth server is listed, without a single auth button.
    expect(badge(page, "plain")).to_have_text("No OAuth")
    expect(card(page, "plain").get_by_role("button", name=re.compile(r"^(Log|Refresh)"))).to_have_count(0)
    expect(card(page, "plain").get_by_role("button")).to_have_count(1)  # only the client URL's Copy
    expect(page.get_by_test_id("count-total")).to_have_text("2 servers")
    expect(page.get_by_test_id("count-none")).to_have_text("1 without token")
    shoot_badge(page, "not-logged-in")


def test_valid_token_hides_login_and_warns_under_five_minutes(
        page: Page, service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=200)
    open_ui(page, service)
    status = service.login("demo")
    assert status["oauth_status"] == "authenticated" and status["action"] is None

    expect(badge(page)).to_have_text("Authenticated", timeout=EVENT_WAIT_MS)
    expect(login_button(page)).to_have_count(0)
    expect(logout_button(page)).to_be_visible()
    expiry = card(page).get_by_test_id("expiry")
    expect(expiry).to_have_text(re.compile(r"^in [1-4]m \d{1,2}s$"))
    expect(expiry).to_have_class(re.compile(r"\bwarning\b"))
    expect(expiry).to_have_attribute("datetime", status["token_expires_at"])
    expect(page.get_by_test_id("count-authenticated")).to_have_text("1 authenticated")
    shoot_badge(page, "authenticated")

    # Refresh now with a longer lifetime: the countdown leaves the warning zone, live.
    auth_server.set_config(access_ttl=LONG_TTL)
    card(page).get_by_role("button", name="Refresh now for demo", exact=True).click()
    expect(expiry).to_have_text(re.compile(r"^in 14m \d{1,2}s$"), timeout=EVENT_WAIT_MS)
    expect(expiry).not_to_have_class(re.compile(r"\bwarning\b"))
    expect(card(page).get_by_test_id("refresh-count")).to_have_text(re.compile(r"^1 time · last "))
    expect(event_rows(page, "oauth.token_refreshed").first).to_be_visible()
    expect(login_button(page)).to_have_count(0)


def test_expired_token_shows_login_even_while_otherwise_connected(
        page: Page, service_factory: ServiceFactory, mcp_server: MCPServerHandle,
        auth_server: OAuthServerHandle) -> None:
    # Threshold 1.0: no proactive refresh, so the 2 s token simply runs out.
    svc = service_factory(demo_servers(mcp_server), threshold=1.0)
    open_ui(page, svc)
    svc.login("demo")
    expect(badge(page)).to_have_text("Token Expired", timeout=EVENT_WAIT_MS)
    # Otherwise connected: the upstream MCP server answered the service's probe — with a token now expired,
    # so the card does not also say "reachable" (issue 17.8).
    status = svc.wait_status("demo", lambda s: s["connected"] is not None, 10, "the upstream probe")
    assert status["oauth_status"] == "expired" and status["connected"] is True, status
    expect(card(page).get_by_test_id("connected")).to_have_count(0)
    expect(card(page)).not_to_contain_text("reachable")

    expect(login_button(page)).to_be_visible()
    expect(logout_button(page)).to_be_visible()  # the expired token is still held
    expiry = card(page).get_by_test_id("expiry")
    expect(expiry).to_have_text("EXPIRED", timeout=3000)
    expect(expiry).to_have_class(re.compile(r"\bexpired\b"))
    expect(page.get_by_test_id("count-expired")).to_have_text("1 expired")
    shoot_badge(page, "token-expired")


def test_login_opens_authorization_in_new_tab_and_card_turns_authenticated(
        page: Page, service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=LONG_TTL)
    open_ui(page, service)
    navigations = mark_page(page)
    requests: list[str] = []
    page.context.on("request", lambda request: requests.append(request.url))

    with page.expect_popup() as popup_info:
        login_button(page).click()
    popup = popup_info.value
    # about:blank → the AS's /authorize (auto-approves) → our /oauth/callback.
    popup.wait_for_url(f"{service.base_url}/oauth/callback?**", timeout=EVENT_WAIT_MS)
    expect(popup.get_by_role("heading")).to_have_text("Logged in", timeout=EVENT_WAIT_MS)
    authorize = [u for u in requests if u.startswith(f"{auth_server.base_url}/authorize?")]
    assert len(authorize) == 1, requests
    assert "code_challenge_method=S256" in authorize[0] and "state=" in authorize[0]

    expect(badge(page)).to_have_text("Authenticated", timeout=EVENT_WAIT_MS)
    expect(login_button(page)).to_have_count(0)
    expect(logout_button(page)).to_be_visible()
    expect(event_rows(page, "oauth.login_completed").first).to_be_visible()
    assert_not_reloaded(page, navigations)
    popup.close()


def test_logout_asks_first_and_card_shows_login_within_3s_without_reload(
        page: Page, service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=LONG_TTL)
    service.login("demo")
    open_ui(page, service)
    expect(badge(page)).to_have_text("Authenticated")
    navigations = mark_page(page)
    logout_posts: list[Request] = []
    page.on("request", lambda r: logout_posts.append(r) if r.method == "POST" and "/logout" in r.url else None)
    dialog = page.get_by_role("dialog")

    # Escape cancels: nothing is sent, the session stays.
    logout_button(page).click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Log out of demo?")
    expect(dialog.get_by_test_id("confirm")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(badge(page)).to_have_text("Authenticated")
    expect(logout_button(page)).to_be_focused()  # focus goes back where it was
    assert logout_posts == []
    assert service.status("demo")["oauth_status"] == "authenticated"

    # Confirm: the card shows Login within 3 s, from the event, without a reload.
    logout_button(page).click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Log out", exact=True).click()
    expect(login_button(page)).to_be_visible(timeout=3000)
    expect(badge(page)).to_have_text("Logged out", timeout=3000)
    expect(logout_button(page)).to_have_count(0)
    expect(dialog).to_be_hidden()
    assert len(logout_posts) == 1
    assert service.status("demo")["user_logged_out"] is True
    expect(event_rows(page, "oauth.logout").first).to_be_visible(timeout=EVENT_WAIT_MS)
    assert_not_reloaded(page, navigations)
    shoot_badge(page, "logged-out")


def test_log_out_of_all_is_keyboard_operable(
        page: Page, service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=LONG_TTL)
    service.login("demo")
    open_ui(page, service)
    expect(badge(page)).to_have_text("Authenticated")
    page.get_by_test_id("logout-all").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Log out of every server?")
    page.keyboard.press("Enter")  # the focused confirm button
    expect(dialog).to_be_hidden()
    expect(badge(page)).to_have_text("Logged out", timeout=3000)
    expect(login_button(page)).to_be_visible()
    expect(page.get_by_test_id("notice").filter(has_text="Logged out of 1 server.")).to_be_visible()


def test_log_out_of_all_names_the_server_that_failed_and_why(
        page: Page, service_factory: ServiceFactory, mcp_server: MCPServerHandle,
        auth_server: OAuthServerHandle) -> None:
    """One logout fails for real: the 'frozen' server's TokenActor process is stopped (SIGSTOP), so the
    service gets no answer from it and its result says so; the other server is logged out."""
    auth_server.set_config(access_ttl=LONG_TTL)
    svc = service_factory([*demo_servers(mcp_server), {"name": "frozen", "url": mcp_server.url, "protocol": "http",
                                                       "oauth": {}}])
    svc.login("demo")
    svc.login("frozen")
    open_ui(page, svc)
    expect(badge(page, "frozen")).to_have_text("Authenticated")
    pid = one_pid(svc, "mcpproxy:frozen")
    os.kill(pid, signal.SIGSTOP)
    try:
        page.get_by_test_id("logout-all").click()
        page.get_by_role("dialog").get_by_test_id("confirm").click()
        # The service waits 10 s for the frozen actor before it gives up on it.
        notice = page.get_by_test_id("notice").filter(has_text="Logged out of 1 of 2 servers")
        expect(notice).to_be_visible(timeout=30_000)
    finally:
        os.kill(pid, signal.SIGCONT)
    expect(notice).to_have_attribute("role", "alert")  # an error: it stays until dismissed
    expect(notice).to_contain_text("1 could not be logged out")
    expect(notice.get_by_test_id("notice-detail")).to_have_text(
        ["frozen: no answer to Logout within 10s"])
    expect(page.get_by_test_id("notice").filter(has_text="Logged out of 2 servers")).to_have_count(0)
    expect(badge(page)).to_have_text("Logged out", timeout=EVENT_WAIT_MS)
    shoot_page(page, "logout-all-partial-failure")


def test_refresh_events_then_invalid_grant_turns_card_to_auth_error(
        page: Page, service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    # 2 s tokens, threshold 0.8: the service refreshes every 1.6 s by itself.
    open_ui(page, service)
    service.login("demo")
    expect(event_rows(page, "oauth.token_refreshed").first).to_be_visible(timeout=EVENT_WAIT_MS)
    expect(card(page).get_by_test_id("refresh-count")).to_have_text(re.compile(r"^[1-9]\d* times? · last "))
    expect(badge(page)).to_have_text("Authenticated")
    shoot_page(page, "webui-refreshing")

    auth_server.set_fault("invalid_grant")
    expect(badge(page)).to_have_text("Auth Error", timeout=EVENT_WAIT_MS)
    expect(login_button(page)).to_be_visible()
    expect(card(page).get_by_test_id("last-error")).not_to_be_empty()
    expect(event_rows(page, "oauth.refresh_failed").first).to_be_visible(timeout=EVENT_WAIT_MS)
    expect(page.get_by_test_id("count-error")).to_have_text("1 error")
    status = service.status("demo")
    assert status["oauth_status"] == "error" and status["action"] == "login", status
    assert status["last_error"]["kind"] == "invalid_grant", status
    # The dead session can still be ended: its token is held until a logout.
    assert status["token_held"] is True
    expect(logout_button(page)).to_be_visible()
    # A refresh cannot help any more (the backend would answer 409): only Log in and Log out are offered.
    expect(card(page).get_by_test_id("refresh")).to_have_count(0)
    shoot_badge(page, "auth-error")


def test_an_outage_shows_since_when_how_often_and_when_next(
        page: Page, service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    # Issue 14, item 5: the card says "retrying since HH:MM, N attempts, next in Ns" during a failing
    # streak, and the events panel tells the streak in the UI's words after the 3rd attempt.
    open_ui(page, service)
    service.login("demo")
    expect(event_rows(page, "oauth.token_refreshed").first).to_be_visible(timeout=EVENT_WAIT_MS)
    auth_server.set_fault("503")
    expect(card(page).get_by_test_id("next-refresh")).to_have_text(
        re.compile(r"^retrying since \d\d:\d\d( [AP]M)?, [3-9] attempts, next in \d+s$"), timeout=3 * EVENT_WAIT_MS)
    row = event_rows(page, "oauth.refresh_failed").first
    expect(row).to_be_visible(timeout=EVENT_WAIT_MS)
    expect(row).to_contain_text("still retrying")
    shoot_badge(page, "retrying")
    auth_server.clear_fault()
    expect(card(page).get_by_test_id("next-refresh")).not_to_contain_text("retrying", timeout=6 * EVENT_WAIT_MS)


def test_small_screen_has_no_horizontal_scroll_and_dark_mode_renders(
        page: Page, service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=LONG_TTL)
    service.login("demo")
    page.set_viewport_size({"width": 360, "height": 740})
    open_ui(page, service)
    expect(badge(page)).to_have_text("Authenticated")

    def assert_fits() -> None:
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"horizontal scroll at 360 px: content {widths[0]} > view {widths[1]}"

    assert_fits()
    shoot_page(page, "webui-360-light")

    page.emulate_media(color_scheme="dark")
    expect(page.locator("body")).to_have_css("background-color", "rgb(18, 21, 27)")
    expect(card(page)).to_have_css("background-color", "rgb(26, 30, 38)")
    expect(page.locator("body")).to_have_css("color", "rgb(230, 233, 239)")
    assert_fits()
    shoot_page(page, "webui-360-dark")

    # The dialog fits too, and is dark.
    logout_button(page).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_css("background-color", "rgb(26, 30, 38)")
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360, box
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.set_viewport_size({"width": 1280, "height": 800})
    shoot_page(page, "webui-dark")


def test_api_key_leaves_address_bar_and_page(page: Page, service: ServiceHandle, browser: Browser) -> None:
    key = service.api_key
    open_ui(page, service)
    assert page.url == f"{service.base_url}/", page.url
    assert key not in page.content()
    assert page.evaluate("sessionStorage.getItem('mcpproxy.apikey')") == key
    # A reload in the same tab keeps working from sessionStorage, address still clean.
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_text("Live", timeout=EVENT_WAIT_MS)
    expect(badge(page)).to_have_text("Not logged in")
    assert page.url == f"{service.base_url}/"
    assert key not in page.content()

    # Another tab without the key, or with a wrong one, is told how to open the page.
    other = browser.new_context()
    try:
        bare = other.new_page()
        bare.goto(f"{service.base_url}/")
        expect(bare.get_by_test_id("apikey-missing")).to_contain_text("needs the mcpproxy API key")
        bare.goto(f"{service.base_url}/?apikey=wrong-key")
        expect(bare.get_by_test_id("apikey-missing")).to_contain_text("did not accept",
                                                                       timeout=EVENT_WAIT_MS)
        assert "wrong-key" not in bare.url
    finally:
        other.close()
