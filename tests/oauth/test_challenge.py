"""mcpproxy.oauth.challenge: the one WWW-Authenticate parser (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9728 §5.1)."""

from __future__ import annotations

import pytest

from mcpproxy.oauth.challenge import (
    Challenge,
    bearer_params,
    insufficient_scope,
    parse_challenges,
    resource_metadata_url,
)


@pytest.mark.parametrize(
    ("header", "params"),
    [
        (
            'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"',
            {"resource_metadata": "https://mcp.example.com/.well-known/oauth-protected-resource"},
        ),
        (
            'Bearer realm="mcp", error="invalid_token", error_description="The token \\"expired\\"",'
            ' scope="files:read files:write", resource_metadata="https://x/prm"',
            {
                "realm": "mcp",
                "error": "invalid_token",
                "error_description": 'The token "expired"',
                "scope": "files:read files:write",
                "resource_metadata": "https://x/prm",
            },
        ),
        (
            'Basic realm="a", Bearer scope="s1", RESOURCE_METADATA="https://x/m"',
            {"scope": "s1", "resource_metadata": "https://x/m"},
        ),
        ("Basic dGVzdA==, Bearer error=invalid_token", {"error": "invalid_token"}),
        ('bearer  scope = "a b" , realm=r', {"scope": "a b", "realm": "r"}),
        ('Bearer realm="x,y", scope="a"', {"realm": "x,y", "scope": "a"}),
        ("Bearer", {}),
        ('Basic realm="x"', {}),
        ("", {}),
        ('Bearer realm="unterminated', {"realm": "unterminated"}),
        ('Bearer scope="a", Negotiate abc=, Other x="y"', {"scope": "a"}),
        ('DPoP algs="ES256", Bearer realm="m"', {"realm": "m"}),
    ],
)
def test_bearer_params(header: str, params: dict[str, str]) -> None:
    assert bearer_params(header) == params


def test_parse_challenges_keeps_every_scheme_and_token68() -> None:
    header = 'Basic dGVzdA==, Bearer realm="a,b", scope="x", Negotiate, DPoP algs="ES256 PS256"'
    assert parse_challenges(header) == [
        Challenge("basic", {}, "dGVzdA=="),
        Challenge("bearer", {"realm": "a,b", "scope": "x"}),
        Challenge("negotiate", {}),
        Challenge("dpop", {"algs": "ES256 PS256"}),
    ]


def test_several_field_lines_are_one_list() -> None:
    # RFC 9110 §5.3: two field lines mean the same as one joined with a comma.
    lines = ['Basic realm="x"', 'Bearer error="insufficient_scope"', 'scope="a b"']
    assert parse_challenges(lines) == [
        Challenge("basic", {"realm": "x"}),
        Challenge("bearer", {"error": "insufficient_scope", "scope": "a b"}),
    ]
    assert insufficient_scope(lines) == ("a", "b")


@pytest.mark.parametrize(
    ("values", "scopes"),
    [
        (['Bearer error="insufficient_scope", scope="files:read files:write"'], ("files:read", "files:write")),
        # A comma inside the quoted scope belongs to a scope token (RFC 6749 §3.3 allows it).
        (['Bearer error="insufficient_scope", scope="a,b c", resource_metadata="https://x/m"'], ("a,b", "c")),
        # Several challenges in one header: the Bearer one counts, wherever it stands.
        (['Basic realm="r", Bearer realm="m", error="insufficient_scope", scope="mcp:write"'], ("mcp:write",)),
        (['DPoP error="insufficient_scope", scope="dpop", Bearer error="insufficient_scope", scope="b"'], ("b",)),
        # The first field line without the error, the second with it.
        (['Bearer error="invalid_token"', 'Bearer error="insufficient_scope", scope="s"'], ("s",)),
        (["Bearer error=insufficient_scope, scope=s1"], ("s1",)),  # tokens, not quoted strings
        (['Bearer error="insufficient_scope", scope="a \\"b\\""'], ("a", '"b"')),
        (['Bearer error="insufficient_scope"'], ()),
        (['Bearer error="invalid_token", scope="a"'], ()),
        (['Basic error="insufficient_scope", scope="a"'], ()),
        ([], ()),
        ([""], ()),
    ],
)
def test_insufficient_scope(values: list[str], scopes: tuple[str, ...]) -> None:
    assert insufficient_scope(values) == scopes


@pytest.mark.parametrize(
    ("values", "url"),
    [
        ('Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"',
         "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"),
        (['Basic realm="x"', 'Bearer realm="m", resource_metadata="https://a/m?x=1,2"'], "https://a/m?x=1,2"),
        ('Bearer resource_metadata=""', None),
        ('DPoP resource_metadata="https://a/m"', None),
        ("Bearer", None),
    ],
)
def test_resource_metadata_url(values: str | list[str], url: str | None) -> None:
    assert resource_metadata_url(values) == url


@pytest.mark.parametrize(
    "garbage",
    ['"', "=", ",,,", '=""', 'Bearer ="x"', "Bearer realm=", "\\", "Bearer a=\\", "Bearer\t\t", "é ü"],
)
def test_never_raises_on_garbage(garbage: str) -> None:
    parse_challenges(garbage)
    assert insufficient_scope([garbage]) == ()
