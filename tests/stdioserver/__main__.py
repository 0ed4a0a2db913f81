"""`python -m tests.stdioserver [--name NAME] [--crash-at-start]`: an SDK MCP server over stdin/stdout.

Its tools tell what the process sees — its PID, an environment variable, its working folder — so that
tests can prove a restart (a new PID), the environment isolation (no API key) and `working_dir`.
"""

from __future__ import annotations

import argparse
import os
import sys

from mcp.server.mcpserver import MCPServer


def build(name: str) -> MCPServer:
    mcp: MCPServer = MCPServer(name, instructions="mcpproxy stdio test server")

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool()
    def pid() -> str:
        """This process's PID."""
        return str(os.getpid())

    @mcp.tool()
    def getenv(name: str) -> str:
        """The value of an environment variable, or `<unset>`."""
        return os.environ.get(name, "<unset>")

    @mcp.tool()
    def environ_names() -> str:
        """The names of every environment variable, comma-separated, sorted."""
        return ",".join(sorted(os.environ))

    @mcp.tool()
    def cwd() -> str:
        """The working folder."""
        return os.getcwd()

    return mcp


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.stdioserver")
    parser.add_argument("--name", default="stdio-test")
    parser.add_argument("--crash-at-start", action="store_true", help="write to stderr and exit 3 at once")
    args = parser.parse_args()
    if args.crash_at_start:
        print("stdioserver: crashing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    print(f"stdioserver {args.name} starting, pid {os.getpid()}", file=sys.stderr, flush=True)
    build(args.name).run("stdio")


if __name__ == "__main__":
    main()
