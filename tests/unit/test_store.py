import os

import lmdb
import msgpack
import pytest

from mcpproxy.record import Problem, TokenRecord
from mcpproxy.sealing import DataKey, Sealer
from mcpproxy.store import SCHEMA_VERSION, RecordError, StoreError, TokenStore, open_or_set_aside

SEALER = Sealer(DataKey(os.urandom(32), "key_file", "a test key"))


def test_roundtrip_private_files_and_schema(tmp_path):
    s = TokenStore(tmp_path / "d", sealer=SEALER)
    s.check_schema()
    s.put_token("a", TokenRecord(access_token="x", expires_at=1.5))
    assert s.get_token("a") == TokenRecord(access_token="x", expires_at=1.5)
    assert s.get_token("missing") is None
    assert s.delete_token("a") and not s.delete_token("a")
    s.put_client("https://issuer", {"client_id": "c"})
    assert s.get_client("https://issuer") == {"client_id": "c"}
    s.close()
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
    for f in (tmp_path / "d" / "store").iterdir():
        assert f.stat().st_mode & 0o777 == 0o600, f


def test_an_unreadable_record_fails_alone(tmp_path):
    s = TokenStore(tmp_path, sealer=SEALER)
    s.put_token("good", TokenRecord(access_token="x"))
    with s.env.begin(write=True, db=s._tokens) as txn:
        txn.put(b"bad", b"\xc1\xff not msgpack")
    with pytest.raises(RecordError):
        s.get_token("bad")
    assert s.get_token("good") == TokenRecord(access_token="x")


def test_a_store_from_a_future_schema_is_moved_aside(tmp_path):
    s = TokenStore(tmp_path, sealer=SEALER)
    with s.env.begin(write=True, db=s._meta) as txn:
        txn.put(b"schema_version", msgpack.packb(SCHEMA_VERSION + 1))
    s.put_token("a", TokenRecord(access_token="x"))
    s.close()
    with pytest.raises(StoreError, match="newer mcpproxy"):
        TokenStore(tmp_path, sealer=SEALER).check_schema()
    fresh, note = open_or_set_aside(tmp_path, SEALER)
    assert note and "moved it to" in note and fresh.get_token("a") is None
    assert list(tmp_path.glob("store.unreadable-*"))


def test_a_corrupted_store_file_is_moved_aside(tmp_path):
    TokenStore(tmp_path, sealer=SEALER).close()
    (tmp_path / "store" / "data.mdb").write_bytes(b"\0garbage" * 1000)
    fresh, note = open_or_set_aside(tmp_path, SEALER)
    assert note is not None
    fresh.put_token("a", TokenRecord(access_token="y"))
    assert fresh.get_token("a") == TokenRecord(access_token="y")
    assert isinstance(lmdb.version(), tuple)


def test_records_written_by_the_first_schema_read_back(tmp_path):
    # The flat msgpack map every earlier version wrote, tombstone and failure included.
    s = TokenStore(tmp_path, sealer=SEALER)
    old = {"access_token": "a", "refresh_token": "r", "token_type": "Bearer", "scopes": ["x", "y"], "issued_at": 10,
           "expires_at": 20.5, "issuer": "https://i", "token_endpoint": "https://i/t", "revocation_endpoint": None,
           "client_id": "c", "client_secret": None, "resource": "https://r", "url": "https://r/mcp",
           "refresh_count": 3, "last_refresh_at": 15.0, "logged_in_at": 10.0, "generation": 7,
           "user_logged_out": False, "failed": {"kind": "invalid_grant", "message": "m"}, "something_new": 1}
    with s.env.begin(write=True, db=s._tokens) as txn:
        txn.put(b"old", msgpack.packb(old, use_bin_type=True))
        txn.put(b"tomb", msgpack.packb({"generation": 2, "user_logged_out": True}, use_bin_type=True))
        txn.put(b"wrong", msgpack.packb({"access_token": 5}, use_bin_type=True))
    rec = s.get_token("old")
    assert rec is not None and rec.scopes == ("x", "y") and rec.generation == 7 and rec.refresh_count == 3
    assert rec.failed == Problem("invalid_grant", "m") and rec.has_token
    # Kept since: a record without them authenticates by its secret and took its expiry from expires_in.
    assert rec.auth_method is None and rec.expires_from_jwt is False
    assert TokenRecord.decode(rec.encode()) == rec
    tomb = s.get_token("tomb")
    assert tomb == TokenRecord(generation=2, user_logged_out=True) and not tomb.has_token
    with pytest.raises(RecordError):
        s.get_token("wrong")
    assert "'a'" not in repr(rec) and "'r'" not in repr(rec)


# ---- sealed at rest (issue 12.3) -------------------------------------------------------------------


def _raw(s: TokenStore, db: object, key: bytes) -> bytes:
    with s.env.begin(db=db) as txn:
        return bytes(txn.get(key))


def test_records_and_registrations_are_sealed_and_bound_to_their_name(tmp_path):
    s = TokenStore(tmp_path, sealer=SEALER)
    s.put_token("a", TokenRecord(access_token="AT-secret", refresh_token="RT-secret", client_secret="CS-secret"))
    s.put_client("https://issuer", {"client_id": "c", "client_secret": "REG-secret"})
    for raw in (_raw(s, s._tokens, b"a"), _raw(s, s._clients, b"https://issuer")):
        assert raw.startswith(b"MPS1") and b"secret" not in raw
    # A sealed record copied under another server's name does not open there: the name is associated data.
    with s.env.begin(write=True, db=s._tokens) as txn:
        txn.put(b"b", _raw(s, s._tokens, b"a"))
    with pytest.raises(RecordError, match="does not open"):
        s.get_token("b")
    assert s.get_token("a") == TokenRecord(access_token="AT-secret", refresh_token="RT-secret",
                                           client_secret="CS-secret")
    s.close()
    # Another data key: the record is "sealed with another data key", the registration simply gone.
    other = TokenStore(tmp_path, sealer=Sealer(DataKey(os.urandom(32), "key_file", "another key")))
    with pytest.raises(RecordError, match="another data key, not the one from another key"):
        other.get_token("a")
    assert other.get_client("https://issuer") is None
    assert other.foreign_tokens() == ["a", "b"]


def test_plaintext_from_before_sealing_reads_and_is_sealed_in_place(tmp_path):
    plain = TokenStore(tmp_path, sealer=None)  # what today's version writes
    plain.put_token("a", TokenRecord(access_token="AT-plain", refresh_token="RT-plain"))
    plain.put_client("https://issuer", {"client_id": "c", "client_secret": "REG-plain"})
    assert b"RT-plain" in _raw(plain, plain._tokens, b"a")
    plain.close()
    s = TokenStore(tmp_path, sealer=SEALER)
    assert s.get_token("a") == TokenRecord(access_token="AT-plain", refresh_token="RT-plain")
    assert s.seal_plaintext() == 2 and s.seal_plaintext() == 0
    assert b"plain" not in _raw(s, s._tokens, b"a") and b"plain" not in _raw(s, s._clients, b"https://issuer")
    assert s.get_token("a") == TokenRecord(access_token="AT-plain", refresh_token="RT-plain")
    assert s.get_client("https://issuer") == {"client_id": "c", "client_secret": "REG-plain"}
    assert s.foreign_tokens() == []


def test_what_a_refresh_needs_without_discovery_is_stored(tmp_path):
    """docs/providers.md, HubSpot: endpoint, client, its authentication method and resource travel with the token."""
    s = TokenStore(tmp_path, sealer=SEALER)
    rec = TokenRecord(access_token="a", refresh_token="r", token_endpoint="https://i/oauth/v1/token",
                      client_id="c", client_secret="s", auth_method="client_secret_post", resource="https://r",
                      expires_at=None, expires_from_jwt=False)
    s.put_token("hub", rec)
    assert s.get_token("hub") == rec
    with pytest.raises(RecordError):
        TokenRecord.from_dict({"access_token": "a", "expires_from_jwt": "yes"})
