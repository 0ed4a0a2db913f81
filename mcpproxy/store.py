"""LMDB store (docs/architecture.md "Store"): one TokenRecord per server, registrations by issuer, schema in meta.

Open it inside the process that uses it, after fork, never before. Every write commits with
fsync before it returns, so a token is durable before anything uses or announces it. With a
Sealer every token record and registration is sealed (mcpproxy/sealing.py) as it is written; a
plaintext one from an earlier version still reads, and `seal_plaintext` seals them all at start-up.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from mcpproxy.record import RecordError, TokenRecord, decode_map
from mcpproxy.sealing import Sealer, SealError, is_sealed, sealed_key_id

log = logging.getLogger("mcpproxy.store")

SCHEMA_VERSION = 1
MAP_SIZE = 256 * 1024 * 1024
#: One reader slot per process (and thread) that reads: a TokenActor each, plus headroom.
MAX_READERS = 2048
_TOKENS = b"oauth_tokens"
_CLIENTS = b"oauth_clients"
_META = b"meta"


class StoreError(Exception):
    """The store as a whole cannot be used."""


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def store_path(data_dir: Path) -> Path:
    return data_dir / "store"


class TokenStore:
    def __init__(self, data_dir: Path, *, sealer: Sealer | None, readonly: bool = False) -> None:
        """sealer None reads and writes plaintext, as versions before sealing did (tests and tools only)."""
        self.sealer = sealer
        self.path = store_path(data_dir)
        ensure_private_dir(data_dir)
        ensure_private_dir(self.path)
        old_umask = os.umask(0o077)
        try:
            self.env = lmdb.open(
                str(self.path),
                map_size=MAP_SIZE,
                max_dbs=4,
                max_readers=MAX_READERS,
                subdir=True,
                sync=True,
                metasync=True,
                readonly=readonly,
                mode=0o600,
            )
        except lmdb.Error as e:
            raise StoreError(f"{self.path}: cannot open the token store: {e}") from None
        finally:
            os.umask(old_umask)
        for f in self.path.iterdir():
            os.chmod(f, 0o600)
        self._tokens = self.env.open_db(_TOKENS)
        self._clients = self.env.open_db(_CLIENTS)
        self._meta = self.env.open_db(_META)

    # -- schema ----------------------------------------------------------------------------

    def check_schema(self) -> None:
        """Writes the schema version on first use; refuses a store written by a newer version."""
        with self.env.begin(write=True, db=self._meta) as txn:
            raw = txn.get(b"schema_version")
            if raw is None:
                txn.put(b"schema_version", msgpack.packb(SCHEMA_VERSION))
                return
            try:
                version = msgpack.unpackb(raw)
            except Exception:
                raise StoreError(f"{self.path}: the schema version record is unreadable") from None
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: written by a newer mcpproxy (schema {version!r}, this one reads {SCHEMA_VERSION})"
            )

    # -- tokens ----------------------------------------------------------------------------

    def _open(self, table: bytes, name: str, raw: bytes, what: str) -> bytes:
        if not is_sealed(raw):
            return raw  # plaintext from before sealing
        if self.sealer is None:
            raise RecordError(f"the {what} is sealed and no data key was given")
        try:
            return self.sealer.open(table, name, raw)
        except SealError as e:
            raise RecordError(f"the {what} cannot be read: {e}") from None

    def _seal(self, table: bytes, name: str, plain: bytes) -> bytes:
        return plain if self.sealer is None else self.sealer.seal(table, name, plain)

    def get_token(self, name: str) -> TokenRecord | None:
        with self.env.begin(db=self._tokens) as txn:
            raw = txn.get(name.encode())
        if raw is None:
            return None
        what = f"token record of {name!r}"
        return TokenRecord.decode(self._open(_TOKENS, name, raw, what), what)

    def put_token(self, name: str, record: TokenRecord) -> None:
        sealed = self._seal(_TOKENS, name, record.encode())
        with self.env.begin(write=True, db=self._tokens) as txn:
            txn.put(name.encode(), sealed)

    def delete_token(self, name: str) -> bool:
        with self.env.begin(write=True, db=self._tokens) as txn:
            return bool(txn.delete(name.encode()))

    def token_names(self) -> list[str]:
        with self.env.begin(db=self._tokens) as txn:
            return [k.decode() for k, _ in txn.cursor()]

    # -- dynamic client registrations (RFC 7591), keyed by issuer ------------------------------

    def get_client(self, issuer: str) -> dict[str, Any] | None:
        with self.env.begin(db=self._clients) as txn:
            raw = txn.get(issuer.encode())
        if raw is None:
            return None
        what = f"client registration for {issuer}"
        try:
            return decode_map(self._open(_CLIENTS, issuer, raw, what), what)
        except RecordError:
            return None  # registering again is cheap and harmless

    def put_client(self, issuer: str, record: dict[str, Any]) -> None:
        sealed = self._seal(_CLIENTS, issuer, msgpack.packb(record, use_bin_type=True))
        with self.env.begin(write=True, db=self._clients) as txn:
            txn.put(issuer.encode(), sealed)

    # -- sealing at start-up ---------------------------------------------------------------------

    def seal_plaintext(self) -> int:
        """Seals every plaintext record an earlier version wrote, in one transaction; how many it sealed."""
        if self.sealer is None:
            return 0
        count = 0
        with self.env.begin(write=True) as txn:
            for table, db in ((_TOKENS, self._tokens), (_CLIENTS, self._clients)):
                plain = [(k, v) for k, v in txn.cursor(db=db) if not is_sealed(v)]
                for k, v in plain:
                    txn.put(k, self.sealer.seal(table, k.decode(), v), db=db)
                count += len(plain)
        return count

    def foreign_tokens(self) -> list[str]:
        """The servers whose token record is sealed with another data key."""
        if self.sealer is None:
            return []
        with self.env.begin(db=self._tokens) as txn:
            return [k.decode() for k, v in txn.cursor() if self.sealer.foreign(v)]

    def delete_client(self, issuer: str) -> bool:
        with self.env.begin(write=True, db=self._clients) as txn:
            return bool(txn.delete(issuer.encode()))

    def close(self) -> None:
        self.env.close()


def sealing_key_ids(data_dir: Path) -> Counter[bytes]:
    """How many token records each data key id sealed: which key the store was sealed with (for datakey.load).

    Opened and closed again before the actor system forks; an unreadable or missing store counts nothing."""
    if not (store_path(data_dir) / "data.mdb").exists():
        return Counter()
    try:
        store = TokenStore(data_dir, sealer=None)
    except (StoreError, lmdb.Error):
        return Counter()
    try:
        with store.env.begin(db=store._tokens) as txn:
            return Counter(sealed_key_id(v) for _, v in txn.cursor() if is_sealed(v))
    except lmdb.Error:
        return Counter()
    finally:
        store.close()


def compact(data_dir: Path) -> None:
    """Rewrites the store file with its live pages only, so no freed page keeps what plaintext records held.

    Only while no process has the store open (the Supervisor at start-up, before any TokenActor)."""
    path = store_path(data_dir)
    tmp = path.with_name("store.compacting")
    shutil.rmtree(tmp, ignore_errors=True)
    ensure_private_dir(tmp)
    store = TokenStore(data_dir, sealer=None)
    try:
        store.env.copy(str(tmp), compact=True)
    finally:
        store.close()
    os.chmod(tmp / "data.mdb", 0o600)
    os.replace(tmp / "data.mdb", path / "data.mdb")
    shutil.rmtree(tmp, ignore_errors=True)


def open_or_set_aside(data_dir: Path, sealer: Sealer | None) -> tuple[TokenStore, str | None]:
    """Opens the store; a corrupted or future-schema store is moved aside and a fresh one made.

    Returns the store and, when it had to move one aside, a sentence saying what it did.
    """
    try:
        store = TokenStore(data_dir, sealer=sealer)
        store.check_schema()
        return store, None
    except (StoreError, lmdb.Error) as e:
        reason = str(e)
    path = store_path(data_dir)
    aside = path.with_name(f"store.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, aside)
    store = TokenStore(data_dir, sealer=sealer)
    store.check_schema()
    note = f"{reason}; moved it to {aside} and started an empty store — servers need login"
    log.error("store: %s", note)
    return store, note
