"""Where the store's data key lives (docs/security.md "Tokens at rest"): the OS keyring, else a key file.

The OS keyring (Secret Service on a Linux desktop, the Keychain on macOS) where one answers, through
`keyring`; only a real OS keyring counts, never a plaintext or "null" backend. Else a 0600 file
outside the data dir: the config's `key_file`, by default ~/.config/mcpproxy/keys/<data dir id>.key.
One key per data dir. A missing key is made anew (the servers sealed with the old one then need a
login); a key file that does not hold a key is moved aside, never overwritten.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcpproxy.sealing import KEY_BYTES, DataKey, key_id

log = logging.getLogger("mcpproxy.store")

KEYRING_SERVICE = "mcpproxy"
#: keyring backends that keep secrets in the OS's own protected store; others (plaintext files, "null") do not count.
OS_KEYRINGS = ("keyring.backends.SecretService", "keyring.backends.libsecret", "keyring.backends.kwallet",
               "keyring.backends.macOS", "keyring.backends.Windows")


class DataKeyError(Exception):
    """No data key can be had or made; the message names the place."""


def default_key_file(data_dir: Path) -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    digest = hashlib.sha256(str(data_dir.expanduser().resolve()).encode()).hexdigest()[:16]
    return base / "mcpproxy" / "keys" / f"{digest}.key"


def keyring_user(data_dir: Path) -> str:
    return f"data key of {data_dir.expanduser().resolve()}"


def os_keyring() -> Any | None:
    """The OS keyring backend when the platform has one; None otherwise."""
    try:
        import keyring
        from keyring.backends.chainer import ChainerBackend

        chosen = keyring.get_keyring()
    except Exception:  # noqa: BLE001 — no usable keyring library is the same as no keyring
        return None
    for backend in (chosen.backends if isinstance(chosen, ChainerBackend) else [chosen]):
        if type(backend).__module__ in OS_KEYRINGS:
            try:
                if backend.priority > 0:
                    return backend
            except Exception:  # noqa: BLE001, S112 — not viable here (no D-Bus session, …)
                continue
    return None


def _encode(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def _decode(text: str) -> bytes | None:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def load(data_dir: Path, key_file: Path | None = None, sealed_with: Mapping[bytes, int] | None = None) -> DataKey:
    """The data key of this data dir, made when there is none yet.

    sealed_with counts the store's records by the id of the key that sealed them: when the keyring holds
    one key and the key file another (a service that started once while the keyring did not answer), the
    key that sealed the store wins, so a store does not flip between two keys from one start to the next."""
    path = key_file or default_key_file(data_dir)
    backend = os_keyring()
    if backend is not None:
        found = _from_keyring(backend, data_dir, path)
        if found is not None:
            counts = sealed_with or {}
            other = _read_file(path) if counts else None
            if other is not None and counts.get(key_id(other), 0) > counts.get(key_id(found.key), 0):
                log.warning("store: %s holds another data key than the key file %s, which sealed the store; using "
                            "the key file", found.where, path)
                return DataKey(other, "key_file", str(path))
            return found
    return _from_file(path)


def _from_keyring(backend: Any, data_dir: Path, path: Path) -> DataKey | None:
    where = f"the OS keyring ({type(backend).__module__.rsplit('.', 1)[-1]})"
    user = keyring_user(data_dir)
    try:
        text = backend.get_password(KEYRING_SERVICE, user)
        key = _decode(text) if text else None
        if key is not None:
            return DataKey(key, "keyring", where)
        if text:
            log.error("store: the data key in %s is not a key; making a new one — sealed servers need login", where)
        adopted = _read_file(path)  # a key file from before the keyring answered: its key moves in
        key = adopted or os.urandom(KEY_BYTES)
        backend.set_password(KEYRING_SERVICE, user, _encode(key))
        if _decode(backend.get_password(KEYRING_SERVICE, user) or "") != key:
            raise RuntimeError("the key read back differs")
    except Exception as e:  # noqa: BLE001 — a keyring that does not answer: the key file
        log.warning("store: %s did not answer (%s); using the key file %s", where, type(e).__name__, path)
        return None
    if adopted:
        log.info("store: the data key from %s is now kept in %s; the file can be deleted", path, where)
    else:
        log.info("store: made a new data key in %s", where)
    return DataKey(key, "keyring", where)


def _read_file(path: Path) -> bytes | None:
    try:
        return _decode(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None


def _from_file(path: Path) -> DataKey:
    where = str(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        text = None
    except OSError as e:
        raise DataKeyError(f"key_file {path}: cannot be read: {e.strerror}") from None
    if text is not None:
        key = _decode(text.decode(errors="replace"))
        if key is not None:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
                log.warning("store: the key file %s could be read by others; made it 0600", path)
            return DataKey(key, "key_file", where)
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, aside)
        log.error("store: the key file %s does not hold a data key; moved it to %s and made a new one — "
                  "sealed servers need login", path, aside)
    key = os.urandom(KEY_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process: that one counts
        found = _read_file(path)
        if found is None:
            raise DataKeyError(f"key_file {path}: does not hold a data key") from None
        return DataKey(found, "key_file", where)
    except OSError as e:
        raise DataKeyError(f"key_file {path}: cannot be created: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(_encode(key) + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.info("store: made a new data key in %s", path)
    return DataKey(key, "key_file", where)
