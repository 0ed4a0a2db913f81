"""mcpproxy — keeps every OAuth-protected MCP server a person uses logged in."""

__version__ = "0.1.0"
