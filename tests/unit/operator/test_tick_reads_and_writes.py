"""What a tick costs the API server, and that the savings never cost correctness.

Over real HTTP to the API emulator, with the watch-fed cache the operator runs with: a steady
tick reads Deployments and pods from the cache and writes no status whose readings alone changed; a tick right after the operator's own write sees that write even while the cache
still shows the old Deployment (so a decision is never applied twice); and the pure rule that
decides when a status is written.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from operator_cases import snapshot
from test_fleet_tick import (
    NS,
    ROOT,
    RecordingSource,
    deployment,
    events,
    fresh,
    isvc,
    mark_ready,
    slow,
)

from sloscale.apiserver import ApiServer
from sloscale.informers import WorkloadCache
from sloscale.kube import KubeApi
from sloscale.reconcile import Fleet, Outcome, ServiceReconciler
from sloscale.resource import (
    Condition,
    InferenceServiceStatus,
    ObjectiveStatus,
    ObservedStatus,
    ReplicasStatus,
)
from sloscale.status import needs_write, to_time
from sloscale.telemetry import Telemetry

T = TypeVar("T")


class RecordingApi(KubeApi):
    """The real API port, remembering each call's method and path."""

    calls: list[tuple[str, str]]

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((method, path))
        return super().request(method, path, **kwargs)


def eventually(check: Callable[[], T], what: str, timeout_s: float = 10.0) -> T:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return value


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, RecordingApi]]:
    with ApiServer.in_thread(crds=[ROOT / "crds" / "inferenceservice.yaml"]) as server:
        base = KubeApi.connect(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        client = RecordingApi(base.configuration)
        client.calls = []
        try:
            yield server, client
        finally:
            client.close()
            base.close()


@pytest.fixture
def cache(api: tuple[ApiServer, RecordingApi]) -> Iterator[WorkloadCache]:
    workload_cache = WorkloadCache(api[1], all_namespaces=False)
    try:
        yield workload_cache
    finally:
        workload_cache.close()


def cached_fleet(client: KubeApi, cache: WorkloadCache, source: RecordingSource) -> Fleet:
    telemetry = Telemetry()
    reconciler = ServiceReconciler(
        client, telemetry=telemetry, instance="test", cache=cache, status_refresh_s=60.0
    )
    return Fleet(reconciler, source, telemetry, tick_interval_s=1.0)


def lagging_after_first_tick(client: KubeApi, cache: WorkloadCache, start: float) -> Fleet:
    """A fleet that rendered `chat` and saw it ready in the cache; the cache then stops following
    the API, so from here on it lags every write."""
    fleet = cached_fleet(client, cache, RecordingSource(snapshot(taken_at=start)))
    fleet.register(isvc(client, "chat"))
    asyncio.run(fleet.tick(start))
    mark_ready(client, "chat")
    eventually(lambda: ready_in_cache(cache, "chat"), "the ready Deployment in the cache")
    for informer in cache.informers():
        informer.stop()
    return fleet


def ready_in_cache(cache: WorkloadCache, name: str) -> bool:
    found = cache.deployment(NS, name)
    return bool(found and (found.get("status") or {}).get("readyReplicas"))


def reads(client: RecordingApi) -> list[tuple[str, str]]:
    """Reads of Deployments or pods the tick made through the API (not the cache)."""
    return [(m, p) for m, p in client.calls if m == "GET" and ("/deployments" in p or "/pods" in p)]


def status_writes(client: RecordingApi) -> list[str]:
    return [p for m, p in client.calls if m == "PATCH" and p.endswith("/status")]


def test_a_steady_tick_reads_the_cache_and_rewrites_a_status_only_to_refresh_it(
    api: tuple[ApiServer, RecordingApi], cache: WorkloadCache
) -> None:
    _, client = api
    start = time.time()
    # Metrics well within the objective at the minimum replicas: every tick holds.
    source = RecordingSource(snapshot(taken_at=start))
    fleet = cached_fleet(client, cache, source)
    names = ["a", "b", "c"]
    for name in names:
        fleet.register(isvc(client, name))
    asyncio.run(fleet.tick(start))  # renders the workloads
    for name in names:
        mark_ready(client, name)
        eventually(lambda n=name: ready_in_cache(cache, n), f"{name} ready in the cache")
    asyncio.run(fleet.tick(start + 1))
    assert len(status_writes(client)) >= 3  # the first ticks have news to write

    client.calls.clear()
    for t in (2, 3, 30):  # nothing changes but the snapshot's time
        results = asyncio.run(fleet.tick(start + t))
        assert all(isinstance(r, Outcome) and r.decided for r in results.values()), results
    assert reads(client) == []
    assert status_writes(client) == []
    assert [m for m, _ in client.calls] == []  # no call at all: no event, no workload write

    asyncio.run(fleet.tick(start + 62))  # a minute after the last write: refreshed
    assert sorted(status_writes(client)) == sorted(
        f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices/{n}/status" for n in names
    )
    assert reads(client) == []
    for name in names:
        observed = fleet.reconciler.memory[(NS, name)].status.observed
        assert observed is not None and observed.time == to_time(start + 62)

    # A new instance (restarted, or a peer taking over) writes its first status at once.
    client.calls.clear()
    successor = cached_fleet(client, cache, RecordingSource(snapshot(taken_at=start)))
    for name in names:
        successor.register(fresh(client, name))
    asyncio.run(successor.tick(start + 63))
    assert len(status_writes(client)) == 3


def test_the_tick_after_a_scale_sees_it_while_the_cache_still_shows_the_old_deployment(
    api: tuple[ApiServer, RecordingApi], cache: WorkloadCache
) -> None:
    _, client = api
    start = time.time()
    fleet = lagging_after_first_tick(client, cache, start)
    fleet.metrics = RecordingSource(slow(start + 1))  # queueing: the objective needs more replicas

    asyncio.run(fleet.tick(start + 1))
    scaled = deployment(client, "chat")
    assert scaled is not None and scaled["spec"]["replicas"] > 1
    stale = cache.deployment(NS, "chat")
    assert stale is not None and stale["spec"]["replicas"] == 1  # the lag is real

    client.calls.clear()
    for t in (1.5, 2.0):
        asyncio.run(fleet.tick(start + t))
    # Read from the API instead of the lagging cache: the same decision, not applied again.
    assert ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/chat") in reads(client)
    assert not any(p.endswith("/scale") for _, p in client.calls)
    assert deployment(client, "chat") == scaled
    assert events(client, "chat").count("ScaledUp") == 1


def condition(message: str, status: str = "True", reason: str = "Fresh") -> Condition:
    return Condition(
        type="MetricsAvailable",
        status=status,
        reason=reason,
        message=message,
        last_transition_time=to_time(1_767_261_000.0),
    )


BEFORE = InferenceServiceStatus(
    replicas=ReplicasStatus(current=1, ready=1, desired=1),
    objective=ObjectiveStatus(name="p99 TTFT", target="1s", met=True, attainment="99.1%"),
    observed=ObservedStatus(value="480ms", queue=37, time=to_time(1_767_261_600.0)),
    conditions=[condition("2 req/s, running 8, waiting 0 on 1 pods")],
)


def later(**changes: Any) -> InferenceServiceStatus:
    """BEFORE a tick later, with `changes`: readings (observed, attainment, message) or more."""
    assert BEFORE.observed is not None and BEFORE.objective is not None
    observed = BEFORE.observed.model_copy(
        update={"time": to_time(1_767_261_601.0), **changes.pop("observed", {})}
    )
    objective = BEFORE.objective.model_copy(update=changes.pop("objective", {}))
    return BEFORE.model_copy(update={"observed": observed, "objective": objective, **changes})


@pytest.mark.parametrize(
    ("status", "written_at_once"),
    [
        # Readings alone: a newer snapshot, other numbers in it, attainment, a message's numbers.
        (later(), False),
        (later(observed={"value": "520ms", "queue": 40}), False),
        (later(objective={"attainment": "98.7%"}), False),
        (later(conditions=[condition("2.5 req/s, running 9, waiting 1 on 1 pods")]), False),
        # Something happened: a lever, a verdict, a condition's status, reason or words.
        (later(replicas=ReplicasStatus(current=2, ready=1, desired=2)), True),
        (later(objective={"met": False}), True),
        (later(conditions=[condition("Prometheus: cannot connect", "False", "QueryFailed")]), True),
        (later(conditions=[condition("2 req/s on 1 pods; 1 pod stopped reporting")]), True),
        (later(observed_generation=2), True),
    ],
)
def test_what_happened_is_written_at_once_readings_once_a_refresh_period(
    status: InferenceServiceStatus, written_at_once: bool
) -> None:
    assert needs_write(status, BEFORE, since_write_s=1.0, refresh_s=60.0) is written_at_once
    assert needs_write(status, BEFORE, since_write_s=60.0, refresh_s=60.0)  # refreshed
    assert needs_write(status, BEFORE, since_write_s=None, refresh_s=60.0)  # a new instance


def test_an_unchanged_status_is_never_written() -> None:
    assert not needs_write(BEFORE.model_copy(), BEFORE, since_write_s=600.0, refresh_s=60.0)
    assert not needs_write(BEFORE.model_copy(), BEFORE, since_write_s=None, refresh_s=60.0)


def test_a_tick_reads_the_api_while_the_cache_is_stale(
    api: tuple[ApiServer, RecordingApi],
) -> None:
    server, client = api
    cache = WorkloadCache(client, all_namespaces=False, backoff_s=(0.02, 0.1), stale_after_s=0.3)
    try:
        start = time.time()
        fleet = cached_fleet(client, cache, RecordingSource(snapshot(taken_at=start)))
        fleet.register(isvc(client, "chat"))
        asyncio.run(fleet.tick(start))
        mark_ready(client, "chat")
        eventually(lambda: ready_in_cache(cache, "chat"), "the ready Deployment in the cache")
        # The Deployment cache loses the API: its watch is cut and every LIST fails.
        server.faults.add("GET", "/deployments$", status=500)
        informer = next(i for i in cache.informers() if i.path.endswith("/deployments"))
        eventually(lambda: server.faults.drop_watches("/deployments$") == 1, "the watch cut")
        eventually(lambda: not informer.fresh, "the cache stale")
        client.request(  # someone else scales it meanwhile; the frozen cache still says 1
            "PATCH",
            f"/apis/apps/v1/namespaces/{NS}/deployments/chat/scale",
            body={"spec": {"replicas": 2}},
            content_type="application/merge-patch+json",
        )
        client.calls.clear()
        outcome = asyncio.run(fleet.tick(start + 1))[(NS, "chat")]
        assert isinstance(outcome, Outcome) and outcome.status.replicas is not None
        assert outcome.status.replicas.current == 2  # what the API says, not the old cache
        assert ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/chat") in reads(client)
    finally:
        cache.close()


def test_a_service_let_go_takes_its_superseded_versions_with_it(
    api: tuple[ApiServer, RecordingApi], cache: WorkloadCache
) -> None:
    _, client = api
    start = time.time()
    fleet = lagging_after_first_tick(client, cache, start)
    fleet.metrics = RecordingSource(slow(start + 1))
    asyncio.run(fleet.tick(start + 1))  # scales up: the version it replaced is remembered
    assert (NS, "chat") in fleet.reconciler.superseded
    fleet.unregister(NS, "chat")
    assert fleet.reconciler.superseded == {}


def test_an_attached_services_target_is_forgotten_unless_another_service_reads_it(
    api: tuple[ApiServer, RecordingApi],
) -> None:
    _, client = api
    reconciler = ServiceReconciler(client, telemetry=Telemetry(), instance="test")
    target = {"metadata": {"namespace": NS, "name": "shared-vllm", "resourceVersion": "5"}}
    for service in ("one", "two"):
        reconciler.read_deployment(NS, "shared-vllm", service=service)  # absent: None
    reconciler._wrote(target)
    reconciler.forget((NS, "one"))
    assert reconciler.superseded == {(NS, "shared-vllm"): {"5"}}  # "two" still reads it
    reconciler.forget((NS, "two"))
    assert reconciler.superseded == {}


def test_writes_from_worker_threads_side_by_side_are_all_remembered(
    api: tuple[ApiServer, RecordingApi],
) -> None:
    _, client = api
    reconciler = ServiceReconciler(client, telemetry=Telemetry(), instance="test")

    def write(thread: int) -> None:
        for i in range(2000):
            reconciler._wrote(
                {"metadata": {"namespace": NS, "name": "d", "resourceVersion": f"{thread}.{i}"}}
            )

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show at once
    try:
        threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(interval)
    assert len(reconciler.superseded[(NS, "d")]) == 8 * 2000


def test_a_namespace_left_without_services_stops_its_caches(
    api: tuple[ApiServer, RecordingApi], cache: WorkloadCache
) -> None:
    _, client = api
    client.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "other"}})
    start = time.time()
    fleet = cached_fleet(client, cache, RecordingSource(snapshot(taken_at=start)))
    fleet.register(isvc(client, "here"))
    manifest = {k: v for k, v in isvc(client, "there").items() if k in ("kind", "apiVersion")}
    manifest |= {"metadata": {"name": "there"}, "spec": fresh(client, "there")["spec"]}
    fleet.register(
        client.request(
            "POST", "/apis/sloscale.dev/v1alpha1/namespaces/other/inferenceservices", body=manifest
        )
    )
    results = asyncio.run(fleet.tick(start))
    assert all(isinstance(r, Outcome) for r in results.values()), results
    namespaces = {i.path.split("/")[-2] for i in cache.informers()}
    assert namespaces == {NS, "other"}
    others = [i for i in cache.informers() if "/other/" in i.path]

    fleet.unregister("other", "there")
    assert {i.path.split("/")[-2] for i in cache.informers()} == {NS}
    eventually(lambda: all(not i._thread.is_alive() for i in others), "their threads to end")
    fleet.unregister(NS, "here")
    assert cache.informers() == []
