"""The tick loop in-process, over real HTTP to the API emulator.

Metrics come from a `MetricsSource` that replays snapshots and records each fetch (the real
Prometheus path is exercised by tests/integration/operator): here the point is what one tick does
with them — one read for every service, each service on its own, and restart safety.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from operator_cases import TTFT_1S, histogram, snapshot

from sloscale.apiserver import ApiServer
from sloscale.events import Event, EventReason, EventType
from sloscale.kube import MERGE_PATCH, KubeApi
from sloscale.reconcile import (
    EVENT_MESSAGE_LIMIT,
    Fleet,
    Outcome,
    ServiceReconciler,
    batch_write_needed,
)
from sloscale.scaling.snapshot import (
    MetricsSnapshot,
    MetricsUnavailable,
    Unavailability,
    WorkloadObservation,
)
from sloscale.telemetry import Telemetry

ROOT = Path(__file__).parents[3]
NS = "default"
Key = tuple[str, str]


@dataclass
class RecordingSource:
    """Answers every service with `result`; remembers which services each fetch asked for."""

    result: MetricsSnapshot | MetricsUnavailable
    fetches: list[list[Key]] = field(default_factory=list)

    def fetch(
        self, services: Collection[Key], now: float
    ) -> dict[Key, MetricsSnapshot | MetricsUnavailable]:
        self.fetches.append(sorted(services))
        result = (
            replace(self.result, taken_at=now)
            if isinstance(self.result, MetricsSnapshot)
            else self.result
        )
        return dict.fromkeys(services, result)


def slow(now: float) -> MetricsSnapshot:
    """p99 TTFT ≈ 2.5 s against 1 s, most of it queueing, 37 waiting."""
    return snapshot(
        taken_at=now,
        ttft=histogram((1.0, 0.0), (2.5, 10.0)),
        queue_time=histogram((1.0, 0.0), (2.5, 10.0)),
        waiting=37.0,
        running=64.0,
    )


def isvc(client: KubeApi, name: str, **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "chat-p99-ttft.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": NS}
    doc["spec"].update(spec)
    return client.request(
        "POST", f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices", body=doc
    )


def fresh(client: KubeApi, name: str) -> dict[str, Any]:
    found = client.get(f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices/{name}")
    assert found is not None
    return found


def deployment(client: KubeApi, name: str) -> dict[str, Any] | None:
    return client.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")


def mark_ready(client: KubeApi, name: str) -> None:
    """What the Deployment controller would report once the pods are up."""
    d = deployment(client, name)
    assert d is not None
    n = d["spec"]["replicas"]
    status = {
        "observedGeneration": d["metadata"]["generation"],
        "replicas": n,
        "updatedReplicas": n,
        "readyReplicas": n,
    }
    client.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/{name}/status",
        body={"status": status},
        content_type=MERGE_PATCH,
    )


def fleet_for(client: KubeApi, source: RecordingSource) -> Fleet:
    telemetry = Telemetry()
    return Fleet(
        ServiceReconciler(client, telemetry=telemetry, instance="test"),
        source,
        telemetry,
        tick_interval_s=1.0,
    )


def events(client: KubeApi, name: str) -> list[str]:
    listing = client.request("GET", f"/api/v1/namespaces/{NS}/events")
    return [e["reason"] for e in listing["items"] if e["involvedObject"]["name"] == name]


def test_one_metrics_read_per_tick_serves_every_service(api: tuple[ApiServer, KubeApi]) -> None:
    _, client = api
    source = RecordingSource(MetricsUnavailable(Unavailability.NO_DATA, "no series yet"))
    fleet = fleet_for(client, source)
    names = [f"svc-{i}" for i in range(6)]
    for name in names:
        fleet.register(isvc(client, name))
    for _ in range(3):
        results = asyncio.run(fleet.tick(time.time()))
        assert all(isinstance(r, Outcome) and r.decided for r in results.values())
    assert source.fetches == [[(NS, n) for n in names]] * 3
    for name in names:
        assert deployment(client, name) is not None
        status = fresh(client, name)["status"]
        available = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
        assert (available["status"], available["reason"]) == ("False", "NoData")


def test_a_refused_scale_is_reported_on_that_service_only(api: tuple[ApiServer, KubeApi]) -> None:
    server, client = api
    fleet = fleet_for(client, RecordingSource(slow(time.time())))
    for name in ("refused", "allowed"):
        fleet.register(isvc(client, name))
    asyncio.run(fleet.tick(time.time()))  # renders both workloads
    for name in ("refused", "allowed"):
        mark_ready(client, name)
    server.faults.add("PATCH", r"/deployments/refused/scale$", status=500)

    asyncio.run(fleet.tick(time.time()))

    refused, allowed = deployment(client, "refused"), deployment(client, "allowed")
    assert refused is not None and allowed is not None
    assert refused["spec"]["replicas"] == 1
    assert allowed["spec"]["replicas"] > 1
    able = next(
        c for c in fresh(client, "refused")["status"]["conditions"] if c["type"] == "AbleToScale"
    )
    assert (able["status"], able["reason"]) == ("False", "ScaleFailed")
    assert "500" in able["message"] and "Deployment refused" in able["message"]
    assert "ScaleFailed" in events(client, "refused")
    assert "ScaledUp" in events(client, "allowed") and "ScaledUp" not in events(client, "refused")


def test_an_unexpected_failure_stays_with_its_service(api: tuple[ApiServer, KubeApi]) -> None:
    server, client = api
    fleet = fleet_for(client, RecordingSource(slow(time.time())))
    for name in ("flaky", "fine"):
        fleet.register(isvc(client, name))
    server.faults.add("GET", r"/deployments/flaky$", status=500)

    results = asyncio.run(fleet.tick(time.time()))

    assert isinstance(results[(NS, "flaky")], Exception)
    assert isinstance(results[(NS, "fine")], Outcome)
    assert deployment(client, "fine") is not None
    assert fleet.telemetry.reconcile_errors.labels(NS, "flaky")._value.get() == 1
    assert fleet.last_tick_end is not None and fleet.healthy()


def test_restart_restores_the_scale_and_batch_times_from_status(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    body = isvc(client, "restarted")
    client.request(
        "PATCH",
        f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices/restarted/status",
        body={
            "status": {
                "lastScaleTime": "2026-01-01T10:00:00Z",
                "lastBatchChangeTime": "2026-01-01T09:00:00Z",
            }
        },
        content_type=MERGE_PATCH,
    )
    reconciler = ServiceReconciler(client, telemetry=Telemetry(), instance="test")
    outage = MetricsUnavailable(Unavailability.QUERY_FAILED, "Prometheus: cannot connect")
    reconciler.reconcile(fresh(client, "restarted"), outage, time.time())
    state = reconciler.memory[(NS, "restarted")].state
    assert state is not None
    assert state.last_scale_time == 1_767_261_600.0
    assert state.last_batch_change_time == 1_767_258_000.0
    status = fresh(client, "restarted")["status"]
    assert status["lastScaleTime"] == "2026-01-01T10:00:00Z"
    assert body["metadata"]["uid"] == fresh(client, "restarted")["metadata"]["uid"]


def test_the_owned_workload_is_repaired_and_follows_the_spec(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    fleet = fleet_for(client, RecordingSource(MetricsUnavailable(Unavailability.NO_DATA, "none")))
    fleet.register(isvc(client, "kept"))
    asyncio.run(fleet.tick(time.time()))
    client.request("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/kept")
    asyncio.run(fleet.tick(time.time()))
    assert deployment(client, "kept") is not None
    assert events(client, "kept").count("WorkloadCreated") == 2

    # A spec change reaches the pod template (the batch the operator chose is kept).
    client.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/kept/scale",
        body={"spec": {"replicas": 3}},
        content_type=MERGE_PATCH,
    )
    client.request(
        "PATCH",
        f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices/kept",
        body={"spec": {"engine": {"image": "vllm/vllm-openai:v0.12.0"}}},
        content_type=MERGE_PATCH,
    )
    fleet.register(fresh(client, "kept"))
    asyncio.run(fleet.tick(time.time()))
    updated = deployment(client, "kept")
    assert updated is not None
    container = updated["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "vllm/vllm-openai:v0.12.0"
    assert "--max-num-seqs=64" in container["args"]
    assert (
        updated["spec"]["replicas"] == 3
    )  # replicas belong to the scale subresource, never re-rendered
    assert "WorkloadUpdated" in events(client, "kept")
    assert fresh(client, "kept")["status"]["observedGeneration"] == 2


def test_an_attach_target_without_the_named_container_is_reported(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    client.request(
        "POST",
        f"/apis/apps/v1/namespaces/{NS}/deployments",
        body={
            "metadata": {"name": "llm", "namespace": NS},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "llm"}},
                "template": {
                    "metadata": {"labels": {"app": "llm"}},
                    "spec": {
                        "containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.11.0"}]
                    },
                },
            },
        },
    )
    doc = yaml.safe_load((ROOT / "examples" / "attach-existing.yaml").read_text())
    doc["metadata"] = {"name": "attached", "namespace": NS}
    body = client.request(
        "POST", f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices", body=doc
    )
    fleet = fleet_for(client, RecordingSource(slow(time.time())))
    fleet.register(body)

    outcome = asyncio.run(fleet.tick(time.time()))[(NS, "attached")]

    assert isinstance(outcome, Outcome) and not outcome.decided
    ready = next(
        c for c in fresh(client, "attached")["status"]["conditions"] if c["type"] == "Ready"
    )
    assert (ready["status"], ready["reason"]) == ("False", "ContainerNotFound")
    assert "no container 'vllm' (containers: engine)" in ready["message"]
    assert events(client, "attached") == ["ContainerNotFound"]
    untouched = deployment(client, "llm")
    assert untouched is not None and untouched["spec"]["replicas"] == 2


class BrokenSource:
    def fetch(
        self, services: Collection[Key], now: float
    ) -> dict[Key, MetricsSnapshot | MetricsUnavailable]:
        raise RuntimeError("connection pool exhausted")


def test_a_metrics_source_that_raises_is_an_outage_not_a_crash(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    telemetry = Telemetry()
    fleet = Fleet(
        ServiceReconciler(client, telemetry=telemetry),
        BrokenSource(),
        telemetry,
        tick_interval_s=1.0,
    )
    fleet.register(isvc(client, "blind"))
    results = asyncio.run(fleet.tick(time.time()))
    assert isinstance(results[(NS, "blind")], Outcome)
    available = next(
        c for c in fresh(client, "blind")["status"]["conditions"] if c["type"] == "MetricsAvailable"
    )
    assert (available["status"], available["reason"]) == ("False", "QueryFailed")
    assert "connection pool exhausted" in available["message"]
    d = deployment(client, "blind")
    assert d is not None and d["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("template_batch", "decided", "write"),
    [
        (64, 128, True),  # a move within bounds
        (64, 64, False),  # no move
        (None, 1024, False),  # no flag: vLLM's default on H100, which the law assumed
        (None, 128, True),  # no flag, and the law wants a bound-respecting batch
        (64, 4096, False),  # outside batching bounds [8, 256]: never written
        (64, None, False),  # batching off in the decision
    ],
)
def test_which_batch_decisions_touch_the_pod_template(
    template_batch: int | None, decided: int | None, write: bool
) -> None:
    seen = WorkloadObservation(replicas=2, ready=2, starting=0, max_num_seqs=template_batch)
    assert batch_write_needed(TTFT_1S, seen, decided) is write


def test_an_event_message_is_cut_to_the_api_servers_bound(api: tuple[ApiServer, KubeApi]) -> None:
    _, client = api
    body = isvc(client, "wordy")
    reconciler = ServiceReconciler(client, telemetry=Telemetry(), instance="test")
    reconciler.post_event(body, Event(EventType.NORMAL, EventReason.SCALED_UP, "x" * 3000))
    listing = client.request("GET", f"/api/v1/namespaces/{NS}/events")
    [posted] = [e for e in listing["items"] if e["involvedObject"]["name"] == "wordy"]
    assert posted["reason"] == "ScaledUp"
    assert posted["message"] == "x" * EVENT_MESSAGE_LIMIT


@dataclass
class HandoverSource(RecordingSource):
    """While the tick reads metrics, the service `leaving` is deleted or handed to a peer."""

    fleet: Fleet | None = None
    leaving: Key = (NS, "")

    def fetch(
        self, services: Collection[Key], now: float
    ) -> dict[Key, MetricsSnapshot | MetricsUnavailable]:
        assert self.fleet is not None
        self.fleet.unregister(*self.leaving)
        return super().fetch(services, now)


def test_a_service_let_go_during_the_tick_is_not_acted_on(api: tuple[ApiServer, KubeApi]) -> None:
    """A service this instance stopped controlling mid-tick (deleted, or now a peer's) gets no
    write from the tick already under way, and leaves no memory to come back with later."""
    _, client = api
    source = HandoverSource(slow(time.time()), leaving=(NS, "leaving"))
    fleet = fleet_for(client, source)
    source.fleet = fleet
    for name in ("staying", "leaving"):
        fleet.register(isvc(client, name))
    results = asyncio.run(fleet.tick(time.time()))
    assert set(results) == {(NS, "staying")}
    assert (NS, "leaving") not in fleet.reconciler.memory
    assert deployment(client, "leaving") is None and "status" not in fresh(client, "leaving")
    assert deployment(client, "staying") is not None and "status" in fresh(client, "staying")


@dataclass
class ThreadRecordingReconciler:
    """Stands in for `ServiceReconciler`: notes which worker thread reconciled each service."""

    seen: dict[Key, int] = field(default_factory=dict)
    memory: dict[Key, object] = field(default_factory=dict)
    cache: None = None

    def reconcile(self, body: dict[str, Any], metrics: object, now: float) -> Outcome:
        meta = body["metadata"]
        self.seen[(meta["namespace"], meta["name"])] = threading.get_ident()
        time.sleep(0.05)  # long enough that the workers overlap
        return cast(Outcome, None)

    def forget(self, key: Key) -> None:
        self.memory.pop(key, None)


@pytest.mark.parametrize("services", [2, 8, 40])
def test_a_few_services_spread_over_every_worker_thread(services: int) -> None:
    # One slow service must not hold up all the others: batches are an even share at most.
    reconciler = ThreadRecordingReconciler()
    telemetry = Telemetry()
    fleet = Fleet(
        cast(ServiceReconciler, reconciler),
        RecordingSource(MetricsUnavailable(Unavailability.NO_DATA, "none")),
        telemetry,
        tick_interval_s=1.0,
    )
    for i in range(services):
        fleet.register({"metadata": {"namespace": NS, "name": f"s{i}"}, "spec": {}})
    asyncio.run(fleet.tick(1000.0))
    assert len(reconciler.seen) == services
    per_thread = collections.Counter(reconciler.seen.values())
    assert len(per_thread) == min(services, fleet.concurrency)
    assert max(per_thread.values()) == math.ceil(services / fleet.concurrency)


def test_a_service_let_go_while_being_reconciled_leaves_nothing_behind() -> None:
    # kopf lets go of it (and forgets it) on the loop thread while a worker reconciles it: what
    # that reconcile then remembers (memory, gauges) is dropped once the batch is back.
    fleet = Fleet(
        cast(ServiceReconciler, ThreadRecordingReconciler()),
        RecordingSource(MetricsUnavailable(Unavailability.NO_DATA, "none")),
        Telemetry(),
        tick_interval_s=1.0,
    )
    reconciler = cast(ThreadRecordingReconciler, fleet.reconciler)

    def reconcile(body: dict[str, Any], metrics: object, now: float) -> Outcome:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key[1] == "leaving":
            fleet.unregister(*key)  # forgotten first, as the race has it ...
        reconciler.memory[key] = "remembered"  # ... then remembered again by this reconcile
        return cast(Outcome, None)

    reconciler.reconcile = reconcile  # type: ignore[method-assign]
    for name in ("staying", "leaving"):
        fleet.register({"metadata": {"namespace": NS, "name": name}, "spec": {}})
    asyncio.run(fleet.tick(1000.0))
    assert set(reconciler.memory) == {(NS, "staying")}
