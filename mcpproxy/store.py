"""LMDB store (docs/architecture.md "Store"): one TokenRecord per server, registrations by issuer, schema in meta.

Open it inside the process that uses it, after fork, never before. Every write commits with
fsync before it returns, so a token is durable before anything uses or announces it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from mcpproxy.record import RecordError, TokenRecord, decode_map

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
    def __init__(self, data_dir: Path, *, readonly: bool = False) -> None:
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

    def get_token(self, name: str) -> TokenRecord | None:
        with self.env.begin(db=self._tokens) as txn:
            raw = txn.get(name.encode())
        return None if raw is None else TokenRecord.decode(raw, f"token record of {name!r}")

    def put_token(self, name: str, record: TokenRecord) -> None:
        with self.env.begin(write=True, db=self._tokens) as txn:
            txn.put(name.encode(), record.encode())

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
        try:
            return decode_map(raw, f"client registration for {issuer}")
        except RecordError:
            return None  # registering again is cheap and harmless

    def put_client(self, issuer: str, record: dict[str, Any]) -> None:
        with self.env.begin(write=True, db=self._clients) as txn:
            txn.put(issuer.encode(), msgpack.packb(record, use_bin_type=True))

    def delete_client(self, issuer: str) -> bool:
        with self.env.begin(write=True, db=self._clients) as txn:
            return bool(txn.delete(issuer.encode()))

    def close(self) -> None:
        self.env.close()


def open_or_set_aside(data_dir: Path) -> tuple[TokenStore, str | None]:
    """Opens the store; a corrupted or future-schema store is moved aside and a fresh one made.

    Returns the store and, when it had to move one aside, a sentence saying what it did.
    """
    try:
        store = TokenStore(data_dir)
        store.check_schema()
        return store, None
    except (StoreError, lmdb.Error) as e:
        reason = str(e)
    path = store_path(data_dir)
    aside = path.with_name(f"store.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, aside)
    store = TokenStore(data_dir)
    store.check_schema()
    note = f"{reason}; moved it to {aside} and started an empty store — servers need login"
    log.error("store: %s", note)
    return store, note
