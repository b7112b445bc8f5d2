"""Chaos runs reuse the test fixtures: the same real cluster, servers and operator."""

from tests.conftest import pytest_plugins as test_plugins

pytest_plugins = test_plugins
