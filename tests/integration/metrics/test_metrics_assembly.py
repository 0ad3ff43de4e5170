"""Snapshot assembly from canned Prometheus answers: every way an answer can be right or wrong.

The answers are shaped exactly as `/api/v1/query` returns `data.result` for the expressions in
`sloscale.promql` (grouped by namespace and service label, `le` for histograms).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from metrics_results import snapshot, unavailable

from sloscale import promql
from sloscale.metrics_source import MalformedAnswer, Result, ServiceKey, assemble, parse_vector
from sloscale.scaling.snapshot import Unavailability

NOW = 1_800_000_000.0
QUERIES = promql.QuerySet(rate_window_s=60, stale_after_s=90)
CHAT: ServiceKey = ("team-a", "chat")
BATCH: ServiceKey = ("team-b", "chat")  # same name, other namespace: a different service
TTFT_LE = ("0.1", "0.25", "0.5", "1.0", "+Inf")


def element(key: ServiceKey, value: object, **labels: str) -> dict[str, Any]:
    namespace, name = key
    return {
        "metric": {"namespace": namespace, "sloscale_service": name, **labels},
        "value": [NOW, value],
    }


def histogram(key: ServiceKey, per_le: dict[str, float]) -> list[dict[str, Any]]:
    return [element(key, str(v), le=le) for le, v in per_le.items()]


def healthy(key: ServiceKey, *, rps: float = 4.0) -> dict[str, list[dict[str, Any]]]:
    """A busy service with two pods: 4 req/s, TTFT mostly between 0.25 s and 0.5 s."""
    ttft = dict(zip(TTFT_LE, (0.0, 0.4 * rps, 0.9 * rps, rps, rps), strict=True))
    latency = {"0.5": 0.0, "1.0": rps / 2, "2.5": rps, "+Inf": rps}
    return {
        promql.PODS: [element(key, "2")],
        promql.LAST_SEEN: [element(key, str(NOW - 1))],
        "running": [element(key, "12")],
        "waiting": [element(key, "3")],
        "kv_usage": [element(key, "0.75")],
        "requests": [element(key, str(rps))],
        "prompt_tokens": [element(key, str(rps * 500))],
        "generation_tokens": [element(key, str(rps * 200))],
        "preemptions": [element(key, "0.05")],
        "ttft": histogram(key, ttft),
        "itl": histogram(key, {"0.025": 0.0, "0.05": 190 * rps, "+Inf": 199 * rps}),
        "e2e": histogram(key, latency),
        "queue_time": histogram(key, {"0.1": rps, "+Inf": rps}),
        "prefill_time": histogram(key, latency),
        "decode_time": histogram(key, latency),
        "itl_sum": [element(key, str(199 * rps * 0.03))],
        "finished_prompt_tokens": [element(key, str(rps * 480))],
        "finished_generation_tokens": [element(key, str(rps * 210))],
    }


def merge(*answers: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    merged: dict[str, list[dict[str, Any]]] = {}
    for answer in answers:
        for key, elements in answer.items():
            merged.setdefault(key, []).extend(elements)
    return merged


def run(raw: dict[str, list[dict[str, Any]]], *services: ServiceKey) -> dict[ServiceKey, Result]:
    grouped = {key: parse_vector(result, "sloscale_service") for key, result in raw.items()}
    return assemble(grouped, services or (CHAT,), NOW, QUERIES)


def test_a_healthy_answer_becomes_a_snapshot_with_every_number() -> None:
    s = snapshot(run(healthy(CHAT))[CHAT])
    assert (s.taken_at, s.window_s, s.pods_reporting) == (NOW, 60, 2)
    assert (s.requests_per_s, s.prompt_tokens_per_s, s.generation_tokens_per_s) == (
        4.0,
        2000.0,
        800.0,
    )
    assert (s.running, s.waiting, s.kv_usage, s.preemptions_per_s) == (12.0, 3.0, 0.75, 0.05)
    assert s.ttft.bounds == (0.1, 0.25, 0.5, 1.0, math.inf)
    assert s.ttft.counts == (0.0, 1.6, 3.6, 4.0, 4.0)
    assert s.ttft.quantile(0.5) == pytest.approx(0.25 + 0.25 * (2.0 - 1.6) / 2.0)
    assert s.itl.total == pytest.approx(796.0)
    assert s.queue_time.fraction_within(0.1) == 1.0
    assert not s.zero_traffic
    # The sums the capacity fit pairs: 0.03 s mean step, 3.6 sequences decoding across the pods
    # (seconds of inter-token latency per second), the prompt and output mix of finished requests.
    assert s.itl_seconds_per_s == pytest.approx(23.88)
    assert s.itl_tokens_per_s == pytest.approx(796.0)
    assert s.itl_seconds_per_s / s.itl_tokens_per_s == pytest.approx(0.03)
    assert (s.finished_prompt_tokens_per_s, s.finished_generation_tokens_per_s) == (1920.0, 840.0)


def test_bucket_edges_come_from_the_le_labels_in_any_order() -> None:
    raw = healthy(CHAT)
    raw["ttft"] = histogram(CHAT, {"+Inf": 2.0, "7": 2.0, "0.003": 0.5, "1e-3": 0.0})
    s = snapshot(run(raw)[CHAT])
    assert s.ttft.bounds == (0.001, 0.003, 7.0, math.inf)
    assert s.ttft.counts == (0.0, 0.5, 2.0, 2.0)


def test_a_bucket_dipping_below_its_predecessor_is_repaired_as_histogram_quantile_does() -> None:
    raw = healthy(CHAT)
    # rate() extrapolates each bucket on its own, so neighbours can disagree by a little.
    raw["ttft"] = histogram(CHAT, {"0.1": 1.0, "0.5": 0.98, "+Inf": 2.0})
    assert snapshot(run(raw)[CHAT]).ttft.counts == (1.0, 1.0, 2.0)


def test_services_are_told_apart_by_namespace_and_name() -> None:
    results = run(merge(healthy(CHAT, rps=4.0), healthy(BATCH, rps=9.0)), CHAT, BATCH)
    assert snapshot(results[CHAT]).requests_per_s == 4.0
    assert snapshot(results[BATCH]).requests_per_s == 9.0


def test_zero_traffic_from_live_pods_is_a_valid_snapshot() -> None:
    raw = healthy(CHAT, rps=0.0)
    raw["running"] = [element(CHAT, "0")]
    raw["waiting"] = [element(CHAT, "0")]
    s = snapshot(run(raw)[CHAT])
    assert s.zero_traffic
    assert s.pods_reporting == 2
    assert s.ttft.empty and s.ttft.quantile(0.99) is None


def test_idle_but_queueing_is_not_zero_traffic() -> None:
    raw = healthy(CHAT, rps=0.0)
    raw["running"] = [element(CHAT, "0")]
    raw["waiting"] = [element(CHAT, "5")]
    assert not snapshot(run(raw)[CHAT]).zero_traffic


def test_a_service_without_series_is_no_data() -> None:
    result = run(healthy(BATCH), CHAT)[CHAT]
    message = unavailable(result, Unavailability.NO_DATA).message
    assert 'namespace="team-a"' in message and 'sloscale_service="chat"' in message


def test_a_service_seen_before_but_silent_now_is_stale_with_its_age() -> None:
    raw = healthy(CHAT)
    raw[promql.PODS] = []
    raw[promql.LAST_SEEN] = [element(CHAT, str(NOW - 300))]
    message = unavailable(run(raw)[CHAT], Unavailability.STALE).message
    assert "300s" in message and "90s" in message


def test_zero_fresh_pods_is_stale_not_zero_traffic() -> None:
    raw = healthy(CHAT, rps=0.0)
    raw[promql.PODS] = [element(CHAT, "0")]
    unavailable(run(raw)[CHAT], Unavailability.STALE)


@pytest.mark.parametrize("family", [f.key for f in promql.FAMILIES if f.required])
def test_a_missing_required_family_is_no_data_naming_it(family: str) -> None:
    raw = healthy(CHAT)
    raw[family] = []
    message = unavailable(run(raw)[CHAT], Unavailability.NO_DATA).message
    assert f"vllm:{next(f for f in promql.FAMILIES if f.key == family).names[0]}" in message


def test_missing_optional_families_leave_a_usable_snapshot() -> None:
    raw = healthy(CHAT)
    for family in promql.FAMILIES:
        if not family.required:
            raw[family.key] = []
    s = snapshot(run(raw)[CHAT])
    assert s.queue_time.empty and s.prefill_time.bounds == ()
    assert (s.kv_usage, s.preemptions_per_s) == (0.0, 0.0)
    # Sums a pod does not export are unknown, not zero: the law falls back to its other readings.
    assert s.itl_seconds_per_s is None and s.itl_tokens_per_s is None
    assert s.finished_prompt_tokens_per_s is None and s.finished_generation_tokens_per_s is None


def test_kv_usage_a_hair_above_one_is_read_as_full() -> None:
    raw = healthy(CHAT)
    raw["kv_usage"] = [element(CHAT, "1.0000005")]  # float noise in vLLM's own fraction
    assert snapshot(run(raw)[CHAT]).kv_usage == 1.0


@pytest.mark.parametrize(
    ("family", "value"),
    [
        ("running", "NaN"),
        ("waiting", "+Inf"),
        ("requests", "-1"),
        ("kv_usage", "45"),
        ("generation_tokens", "x"),
    ],
)
def test_unusable_numbers_are_malformed(family: str, value: str) -> None:
    raw = healthy(CHAT)
    raw[family] = [element(CHAT, value)]
    assert family in unavailable(run(raw)[CHAT], Unavailability.MALFORMED).message


@pytest.mark.parametrize(
    ("buckets", "complaint"),
    [
        ({"0.1": 1.0, "0.5": 2.0}, "no +Inf bucket"),
        ({"0.1": 1.0, "fast": 1.5, "+Inf": 2.0}, "numeric le"),
        ({"0.1": 1.0, "NaN": 1.5, "+Inf": 2.0}, "le=nan"),
        ({"0.1": float("nan"), "+Inf": 2.0}, "rate nan"),
    ],
)
def test_broken_histograms_are_malformed(buckets: dict[str, float], complaint: str) -> None:
    raw = healthy(CHAT)
    raw["e2e"] = histogram(CHAT, buckets)
    assert complaint in unavailable(run(raw)[CHAT], Unavailability.MALFORMED).message


def test_a_histogram_series_without_le_is_malformed() -> None:
    raw = healthy(CHAT)
    raw["itl"] = [element(CHAT, "1.0")]
    unavailable(run(raw)[CHAT], Unavailability.MALFORMED)


def test_one_malformed_service_leaves_the_others_alone() -> None:
    broken = healthy(BATCH)
    broken["running"] = [element(BATCH, "NaN")]
    results = run(merge(healthy(CHAT), broken), CHAT, BATCH)
    snapshot(results[CHAT])
    unavailable(results[BATCH], Unavailability.MALFORMED)


def test_unreadable_sample_values_become_nan() -> None:
    grouped = parse_vector(
        [{"metric": {"namespace": "a", "sloscale_service": "b"}, "value": ["oops"]}],
        "sloscale_service",
    )
    assert math.isnan(grouped[("a", "b")][0].value)


def test_series_without_the_service_labels_are_not_ours() -> None:
    result = [
        {"metric": {"namespace": "a"}, "value": [NOW, "1"]},
        {"metric": {"namespace": "a", "app": "b"}, "value": [NOW, "1"]},
        {"metric": {"namespace": "a", "svc": "b"}, "value": [NOW, "2"]},
    ]
    assert parse_vector(result, "sloscale_service") == {}
    assert parse_vector(result, "svc")[("a", "b")][0].value == 2.0


@pytest.mark.parametrize(
    "result", [None, "vector", {"resultType": "vector"}, [1, 2], [{"value": [NOW, "1"]}]]
)
def test_an_answer_that_is_not_a_vector_is_refused(result: object) -> None:
    with pytest.raises(MalformedAnswer):
        parse_vector(result, "sloscale_service")
