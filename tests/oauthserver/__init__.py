"""A real OAuth 2.1 authorization server on loopback for tests, the demo and benchmarks.

Run alone with ``python -m tests.oauthserver --port 0``; from tests use
:func:`start_oauth_server`, which runs it as a subprocess and returns a control handle.
"""

from .control import OAuthServerError, OAuthServerHandle, pkce_pair, start_oauth_server

__all__ = ["OAuthServerError", "OAuthServerHandle", "pkce_pair", "start_oauth_server"]
