"""mcpproxy's benchmarks (issue 7): `python -m bench` runs every figure against the real service on loopback."""
