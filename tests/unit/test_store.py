import lmdb
import msgpack
import pytest

from mcpproxy.store import SCHEMA_VERSION, RecordError, StoreError, TokenStore, open_or_set_aside


def test_roundtrip_private_files_and_schema(tmp_path):
    s = TokenStore(tmp_path / "d")
    s.check_schema()
    s.put_token("a", {"access_token": "x", "expires_at": 1.5})
    assert s.get_token("a") == {"access_token": "x", "expires_at": 1.5}
    assert s.get_token("missing") is None
    assert s.delete_token("a") and not s.delete_token("a")
    s.put_client("https://issuer", {"client_id": "c"})
    assert s.get_client("https://issuer") == {"client_id": "c"}
    s.close()
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
    for f in (tmp_path / "d" / "store").iterdir():
        assert f.stat().st_mode & 0o777 == 0o600, f


def test_an_unreadable_record_fails_alone(tmp_path):
    s = TokenStore(tmp_path)
    s.put_token("good", {"access_token": "x"})
    with s.env.begin(write=True, db=s._tokens) as txn:
        txn.put(b"bad", b"\xc1\xff not msgpack")
    with pytest.raises(RecordError):
        s.get_token("bad")
    assert s.get_token("good") == {"access_token": "x"}


def test_a_store_from_a_future_schema_is_moved_aside(tmp_path):
    s = TokenStore(tmp_path)
    with s.env.begin(write=True, db=s._meta) as txn:
        txn.put(b"schema_version", msgpack.packb(SCHEMA_VERSION + 1))
    s.put_token("a", {"access_token": "x"})
    s.close()
    with pytest.raises(StoreError, match="newer mcpproxy"):
        TokenStore(tmp_path).check_schema()
    fresh, note = open_or_set_aside(tmp_path)
    assert note and "moved it to" in note and fresh.get_token("a") is None
    assert list(tmp_path.glob("store.unreadable-*"))


def test_a_corrupted_store_file_is_moved_aside(tmp_path):
    TokenStore(tmp_path).close()
    (tmp_path / "store" / "data.mdb").write_bytes(b"\0garbage" * 1000)
    fresh, note = open_or_set_aside(tmp_path)
    assert note is not None
    fresh.put_token("a", {"access_token": "y"})
    assert fresh.get_token("a") == {"access_token": "y"}
    assert isinstance(lmdb.version(), tuple)
