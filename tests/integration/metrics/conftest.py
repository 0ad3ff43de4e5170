"""Fixtures for the metrics tests: the prometheus binary and a Prometheus of a test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sloscale.sandbox.prometheus import PrometheusServer


@pytest.fixture
def scratch_prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[PrometheusServer]:
    """A Prometheus of the test's own (no targets), stopped at the end whatever happened."""
    with PrometheusServer(tmp_path / "prom", binary=prometheus_binary) as server:
        yield server
