"""``python -m tests.oauthserver --port 0`` — run the test authorization server alone."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .server import serve
from .state import HABITS, Config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.oauthserver",
                                description="Test OAuth 2.1 authorization server (loopback).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--access-ttl", type=float, default=3600.0, help="access token lifetime, s")
    p.add_argument("--refresh-ttl", type=float, default=86400.0, help="refresh token lifetime, s")
    p.add_argument("--no-rotate", action="store_true", help="keep refresh tokens on refresh")
    p.add_argument("--consent", action="store_true", help="show a consent page at /authorize")
    p.add_argument("--no-pkce-metadata", action="store_true",
                   help="leave code_challenge_methods_supported out of the metadata")
    p.add_argument("--scopes", default="mcp:read mcp:write", help="space-separated scopes")
    p.add_argument("--habit", action="append", default=[], choices=sorted(HABITS), metavar="NAME",
                   help="a provider habit (README.md \"Habits\"); repeatable")
    p.add_argument("--verbose", action="store_true", help="one access line per request on stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s oauthserver %(levelname)s %(message)s",
    )
    config = Config(
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        rotate=not args.no_rotate,
        auto_approve=not args.consent,
        pkce_metadata=not args.no_pkce_metadata,
        scopes=args.scopes.split(),
        habits=list(dict.fromkeys(args.habit)),
    )
    asyncio.run(serve(args.host, args.port, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
