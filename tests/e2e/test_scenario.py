"""The scenario parts the demo and the end-to-end tests share: load shaping, status samples, the
client-side judgement and the scorecard (no cluster needed)."""

from __future__ import annotations

import numpy as np
import pytest
from e2e_support import AZURE_CONV

from sloscale.sandbox.loadgen import RequestRecord
from sloscale.sandbox.scenario import (
    Sample,
    replica_seconds,
    sample_of,
    scorecard,
    shaped_trace,
    shown_seconds,
    window_quantiles,
)
from sloscale.traces import Trace, constant, load_trace

needs_trace = pytest.mark.skipif(not AZURE_CONV.is_file(), reason=f"{AZURE_CONV} is missing")


@needs_trace
def test_a_shaped_trace_follows_the_envelope_with_the_trace_own_requests() -> None:
    source = load_trace(AZURE_CONV)
    rates = [2.0, 2.0, 8.0, 8.0, 1.0]
    shaped = shaped_trace(source, rates, 30.0, start_s=600.0, compression=4.0, seed=3)
    per_window = shaped.rate_per_window(30.0)[: len(rates)]
    assert np.allclose(per_window, rates, rtol=0.3), per_window
    assert shaped.duration_s < len(rates) * 30.0
    # Sizes are the trace's own: every (input, output) pair occurs in the slice replayed.
    pairs = set(zip(source.input_tokens.tolist(), source.output_tokens.tolist(), strict=True))
    assert (
        set(zip(shaped.input_tokens.tolist(), shaped.output_tokens.tolist(), strict=True)) <= pairs
    )
    again = shaped_trace(source, rates, 30.0, start_s=600.0, compression=4.0, seed=3)
    assert np.array_equal(again.arrival_s, shaped.arrival_s)


def test_a_shaped_trace_refuses_rates_it_cannot_follow() -> None:
    source = constant(5.0, 600.0)
    with pytest.raises(ValueError, match="positive rates"):
        shaped_trace(source, [1.0, 0.0], 10.0)
    with pytest.raises(ValueError, match="positive rates"):
        shaped_trace(source, [], 10.0)
    with pytest.raises(ValueError, match="too few requests"):
        shaped_trace(source, [1.0], 10.0, start_s=10_000.0)


@pytest.mark.parametrize(
    ("shown", "seconds"),
    [("850ms", 0.85), ("1.8s", 1.8), ("42s", 42.0), ("2m5s", 125.0), ("inf", float("inf"))],
)
def test_durations_are_read_as_status_shows_them(shown: str, seconds: float) -> None:
    assert shown_seconds(shown) == pytest.approx(seconds)


@pytest.mark.parametrize("shown", [None, "", "850 tok/s", "1.8s and more", "fast"])
def test_values_that_are_not_durations_read_as_none(shown: str | None) -> None:
    assert shown_seconds(shown) is None


def record(scheduled: float, ttft: float | None, *, error: str | None = None) -> RequestRecord:
    ok = error is None
    return RequestRecord(
        index=0, scheduled_s=scheduled, sent_s=scheduled, status=200 if ok else 503, error=error,
        ttft_s=ttft, e2e_s=(ttft or 0.0) + 1.0 if ok else None, output_tokens=10 if ok else 0,
    )  # fmt: skip


def test_windows_judge_each_span_of_requests_by_its_percentile_and_failures() -> None:
    records = [record(t, 0.2) for t in np.arange(0.0, 10.0, 0.5)]  # window 0: fast
    records += [
        record(10.0 + t, 3.0 if t < 1.5 else 0.2) for t in np.arange(0.0, 10.0, 0.5)
    ]  # slow tail
    records += [record(25.0, 0.1), record(26.0, None, error="timeout")]  # window 2: one failure
    windows = window_quantiles(records, 10.0, 0.9)
    assert [w.requests for w in windows] == [20, 20, 2]
    assert [w.failed for w in windows] == [0, 0, 1]
    assert [w.met(1.0) for w in windows] == [True, False, False]
    assert windows[0].value_s == pytest.approx(0.2)
    assert window_quantiles([], 10.0, 0.9) == []
    empty = window_quantiles([record(25.0, 0.1)], 10.0, 0.9)[0]
    assert empty.requests == 0 and empty.met(1.0) is None


def test_gpu_time_integrates_the_pods_that_ran() -> None:
    samples = [
        Sample(0.0, pods=1),
        Sample(10.0, pods=3),
        Sample(20.0, pods=2),
        Sample(30.0, pods=2),
    ]
    assert replica_seconds(samples) == pytest.approx(1 * 10 + 3 * 10 + 2 * 10)
    assert replica_seconds(samples, until_s=15.0) == pytest.approx(1 * 10 + 3 * 5)
    assert replica_seconds(samples[:1]) == 0.0


def test_the_scorecard_counts_windows_gpu_hours_and_announced_decisions() -> None:
    records = [record(t, 0.3) for t in np.arange(0.0, 60.0, 1.0)] + [record(61.0, 5.0)]
    samples = [
        Sample(0.0, replicas=1, pods=1, attainment="98.0%"),
        Sample(1800.0, replicas=3, pods=4),  # a surge pod during a roll costs, but is no replica
        Sample(3600.0, replicas=1, pods=1),
    ]
    events = [
        {"reason": "ScaledUp", "count": 2},
        {"reason": "ScaledDown"},
        {"reason": "WorkloadCreated"},
        {"reason": "ObjectiveMissed"},
    ]
    card = scorecard(records, samples, events, target_s=1.0, percentile=0.99, window_s=30.0)
    assert (card.windows, card.windows_met, card.met_fraction) == (3, 2, pytest.approx(2 / 3))
    assert (card.requests, card.failed) == (61, 0)
    assert card.p50_s == pytest.approx(0.3) and card.p99_s is not None and card.p99_s > 0.3
    assert card.gpu_hours == pytest.approx(0.5 + 2.0)
    assert (card.peak_replicas, card.static_peak_gpu_hours) == (3, pytest.approx(3.0))
    assert card.decisions == {"ScaledUp": 2, "ScaledDown": 1}
    assert card.operator_attainment == "98.0%"
    # At a speed-up, an hour of GPU time is an hour of model time.
    assert scorecard(
        records, samples, events, target_s=1.0, percentile=0.99, window_s=30.0, speedup=10
    ).gpu_hours == pytest.approx(25.0)


def test_a_sample_reads_what_a_user_watches_and_tolerates_missing_objects() -> None:
    isvc = {
        "metadata": {"generation": 3},
        "status": {
            "observedGeneration": 3,
            "replicas": {"current": 2, "ready": 1, "desired": 4},
            "batch": {"current": 16, "desired": 32},
            "observed": {"value": "1.8s", "queue": 37},
            "objective": {"met": False, "attainment": "97.5%"},
            "lastDecision": {
                "action": "ScaleUp",
                "reason": "QueueingDelay",
                "time": "2026-01-01T00:00:00Z",
            },
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ObjectiveMet", "status": "False"},
            ],
        },
    }
    deployment = {"spec": {"replicas": 4}, "status": {"replicas": 3}}
    s = sample_of(5.0, isvc, deployment)
    assert (s.replicas, s.ready, s.desired, s.batch, s.batch_desired) == (2, 1, 4, 16, 32)
    assert (s.observed_s, s.queue, s.met, s.attainment) == (1.8, 37, False, "97.5%")
    assert (s.action, s.reason, s.generation, s.observed_generation) == (
        "ScaleUp",
        "QueueingDelay",
        3,
        3,
    )
    assert s.conditions == {"Ready": "True", "ObjectiveMet": "False"}
    assert (s.deployment_replicas, s.pods) == (4, 3)
    bare = sample_of(1.0, None, None)
    assert (bare.replicas, bare.observed_s, bare.pods, bare.conditions) == (None, None, None, {})


def test_a_trace_with_too_few_requests_for_a_rate_is_refused() -> None:
    tiny = Trace(np.array([0.0]), np.array([10]), np.array([10]))
    with pytest.raises(ValueError, match="too few requests"):
        shaped_trace(tiny, [1.0], 10.0)
