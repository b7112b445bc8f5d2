"""Shared fixtures: each plugin module brings up one kind of real server."""

pytest_plugins: list[str] = []
