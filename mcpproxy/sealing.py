"""Records sealed at rest (docs/security.md "Tokens at rest"): AES-256-GCM, the record's name as associated data.

A sealed value is MAGIC | key id (4) | nonce (12) | ciphertext and tag. The associated data binds it to
its table and name (`oauth_tokens` + the server name, `oauth_clients` + the issuer), so a sealed record
copied under another server's name does not open. The key id tells "sealed with another key" apart from
"damaged". The bytes sealed are the record's own encoding: sealing knows nothing of its fields.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Not a msgpack map's first byte (0x80-0x8f, 0xde, 0xdf), so a plaintext record is never mistaken for one.
MAGIC = b"MPS1"
KEY_BYTES = 32
_NONCE = 12
_ID = 4
_HEAD = len(MAGIC) + _ID + _NONCE


def _warm_up() -> None:
    """OpenSSL sets up a cipher lazily, on first use: done here, at import — before the actors are forked —
    its tables are shared by every actor instead of being built again in each one."""
    aead = AESGCM(bytes(KEY_BYTES))
    aead.decrypt(bytes(_NONCE), aead.encrypt(bytes(_NONCE), b"warm", b"up"), b"up")


_warm_up()


class SealError(Exception):
    """A sealed value does not open; the message says why, without any secret."""

    def __init__(self, message: str, foreign: bool = False) -> None:
        super().__init__(message)
        self.foreign = foreign  # sealed with another data key, not damaged


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"mcpproxy data key id\0" + key).digest()[:_ID]


@dataclass(frozen=True)
class DataKey:
    """The store's data key and where it came from (`at_rest`: "keyring" or "key_file")."""

    key: bytes = field(repr=False)
    source: str
    where: str  # for people: "the OS keyring (SecretService)" or the key file's path

    @property
    def id(self) -> str:
        return key_id(self.key).hex()


def is_sealed(value: bytes) -> bool:
    return value[:len(MAGIC)] == MAGIC


def sealed_key_id(value: bytes) -> bytes:
    """The id of the key a sealed value was sealed with."""
    return value[len(MAGIC):len(MAGIC) + _ID]


class Sealer:
    def __init__(self, key: DataKey) -> None:
        if len(key.key) != KEY_BYTES:
            raise ValueError("a data key has 32 bytes")
        self.key = key
        self._aead = AESGCM(key.key)
        self._id = key_id(key.key)

    @staticmethod
    def _aad(table: bytes, name: str) -> bytes:
        return b"mcpproxy\0" + table + b"\0" + name.encode()

    def seal(self, table: bytes, name: str, plain: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return MAGIC + self._id + nonce + self._aead.encrypt(nonce, plain, self._aad(table, name))

    def open(self, table: bytes, name: str, sealed: bytes) -> bytes:
        if not is_sealed(sealed) or len(sealed) < _HEAD + 16:
            raise SealError("it is not a sealed record")
        if sealed[len(MAGIC):len(MAGIC) + _ID] != self._id:
            raise SealError(f"it is sealed with another data key, not the one from {self.key.where}", foreign=True)
        nonce = sealed[len(MAGIC) + _ID:_HEAD]
        try:
            return self._aead.decrypt(nonce, sealed[_HEAD:], self._aad(table, name))
        except InvalidTag:
            raise SealError("it does not open with the data key (damaged, or stored under another name)") from None

    def foreign(self, sealed: bytes) -> bool:
        """Sealed, but with another data key."""
        return is_sealed(sealed) and sealed_key_id(sealed) != self._id
