"""mcpproxy/datakey.py: where the data key lives when no keyring answers (the keyring itself: tests/security/test_at_rest.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mcpproxy import datakey


def test_the_key_file_is_made_private_outside_the_data_dir_and_read_back(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    data_dir = tmp_path / "data"
    first = datakey.load(data_dir)
    path = datakey.default_key_file(data_dir)
    assert first.source == "key_file" and first.where == str(path) and len(first.key) == 32
    assert path.is_relative_to(tmp_path / "config" / "mcpproxy" / "keys") and not path.is_relative_to(data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert datakey.load(data_dir).key == first.key
    assert datakey.default_key_file(tmp_path / "other") != path  # one key per data dir
    os.chmod(path, 0o644)
    assert datakey.load(data_dir).key == first.key and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_file_that_holds_no_key_is_moved_aside_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("not a key\n")
    key = datakey.load(tmp_path / "data", path)
    aside = list(tmp_path.glob("k.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_text() == "not a key\n"
    assert datakey.load(tmp_path / "data", path).key == key.key


def test_only_a_real_os_keyring_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    for backend in ("keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"):
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
        assert datakey.os_keyring() is None, backend
