"""The pre-fork login rehearsal (actors/warmup.py): it must really walk the login path, or it saves nothing."""

from __future__ import annotations

import logging

import pytest

from actors import warmup
from mcpproxy import session as core


def test_the_rehearsal_walks_a_whole_login_to_a_stored_token() -> None:
    session = warmup.login_once()
    assert session.token is not None  # discovery, registration, code exchange and the persist all ran
    assert session.token.access_token == "warmup-access"
    assert not session.pending and not session.logins  # nothing left half-done


def test_a_rehearsal_that_fails_is_logged_and_does_not_stop_the_start(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("the session core changed")

    monkeypatch.setattr(core, "step", broken)
    with caplog.at_level(logging.WARNING, logger="mcpproxy.warmup"):
        warmup.rehearse()
    assert any("rehearsal failed (RuntimeError" in r.getMessage() for r in caplog.records)


def test_a_working_rehearsal_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="mcpproxy.warmup"):
        warmup.rehearse()
    assert not caplog.records
