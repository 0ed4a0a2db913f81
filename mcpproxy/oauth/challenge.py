"""`WWW-Authenticate` challenges (RFC 9110 §11.6.1) and what mcpproxy reads from them.

The one parser for the whole service: discovery reads a 401's `resource_metadata` (RFC 9728 §5.1)
and `scope`; the pass-through reads a 403's `error="insufficient_scope"` (RFC 6750 §3.1). Pure
string work, no imports beyond the standard library, so the gateway can use it on its event loop.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import NamedTuple

# RFC 9110 §5.6.2: tchar.
_TCHAR = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
# RFC 9110 §11.2: token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
_TOKEN68 = frozenset("-._~+/" + string.ascii_letters + string.digits)
_WS = " \t"


class Challenge(NamedTuple):
    """One challenge: its scheme (lowercased), its auth-params (names lowercased, values unquoted;
    the first of a repeated name wins) and its token68 when it carries one instead."""

    scheme: str
    params: dict[str, str]
    token68: str | None = None


def parse_challenges(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one `WWW-Authenticate` value or in a list of them (one per field line).

    Several field lines mean the same as one joined with commas (RFC 9110 §5.3). Never raises:
    malformed parts are skipped.
    """
    header = values if isinstance(values, str) else ", ".join(values)
    return _parse(header)


def bearer_params(values: str | Iterable[str]) -> dict[str, str]:
    """The auth-params of the first Bearer challenge (RFC 6750 §3); {} when there is none."""
    for challenge in parse_challenges(values):
        if challenge.scheme == "bearer":
            return challenge.params
    return {}


def resource_metadata_url(values: str | Iterable[str]) -> str | None:
    """RFC 9728 §5.1: the protected-resource metadata URL a Bearer challenge names, else None."""
    return bearer_params(values).get("resource_metadata") or None


def insufficient_scope(values: str | Iterable[str]) -> tuple[str, ...]:
    """The scopes a Bearer `error="insufficient_scope"` challenge asks for (RFC 6750 §3.1), else ().

    Takes the `WWW-Authenticate` values of one answer (e.g. aiohttp's `headers.getall(...)`).
    """
    for challenge in parse_challenges(values):
        if challenge.scheme == "bearer" and challenge.params.get("error") == "insufficient_scope":
            # RFC 6749 §3.3: scope tokens are separated by spaces; a comma belongs to a token.
            return tuple(challenge.params.get("scope", "").split())
    return ()


def _parse(header: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    n = len(header)
    i = 0

    def skip_ws(j: int) -> int:
        while j < n and header[j] in _WS:
            j += 1
        return j

    def read(j: int, chars: frozenset[str]) -> tuple[str, int]:
        start = j
        while j < n and header[j] in chars:
            j += 1
        return header[start:j], j

    while i < n:
        i = skip_ws(i)
        if i >= n:
            break
        if header[i] == ",":
            i += 1
            continue
        if header[i] == '"':
            _, i = _read_quoted(header, i)  # a stray quoted string: skip it whole
            continue
        name, i = read(i, _TCHAR)
        if not name:
            i += 1  # a stray character
            continue
        j = skip_ws(i)
        if j < n and header[j] == "=":
            # auth-param = token BWS "=" BWS ( token / quoted-string ), inside the last challenge.
            k = skip_ws(j + 1)
            if k < n and header[k] == '"':
                value, i = _read_quoted(header, k)
            else:
                value, i = read(k, _TCHAR)
                if not value:
                    i = k  # "name=" with nothing after it: no value to keep
                    continue
            if challenges:
                challenges[-1].params.setdefault(name.lower(), value)
            continue
        challenge = Challenge(name.lower(), {})
        i = j
        # challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
        token68, k = read(j, _TOKEN68)
        if token68:
            while k < n and header[k] == "=":
                k += 1
            after = skip_ws(k)
            if after >= n or header[after] == ",":
                challenge = challenge._replace(token68=header[j:k])
                i = after
        challenges.append(challenge)
    return challenges


def _read_quoted(header: str, i: int) -> tuple[str, int]:
    """A quoted-string starting at header[i] == '"': its unescaped value and the index after it."""
    out: list[str] = []
    i += 1
    n = len(header)
    while i < n:
        ch = header[i]
        if ch == "\\" and i + 1 < n:
            out.append(header[i + 1])  # RFC 9110 §5.6.4: quoted-pair
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    return "".join(out), i
