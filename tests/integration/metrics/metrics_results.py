"""Assertions on one service's metrics result, shared by the assembly and Prometheus tests."""

from __future__ import annotations

from sloscale.metrics_source import Result
from sloscale.scaling.snapshot import MetricsSnapshot, MetricsUnavailable, Unavailability


def snapshot(result: Result) -> MetricsSnapshot:
    """The result, which must be a snapshot."""
    assert isinstance(result, MetricsSnapshot), result
    return result


def unavailable(result: Result, reason: Unavailability) -> MetricsUnavailable:
    """The result, which must be "no data" for exactly `reason`."""
    assert isinstance(result, MetricsUnavailable), result
    assert result.reason is reason, result.message
    return result
