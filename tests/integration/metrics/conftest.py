"""Fixtures for the metrics tests: the prometheus binary and a Prometheus of a test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sloscale.sandbox.prometheus import PrometheusNotInstalled, PrometheusServer, find_binary


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """The prometheus binary; in CI (CI=true) its absence fails the tests instead of skipping."""
    try:
        return find_binary()
    except PrometheusNotInstalled as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Prometheus tests: {missing}")
        pytest.skip(str(missing))


@pytest.fixture
def scratch_prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[PrometheusServer]:
    """A Prometheus of the test's own (no targets), stopped at the end whatever happened."""
    with PrometheusServer(tmp_path / "prom", binary=prometheus_binary) as server:
        yield server
