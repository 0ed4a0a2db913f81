"""Browser tests of the Web UI (Playwright, Debian's Chromium)."""

from pathlib import Path

# Written on every run (badge-<state>.png, webui-*.png) and on failure (<test>.png); git-ignored.
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
