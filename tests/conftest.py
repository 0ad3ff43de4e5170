"""Fixtures every test area shares."""

from __future__ import annotations

import os

import pytest

from sloscale.sandbox.prometheus import PrometheusNotInstalled, find_binary


@pytest.fixture(scope="session")
def prometheus_binary(request: pytest.FixtureRequest) -> str:
    """The prometheus binary. Without one the test is skipped — except in CI (CI=true), where
    its absence fails the test instead: CI must run every test that needs a real Prometheus."""
    try:
        return find_binary()
    except PrometheusNotInstalled as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the tests that need Prometheus ({request.node.name}): {missing}")
        pytest.skip(str(missing))
