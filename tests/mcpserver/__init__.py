"""A test MCP server (Streamable HTTP, official SDK) protected by OAuth bearer tokens.

Run it with ``python -m tests.mcpserver --port 0 --as-url http://127.0.0.1:ASPORT``;
drive it from tests with :func:`tests.mcpserver.control.start_mcp_server`.
"""
