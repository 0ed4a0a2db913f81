"""`python -m tests.mcpserver --port 0 --as-url http://127.0.0.1:ASPORT [--scopes "mcp:read"] [--name demo]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from types import FrameType

from tests.mcpserver.server import HABITS, serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.mcpserver", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--as-url", required=True, help="base URL (issuer) of the authorization server")
    parser.add_argument("--scopes", default="mcp:read", help="space-separated scopes_supported")
    parser.add_argument("--required-scope", default=None, help="refuse tokens without this scope (403)")
    parser.add_argument("--name", default="test", help="server name (MCP serverInfo and resource_name)")
    parser.add_argument("--log-level", default="WARNING", help="Python log level for stderr")
    parser.add_argument("--issuer", default=None, help="the issuer to name in the resource metadata (default: the "
                                                       "AS's metadata says)")
    parser.add_argument("--habit", action="append", default=[], choices=sorted(HABITS), metavar="NAME",
                        help="imitate an MCP server's habit (repeatable; tests/oauthserver/README.md \"Habits\")")
    return parser.parse_args(argv)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit 0 instead of dying by it.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format=f"%(asctime)s {args.name} %(levelname)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per introspection is noise
    asyncio.run(
        serve(
            as_url=args.as_url,
            port=args.port,
            scopes=args.scopes.split(),
            required_scope=args.required_scope,
            name=args.name,
            issuer=args.issuer,
            habits=tuple(dict.fromkeys(args.habit)),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
