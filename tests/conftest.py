"""Shared fixtures: each plugin module brings up one kind of real server."""

pytest_plugins: list[str] = [
    "localcluster.pytest_plugin",
    "tests.servers.notify",
    "tests.servers.datatx",
    "tests.servers.storage",
    "tests.servers.fts3",
    "tests.servers.rucio",
    "tests.servers.filesender",
]
