"""mcpproxy.oauth.pkce (RFC 7636)."""

from __future__ import annotations

import re

import pytest

from mcpproxy.oauth.pkce import new_state, new_verifier, s256_challenge


def test_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_verifier_shape_and_uniqueness() -> None:
    verifiers = {new_verifier() for _ in range(200)}
    assert len(verifiers) == 200
    for v in verifiers:
        assert re.fullmatch(r"[A-Za-z0-9\-._~]{64}", v)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", s256_challenge(v))


@pytest.mark.parametrize("bad", ["short", "x" * 129, "a" * 42 + "!", "é" * 50])
def test_s256_refuses_invalid_verifiers(bad: str) -> None:
    with pytest.raises(ValueError):
        s256_challenge(bad)


def test_new_state() -> None:
    states = {new_state() for _ in range(200)}
    assert len(states) == 200
    for s in states:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", s)
        assert len(s) * 6 >= 128
