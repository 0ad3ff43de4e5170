"""Any spec the API accepts: the operator reads it and decides within its bounds, never crashing.

Specs are generated from the CRD's own `openAPIV3Schema` (types, enums, ranges, lengths, patterns,
required fields — a new field in the CRD is fuzzed without touching this file), then repaired to
satisfy the CRD's CEL rules, and checked by the API emulator's validator (schema and CEL) exactly
as a POST would be. For each, the operator's path runs: `parse_spec`, `resolve_policy` (which may
refuse only engine arguments the operator manages, with a `SpecError`), and a few ticks of
`decide` over random metrics, missing metrics and workloads. The decisions must stay within the
spec's replica and batch bounds, and missing metrics must hold the levers exactly.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import yaml
from badinput_support import CRD
from hypothesis import HealthCheck, Phase, example, find, given, settings
from hypothesis import strategies as st

from sloscale.apiserver.validation import CelRules, SchemaValidator
from sloscale.resource import SpecError, arg_value, parse_spec, resolve_policy
from sloscale.sandbox.vllm_metrics import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS
from sloscale.scaling import ControlState, Observation, decide
from sloscale.scaling.snapshot import (
    Histogram,
    MetricsSnapshot,
    MetricsUnavailable,
    Unavailability,
    WorkloadObservation,
)

JSON = dict[str, Any]
_VERSION = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]
SCHEMA: JSON = _VERSION["schema"]["openAPIV3Schema"]
SPEC_SCHEMA: JSON = SCHEMA["properties"]["spec"]
VALIDATOR = SchemaValidator(SCHEMA, CelRules())
MANAGED = (
    "--model",
    "--served-model-name",
    "--port",
    "--tensor-parallel-size",
    "-tp",
    "--max-num-seqs",
)
GO_DURATION = re.compile(r"([0-9]+)(ms|s|m|h)")
SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
GO_MAX_DURATION_S = (2**63 - 1) / 1e9


# --- specs from the schema ------------------------------------------------------------------


def _from_schema(schema: JSON) -> st.SearchStrategy[Any]:
    """Values the schema accepts (CEL rules aside)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31)
        # The edges are where bugs live: draw them often.
        return st.one_of(st.sampled_from([low, high]), st.integers(low, high))
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: len(s) <= schema.get("maxLength", 64)
            )
        return st.text(
            st.characters(codec="ascii", categories=["L", "N", "P"]),
            min_size=schema.get("minLength", 0),
            max_size=min(schema.get("maxLength", 40), 40),
        )
    if kind == "array":
        return st.lists(_from_schema(schema["items"]), max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object":
        properties: JSON = schema.get("properties") or {}
        if not properties:  # free-form (x-kubernetes-preserve-unknown-fields)
            return st.dictionaries(
                st.sampled_from(["cpu", "memory"]), st.sampled_from(["1", "2Gi"]), max_size=2
            )
        required = set(schema.get("required") or [])
        return st.fixed_dictionaries(
            {k: _from_schema(v) for k, v in properties.items() if k in required},
            optional={k: _from_schema(v) for k, v in properties.items() if k not in required},
        )
    raise AssertionError(f"the fuzzer does not know schema type {kind!r}: extend _from_schema")


def _duration_s(text: str) -> float:
    return sum(int(n) * SECONDS[u] for n, u in GO_DURATION.findall(text))


def _satisfy_cel(spec: JSON) -> JSON:
    """Repair a schema-valid spec so the CRD's CEL rules hold too (one fix per rule)."""
    if "model" in spec:  # exactly one of model and scaleTargetRef; engine only with model
        spec.pop("scaleTargetRef", None)
    elif "scaleTargetRef" not in spec:
        spec["model"] = "m"
    if "scaleTargetRef" in spec:
        spec.pop("engine", None)
    args = (spec.get("engine") or {}).get("args")
    if args is not None:
        spec["engine"]["args"] = [a for a in args if not a.startswith("--max-num-seqs")]
    objective = spec["objective"]
    member = "latency" if objective["type"] == "Latency" else "throughput"
    other = "throughput" if member == "latency" else "latency"
    objective.pop(other, None)
    if member not in objective:
        bound = {"metric": "TimeToFirstToken", "target": "1s"}
        objective[member] = bound if member == "latency" else {"latencyBound": bound}
    latency = (
        objective["latency"] if member == "latency" else objective["throughput"]["latencyBound"]
    )
    # CEL's duration() refuses what Go's time.Duration cannot hold (about 292 years), as the
    # real API server does; the spec fields it reads must stay below that.
    for key in ("target", "window"):
        if key in latency and _duration_s(latency[key]) > GO_MAX_DURATION_S:
            latency[key] = "1h"
    if _duration_s(latency["target"]) <= 0:
        latency["target"] = latency["target"] + "1ms"
    if "window" in latency and _duration_s(latency["window"]) < 30:
        latency["window"] = latency["window"] + "30s"
    replicas = spec["replicas"]
    if replicas.get("min", 1) > replicas["max"]:
        replicas["min"], replicas["max"] = replicas["max"], replicas.get("min", 1)
    batching = spec.get("batching")
    if batching is not None and batching.get("mode", "Auto") != "Off":
        keys = ("minMaxNumSeqs", "initialMaxNumSeqs", "maxMaxNumSeqs")
        defaults = (8, 64, 256)
        ordered = sorted(batching.get(k, d) for k, d in zip(keys, defaults, strict=True))
        batching.update(zip(keys, ordered, strict=True))
    return spec


accepted_specs = _from_schema(SPEC_SCHEMA).map(_satisfy_cel)


def _admit(spec: JSON) -> JSON:
    """What the API server stores: pruned, defaulted, validated (schema and CEL)."""
    body = {
        "apiVersion": "sloscale.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": spec,
    }
    normalized, pruned = VALIDATOR.normalize(body)
    errors = VALIDATOR.validate(normalized, None)
    assert not errors, (
        f"the fuzzer made a spec the API refuses: {[e.message() for e in errors]}\n{spec}"
    )
    assert not pruned
    stored: JSON = normalized["spec"]
    return stored


# --- what the metrics and the workload can look like ----------------------------------------


def _histograms(bounds: tuple[float, ...]) -> st.SearchStrategy[Histogram]:
    edges = (*bounds, math.inf)
    increments = st.lists(rates, min_size=len(edges), max_size=len(edges))

    def cumulative(steps: list[float]) -> Histogram:
        counts, total = [], 0.0
        for step in steps:
            total += step
            counts.append(total)
        return Histogram(edges, tuple(counts))

    return st.one_of(st.just(Histogram(edges, (0.0,) * len(edges))), increments.map(cumulative))


# What Prometheus' rate() gives over a window of at most an hour: zero, or at least one event in
# it. (Far smaller values — 1e-300 req/s beside real token rates — are no counter's rate.)
rates = st.one_of(st.just(0.0), st.floats(1e-3, 1e6))
snapshots = st.builds(
    MetricsSnapshot,
    taken_at=st.just(0.0),
    window_s=st.sampled_from([15.0, 60.0]),
    pods_reporting=st.integers(1, 50),
    requests_per_s=rates,
    prompt_tokens_per_s=rates,
    generation_tokens_per_s=rates,
    running=st.one_of(st.just(0.0), st.integers(1, 100_000).map(float)),
    waiting=st.one_of(st.just(0.0), st.integers(1, 100_000).map(float)),
    kv_usage=st.floats(0.0, 1.0),
    preemptions_per_s=rates,
    ttft=_histograms(TTFT_BUCKETS),
    itl=_histograms(ITL_BUCKETS),
    e2e=_histograms(REQUEST_LATENCY_BUCKETS),
    queue_time=_histograms(REQUEST_LATENCY_BUCKETS),
)
unavailable = st.builds(
    MetricsUnavailable, st.sampled_from(list(Unavailability)), st.just("fuzzed")
)
ticks = st.lists(
    st.tuples(
        st.one_of(snapshots, unavailable), st.sampled_from([1.0, 15.0, 400.0]), st.integers(0, 3)
    ),
    min_size=1,
    max_size=4,
)


def _idle(**rates: float) -> MetricsSnapshot:
    """A snapshot with empty histograms and the given rates (zero traffic unless set)."""
    empty = {
        b: Histogram((*b, math.inf), (0.0,) * (len(b) + 1))
        for b in (TTFT_BUCKETS, ITL_BUCKETS, REQUEST_LATENCY_BUCKETS)
    }
    fields: JSON = dict(
        requests_per_s=0.0,
        prompt_tokens_per_s=0.0,
        generation_tokens_per_s=0.0,
        running=0.0,
        waiting=0.0,
    )
    fields.update(rates)
    return MetricsSnapshot(
        taken_at=0.0,
        window_s=60.0,
        pods_reporting=1,
        kv_usage=0.0,
        preemptions_per_s=0.0,
        ttft=empty[TTFT_BUCKETS],
        itl=empty[ITL_BUCKETS],
        e2e=empty[REQUEST_LATENCY_BUCKETS],
        queue_time=empty[REQUEST_LATENCY_BUCKETS],
        **fields,
    )


SMALLEST = {
    "model": "m",
    "objective": {"type": "Latency", "latency": {"metric": "TimeToFirstToken", "target": "1s"}},
    "replicas": {"max": 1},
}


# Found by this test, kept as fixed cases: at zero traffic an unset batch was written as vLLM's
# default (1024) past maxMaxNumSeqs, and one above the bounds was kept there.
@example(spec=SMALLEST, start_replicas=0, start_batch=None, timeline=[(_idle(), 1.0, 0)])
@example(spec=SMALLEST, start_replicas=1, start_batch=5000, timeline=[(_idle(), 1.0, 0)])
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    spec=accepted_specs,
    start_replicas=st.integers(0, 1200),
    start_batch=st.one_of(st.none(), st.integers(1, 4096)),
    timeline=ticks,
)
def test_an_accepted_spec_never_crashes_the_operator_and_decisions_keep_its_bounds(
    spec: JSON,
    start_replicas: int,
    start_batch: int | None,
    timeline: list[tuple[MetricsSnapshot | MetricsUnavailable, float, int]],
) -> None:
    stored = _admit(spec)
    parsed = parse_spec(stored)  # a stored spec always reads
    try:
        policy = resolve_policy(parsed)
    except SpecError as refused:
        # The only thing the API lets through that the operator refuses: engine arguments it
        # derives itself, or a token budget below the batch maximum. The message says which.
        args = parsed.engine.args if parsed.engine else []
        assert any(arg_value(args, f) is not None or f in args for f in MANAGED) or (
            "--max-num-batched-tokens" in str(refused)
        ), refused
        assert "engine.args" in str(refused)
        return

    assert 0 <= policy.min_replicas <= policy.max_replicas
    replicas, batch, now = start_replicas, start_batch, 1_000_000.0
    state = ControlState.initial(now, replicas, batch)
    for metrics, step_s, ready_short in timeline:
        now += step_s
        if isinstance(metrics, MetricsSnapshot):
            metrics = MetricsSnapshot(**{**metrics.__dict__, "taken_at": now})
        ready = max(0, replicas - ready_short)
        workload = WorkloadObservation(
            replicas=replicas, ready=ready, starting=replicas - ready, max_num_seqs=batch
        )
        decision, state = decide(Observation(metrics, workload), policy, state, now)

        if isinstance(metrics, MetricsUnavailable):
            # No data is never read as no load: both levers hold exactly, whatever the bounds.
            assert (decision.replicas, decision.max_num_seqs) == (replicas, batch)
            assert decision.metrics_available is False
            assert decision.metrics_reason == metrics.reason.value
        else:
            assert policy.min_replicas <= decision.replicas <= policy.max_replicas, decision.message
            if policy.batching.enabled and decision.max_num_seqs != batch:
                assert (
                    policy.batching.min_seqs
                    <= (decision.max_num_seqs or 0)
                    <= policy.batching.max_seqs
                )
            if not policy.batching.enabled:
                assert decision.max_num_seqs == batch
        assert decision.message and decision.reason
        replicas, batch = decision.replicas, decision.max_num_seqs


@pytest.mark.parametrize("field", sorted(SPEC_SCHEMA["properties"]))
def test_the_fuzzer_reaches_every_field_of_the_spec(field: str) -> None:
    """The generator follows the CRD: every spec field, a new one included, is drawn."""
    found = find(
        accepted_specs,
        lambda spec: field in spec,
        settings=settings(database=None, max_examples=500, phases=[Phase.generate]),
    )
    assert field in _admit(found)
