"""The pre-fork login rehearsal (actors/warmup.py): it must really walk the login path, or it saves nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from actors import warmup
from mcpproxy import session as core
from mcpproxy.record import TokenRecord
from mcpproxy.store import TokenStore


def test_the_rehearsal_walks_a_whole_login_to_a_stored_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored: list[str] = []
    put_token = TokenStore.put_token

    def spy(self: TokenStore, name: str, record: TokenRecord) -> None:  # the real store, watched
        stored.append(record.access_token)
        put_token(self, name, record)

    monkeypatch.setattr(TokenStore, "put_token", spy)
    session = warmup.login_once(tmp_path)
    assert session.token is not None  # discovery, registration, code exchange and the persist all ran
    assert session.token.access_token == "warmup-access"
    assert stored == ["warmup-access"]  # through a real LMDB store in the given folder
    assert not session.pending and not session.logins  # nothing left half-done
    store = TokenStore(tmp_path, sealer=None)
    try:  # and the next round starts from an empty store again
        assert store.token_names() == []
    finally:
        store.close()


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
