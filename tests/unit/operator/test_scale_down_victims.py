"""Scale-down victims by load: the least-loaded ready pods get the lowest deletion cost.

The ranking is pure (`deletion_costs`); the per-pod readings come from one Prometheus query for
every service (`assemble` on canned answers); and the reconciler, over real HTTP to the API
emulator, annotates the ready pods right before it lowers the replicas — only the pods whose
annotation differs, and a refused patch neither blocks the scale-down nor fails the tick.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from operator_cases import snapshot
from test_fleet_tick import NS, deployment, fresh, isvc, mark_ready

from sloscale import promql
from sloscale.apiserver import ApiServer
from sloscale.kube import MERGE_PATCH, KubeApi
from sloscale.metrics_source import ServiceSnapshot, assemble, parse_vector
from sloscale.reconcile import ServiceReconciler
from sloscale.telemetry import Telemetry
from sloscale.workload import DELETION_COST_ANNOTATION, deletion_costs

COST = DELETION_COST_ANNOTATION


def pod(
    name: str, *, ready: bool = True, cost: str | None = None, deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if cost is not None:
        meta["annotations"] = {COST: cost}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T10:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}


# --- the ranking -------------------------------------------------------------------------------


def test_each_ready_pod_costs_its_requests_in_flight_so_the_least_loaded_goes_first() -> None:
    pods = [pod("busy"), pod("idle"), pod("half")]
    costs = deletion_costs(pods, {"busy": 9.0, "idle": 0.0, "half": 4.6})
    assert costs == {"busy": 9, "idle": 0, "half": 5}
    assert min(costs, key=costs.__getitem__) == "idle"


def test_only_pods_whose_annotation_differs_are_patched() -> None:
    pods = [pod("same", cost="3"), pod("moved", cost="8"), pod("new")]
    assert deletion_costs(pods, {"same": 3.2, "moved": 1.0, "new": 6.0}) == {"moved": 1, "new": 6}


def test_unready_and_terminating_pods_are_left_alone() -> None:
    pods = [pod("starting", ready=False), pod("leaving", deleting=True), pod("a")]
    assert deletion_costs(pods, {"starting": 0.0, "leaving": 0.0, "a": 2.0}) == {"a": 2}


def test_a_pod_without_a_reading_costs_as_much_as_the_busiest_and_none_means_no_ranking() -> None:
    # Its scrape failed or has not happened: unknown load is not taken for idle.
    pods = [pod("busy"), pod("idle"), pod("unscraped", cost="0")]
    assert deletion_costs(pods, {"busy": 9.0, "idle": 1.0}) == {
        "busy": 9,
        "idle": 1,
        "unscraped": 9,
    }
    assert deletion_costs(pods, {}) == {}


# --- the reading: one query, every service, by pod -----------------------------------------------


def test_requests_in_flight_are_read_per_pod_and_a_broken_value_only_drops_that_pod() -> None:
    queries = promql.QuerySet()
    expression = queries.pod_in_flight(["team-a"])
    assert expression.startswith("sum by (namespace, sloscale_service, pod) (")
    assert "num_requests_running" in expression and "num_requests_waiting" in expression

    now = 1_800_000_000.0

    def element(value: str, **labels: str) -> dict[str, Any]:
        return {
            "metric": {"namespace": "team-a", "sloscale_service": "chat", **labels},
            "value": [now, value],
        }

    answers: dict[str, list[dict[str, Any]]] = {
        promql.PODS: [element("3")],
        promql.POD_IN_FLIGHT: [
            element("7", pod="chat-a"),
            element("0", pod="chat-b"),
            element("NaN", pod="chat-c"),
            element("2"),  # no pod label
        ],
    }
    for family in promql.FAMILIES:
        if family.kind in (promql.Kind.HISTOGRAM,):
            answers[family.key] = [element("1", le="+Inf")]
        else:
            answers[family.key] = [element("0.5")]
    grouped = {key: parse_vector(result, "sloscale_service") for key, result in answers.items()}
    result = assemble(grouped, [("team-a", "chat")], now, queries)[("team-a", "chat")]
    assert isinstance(result, ServiceSnapshot)
    assert result.in_flight_by_pod == {"chat-a": 7.0, "chat-b": 0.0}
    # Without the per-pod answer the snapshot still stands: the ranking is an optimisation.
    del grouped[promql.POD_IN_FLIGHT]
    alone = assemble(grouped, [("team-a", "chat")], now, queries)[("team-a", "chat")]
    assert isinstance(alone, ServiceSnapshot) and alone.in_flight_by_pod == {}
    assert math.isclose(alone.running, 0.5)


# --- the reconciler, over HTTP to the API emulator ------------------------------------------------


def _three_ready_pods(client: KubeApi, reconciler: ServiceReconciler, now: float) -> list[str]:
    """`chat` at three replicas (its minimum), with three ready pods the Deployment selects."""
    isvc(client, "chat", replicas={"min": 3, "max": 3})
    reconciler.reconcile(fresh(client, "chat"), snapshot(taken_at=now), now)
    found = deployment(client, "chat")
    assert found is not None and found["spec"]["replicas"] == 3
    mark_ready(client, "chat")
    labels = found["spec"]["selector"]["matchLabels"]
    names = ["chat-a", "chat-b", "chat-c"]
    for name in names:
        client.request(
            "POST",
            f"/api/v1/namespaces/{NS}/pods",
            body={
                "metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": "vllm", "image": "vllm"}]},
            },
        )
        client.request(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/{name}/status",
            body={"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            content_type=MERGE_PATCH,
        )
    return names


def _lower_to_two(client: KubeApi) -> dict[str, Any]:
    client.request(
        "PATCH",
        f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices/chat",
        body={"spec": {"replicas": {"min": 2, "max": 2}}},
        content_type=MERGE_PATCH,
    )
    return fresh(client, "chat")


def _costs(client: KubeApi, names: list[str]) -> dict[str, str | None]:
    found = {}
    for name in names:
        body = client.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        assert body is not None
        found[name] = (body["metadata"].get("annotations") or {}).get(COST)
    return found


def _loaded(now: float, loads: dict[str, float]) -> ServiceSnapshot:
    base = snapshot(taken_at=now)
    return ServiceSnapshot(
        **{f.name: getattr(base, f.name) for f in fields(base)}, in_flight_by_pod=loads
    )


def test_before_a_scale_down_ready_pods_are_annotated_with_their_load(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    reconciler = ServiceReconciler(client, telemetry=Telemetry(), instance="test")
    now = 1_767_261_600.0
    names = _three_ready_pods(client, reconciler, now)
    # Holding at three: nothing is annotated (no scale-down, no write).
    reconciler.reconcile(
        fresh(client, "chat"), _loaded(now + 1, {"chat-a": 6, "chat-b": 1, "chat-c": 4}), now + 1
    )
    assert _costs(client, names) == dict.fromkeys(names)

    outcome = reconciler.reconcile(
        _lower_to_two(client), _loaded(now + 2, {"chat-a": 6, "chat-b": 1, "chat-c": 4}), now + 2
    )
    assert _costs(client, names) == {"chat-a": "6", "chat-b": "1", "chat-c": "4"}
    assert (deployment(client, "chat") or {})["spec"]["replicas"] == 2
    assert "ScaledDown" in [e.reason.value for e in outcome.events]


def test_a_refused_annotation_does_not_hold_the_scale_down_back(
    api: tuple[ApiServer, KubeApi],
) -> None:
    server, client = api
    reconciler = ServiceReconciler(client, telemetry=Telemetry(), instance="test")
    now = 1_767_261_600.0
    names = _three_ready_pods(client, reconciler, now)
    server.faults.add("PATCH", r"/pods/chat-b$", status=403)
    outcome = reconciler.reconcile(
        _lower_to_two(client), _loaded(now + 1, {"chat-a": 6, "chat-b": 1, "chat-c": 4}), now + 1
    )
    assert _costs(client, names) == {"chat-a": "6", "chat-b": None, "chat-c": "4"}
    assert (deployment(client, "chat") or {})["spec"]["replicas"] == 2
    able = next(c for c in outcome.status.conditions if c.type == "AbleToScale")
    assert (able.status, able.reason) == ("True", "Enforcing")  # the scale itself went through
