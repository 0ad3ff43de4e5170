"""From a spec to the flat policy the control law runs under, and what the schema cannot catch."""

from __future__ import annotations

from typing import Any

import pytest

from sloscale.resource import (
    InferenceServiceSpec,
    InferenceServiceStatus,
    OperatorDefaults,
    SpecError,
    format_duration,
    parse_duration,
    parse_percent,
    parse_spec,
    parse_status,
    resolve_policy,
)
from sloscale.scaling.policy import A100, H100, LatencyMetric, ObjectiveKind, RateLimit


def spec(**overrides: Any) -> InferenceServiceSpec:
    body: dict[str, Any] = {
        "model": "m",
        "objective": {
            "type": "Latency",
            "latency": {"metric": "TimeToFirstToken", "target": "800ms"},
        },
        "replicas": {"min": 2, "max": 10},
    }
    body.update(overrides)
    return InferenceServiceSpec.model_validate(body)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("800ms", 0.8), ("2s", 2.0), ("5m", 300.0), ("1h30m", 5400.0), ("1m30s500ms", 90.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1.5s", "10", "-1s", "1d"])
def test_parse_duration_rejects_what_the_crd_pattern_rejects(text: str) -> None:
    with pytest.raises(SpecError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.85, "850ms"), (1.8, "1.8s"), (42.0, "42s"), (125.0, "2m5s"), (600.0, "10m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_parse_percent() -> None:
    assert parse_percent("99.5%") == pytest.approx(0.995)
    assert parse_percent("100%") == 1.0
    with pytest.raises(SpecError):
        parse_percent("0.99")


def test_latency_spec_resolves_with_crd_defaults() -> None:
    policy = resolve_policy(spec())
    latency = policy.objective.latency
    assert policy.objective.kind is ObjectiveKind.LATENCY
    assert (latency.metric, latency.quantile, latency.target_s) == (LatencyMetric.TTFT, 0.99, 0.8)
    assert (latency.window_s, latency.attainment_goal) == (300.0, 0.99)
    assert (policy.min_replicas, policy.max_replicas) == (2, 10)
    assert policy.batching.enabled and (policy.batching.min_seqs, policy.batching.max_seqs) == (
        8,
        256,
    )
    assert policy.batching.cooldown_s == 900.0
    assert policy.tolerance == pytest.approx(0.10)
    assert policy.cold_start_s == 120.0
    assert policy.profile is H100
    assert policy.scale_up.stabilization_s == 0.0 and policy.scale_down.stabilization_s == 300.0


def test_throughput_spec_resolves_tokens_and_the_latency_bound() -> None:
    policy = resolve_policy(
        spec(
            objective={
                "type": "Throughput",
                "throughput": {
                    "tokensPerSecond": 5000,
                    "latencyBound": {
                        "metric": "InterTokenLatency",
                        "percentile": "p99.9",
                        "target": "150ms",
                    },
                },
            },
            engine={"gpuProfile": "A100"},
            batching={"mode": "Off"},
        )
    )
    assert policy.objective.kind is ObjectiveKind.THROUGHPUT
    assert policy.objective.tokens_per_s == 5000.0
    assert policy.objective.latency.quantile == pytest.approx(0.999)
    assert policy.objective.latency.name == "p99.9 ITL"
    assert policy.profile is A100
    assert not policy.batching.enabled


def test_behavior_overrides_only_what_it_sets() -> None:
    policy = resolve_policy(
        spec(
            behavior={
                "scaleDown": {"stabilizationWindow": "10m", "maxReplicasPerPeriod": 2},
                "tolerance": "5%",
            }
        ),
        OperatorDefaults(scale_up=RateLimit(15.0, 8, 200, 20.0)),
    )
    assert policy.scale_down.stabilization_s == 600.0
    assert policy.scale_down.max_replicas_per_period == 2
    assert policy.scale_down.period_s == 60.0  # the law's default, untouched
    assert policy.scale_up == RateLimit(15.0, 8, 200, 20.0)  # the operator default
    assert policy.tolerance == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"args": ["--port", "9000"]}, "--port, which the operator derives from spec.engine.port"),
        ({"args": ["--tensor-parallel-size=4"]}, "spec.engine.gpus"),
        ({"args": ["--served-model-name=x"]}, "--served-model-name"),
        (
            {"args": ["--max-num-batched-tokens=128"]},
            "maxMaxNumSeqs 256 exceeds --max-num-batched-tokens 128",
        ),
    ],
)
def test_engine_args_that_fight_the_operator_are_spec_errors(
    engine: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        resolve_policy(spec(engine=engine))


def test_a_large_enough_token_budget_is_fine() -> None:
    resolve_policy(spec(engine={"args": ["--max-num-batched-tokens", "8192"]}))


def test_unordered_bounds_are_spec_errors_when_the_api_did_not_catch_them() -> None:
    with pytest.raises(SpecError, match="replicas.min 5 is above replicas.max 3"):
        resolve_policy(spec(replicas={"min": 5, "max": 3}))
    with pytest.raises(SpecError, match="batching bounds must be ordered"):
        resolve_policy(spec(batching={"minMaxNumSeqs": 64, "initialMaxNumSeqs": 32}))


def test_objective_without_its_member_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="needs objective.throughput"):
        resolve_policy(
            spec(
                objective={
                    "type": "Throughput",
                    "latency": {"metric": "EndToEndLatency", "target": "9s"},
                }
            )
        )


def test_parse_spec_names_the_offending_fields() -> None:
    with pytest.raises(SpecError, match=r"spec\.replicas\.max"):
        parse_spec({"model": "m", "objective": {"type": "Latency"}, "replicas": {"min": 1}})


def test_status_round_trips_in_the_api_shape() -> None:
    stored = {
        "observedGeneration": 3,
        "replicas": {"current": 2, "ready": 2, "desired": 4},
        "lastScaleTime": "2026-01-01T10:00:00Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Serving",
                "message": "2/2 replicas ready",
                "lastTransitionTime": "2026-01-01T09:00:00Z",
            }
        ],
    }
    status = parse_status(stored)
    assert status.to_patch() == stored
    assert parse_status({"replicas": "garbage"}) == InferenceServiceStatus()
    assert parse_status(None) == InferenceServiceStatus()
