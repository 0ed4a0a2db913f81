"""Proof Key for Code Exchange (RFC 7636) and the `state` value."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import string

# RFC 7636 §4.1: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~", 43 to 128 characters.
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
VERIFIER_LENGTH = 64


def new_verifier() -> str:
    """A fresh code_verifier: 64 characters from the unreserved set (~380 bits)."""
    return "".join(secrets.choice(_UNRESERVED) for _ in range(VERIFIER_LENGTH))


def s256_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(ASCII(code_verifier))) without padding (RFC 7636 §4.2)."""
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("a code_verifier is 43-128 characters from [A-Za-z0-9-._~]")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """A fresh, unguessable `state` (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)
