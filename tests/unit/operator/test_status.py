"""The status one tick writes: its content, and its fit to the CRD's status schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from operator_cases import THROUGHPUT, TTFT_1S, decision, hold, snapshot

from sloscale.conditions import Reason, blocked_conditions
from sloscale.resource import InferenceServiceStatus, LastDecision, ObservedStatus
from sloscale.scaling.snapshot import MetricsUnavailable, Unavailability, WorkloadObservation
from sloscale.status import Applied, blocked_status, build_status, to_time

NOW = 1_767_261_630.0  # 2026-01-01T10:00:30Z
SEEN = WorkloadObservation(replicas=2, ready=2, starting=0, max_num_seqs=64)
CRD = yaml.safe_load((Path(__file__).parents[3] / "crds" / "inferenceservice.yaml").read_text())
STATUS_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """Fields the API server would prune: everything the schema does not declare."""
    if isinstance(value, dict) and "properties" in schema:
        found = []
        for key, sub in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += unknown_fields(sub, schema["properties"][key], f"{path}.{key}")
        return found
    if isinstance(value, list) and "items" in schema:
        return [f for item in value for f in unknown_fields(item, schema["items"], f"{path}[]")]
    return []


def assert_fits_the_crd(status: InferenceServiceStatus) -> None:
    body = status.to_patch()
    jsonschema.validate(body, STATUS_SCHEMA)
    assert unknown_fields(body, STATUS_SCHEMA) == []
    for condition in body.get("conditions", []):
        assert datetime.fromisoformat(condition["lastTransitionTime"].replace("Z", "+00:00"))
        assert condition["lastTransitionTime"].endswith("Z")


def enforce(
    previous: InferenceServiceStatus | None = None, **kwargs: Any
) -> InferenceServiceStatus:
    args: dict[str, Any] = {
        "decision": decision(),
        "policy": TTFT_1S,
        "metrics": snapshot(),
        "seen": SEEN,
        "applied": Applied(replicas=4, max_num_seqs=64),
        "advisory": False,
        "generation": 3,
        "now": NOW,
    }
    args.update(kwargs)
    return build_status(previous or InferenceServiceStatus(), **args)


def test_a_scale_up_tick() -> None:
    status = enforce()
    assert_fits_the_crd(status)
    body = status.to_patch()
    assert body["observedGeneration"] == 3
    assert body["replicas"] == {"current": 4, "ready": 2, "desired": 4}
    assert body["batch"] == {"current": 64, "desired": 64}
    assert body["objective"] == {
        "name": "p99 TTFT",
        "target": "1s",
        "met": False,
        "attainment": "97.0%",
        "errorBudgetRemaining": "40.0%",
    }
    assert body["observed"] == {
        "value": "1.8s",
        "tokensPerSecond": "1234.5",
        "requestsPerSecond": "10.00",
        "queue": 37,
        "queueTime": "249ms",  # the objective's percentile (p99) of each histogram
        "prefillTime": "199ms",
        "interTokenLatency": "40ms",
        "coldStart": "95s",
        "time": "2026-01-01T10:00:00Z",
    }
    assert body["lastDecision"] == {
        "time": "2026-01-01T10:00:30Z",
        "action": "ScaleUp",
        "replicas": 4,
        "maxNumSeqs": 64,
        "reason": "QueueingDelay: replicas 2→4: p99 TTFT 1.8s > 1s; queue 37; capacity 21 req/s per replica",
    }
    assert body["lastScaleTime"] == "2026-01-01T10:00:30Z"
    assert "lastBatchChangeTime" not in body
    assert [c["type"] for c in body["conditions"]] == [
        "Ready",
        "MetricsAvailable",
        "ObjectiveMet",
        "AbleToScale",
        "ScalingLimited",
        "Infeasible",
    ]


def test_a_hold_keeps_the_last_decision_and_scale_time() -> None:
    first = enforce()
    later = enforce(
        first,
        decision=hold(replicas=4),
        seen=SEEN.__class__(4, 4, 0, 64),
        applied=Applied(4, 64),
        now=NOW + 60,
    )
    assert later.last_decision == first.last_decision
    assert later.last_scale_time == first.last_scale_time
    assert later.observed_generation == 3


def test_a_batch_change_records_its_time() -> None:
    status = enforce(
        applied=Applied(replicas=2, max_num_seqs=32), decision=decision(replicas=2, max_num_seqs=32)
    )
    assert status.last_batch_change_time == to_time(NOW)
    assert status.last_scale_time is None


def test_a_refused_write_leaves_the_levers_where_they_were() -> None:
    status = enforce(applied=Applied(replicas=2, max_num_seqs=64, scale_error="403: forbidden"))
    assert status.replicas is not None and (status.replicas.current, status.replicas.desired) == (
        2,
        4,
    )
    assert status.last_scale_time is None and status.last_decision is None
    able = next(c for c in status.conditions if c.type == "AbleToScale")
    assert (able.status, able.reason) == ("False", "ScaleFailed")


def test_an_outage_keeps_the_last_snapshot_summary() -> None:
    first = enforce()
    out = MetricsUnavailable(Unavailability.QUERY_FAILED, "Prometheus: cannot connect")
    held = hold(metrics_available=False, metrics_reason="QueryFailed", metrics_message=out.message)
    later = enforce(first, decision=held, metrics=out, applied=Applied(2, 64), now=NOW + 15)
    assert later.observed == first.observed
    available = next(c for c in later.conditions if c.type == "MetricsAvailable")
    assert (available.status, available.reason) == ("False", "QueryFailed")
    assert_fits_the_crd(later)


def test_throughput_objective_observes_tokens() -> None:
    status = enforce(policy=THROUGHPUT)
    assert isinstance(status.observed, ObservedStatus)
    assert status.observed.value == "1234 tok/s"


def test_advisory_records_new_recommendations_only() -> None:
    first = enforce(advisory=True, applied=Applied(2, 64))
    assert first.replicas is not None and (first.replicas.current, first.replicas.desired) == (2, 4)
    assert isinstance(first.last_decision, LastDecision) and first.last_decision.action == "ScaleUp"
    assert first.last_scale_time is None
    again = enforce(first, advisory=True, applied=Applied(2, 64), now=NOW + 15)
    assert again.last_decision == first.last_decision


def test_blocked_status_moves_only_conditions_and_generation() -> None:
    first = enforce()
    blocked = blocked_status(
        first, blocked_conditions(Reason.INVALID_SPEC, "spec: bad"), generation=4, now=NOW + 5
    )
    assert blocked.observed_generation == 4
    assert blocked.replicas == first.replicas and blocked.last_decision == first.last_decision
    ready = blocked.conditions[0]
    assert (ready.type, ready.status, ready.reason, ready.message) == (
        "Ready",
        "False",
        "InvalidSpec",
        "spec: bad",
    )
    assert ready.last_transition_time == datetime(2026, 1, 1, 10, 0, 35, tzinfo=UTC)
    assert_fits_the_crd(blocked)
