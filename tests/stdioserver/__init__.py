"""A stdio MCP server on the SDK, for the supervised-child and aggregate tests: `python -m tests.stdioserver`."""
