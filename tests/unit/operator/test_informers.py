"""The watch-fed caches against the API emulator over real HTTP: they list, follow the watch,
forget what was deleted, list again when their resourceVersion has expired, and stop at once."""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.registry import Collector

from sloscale.apiserver import ApiServer
from sloscale.informers import Informer, WorkloadCache, backoff, trim_deployment, trim_pod
from sloscale.kube import MERGE_PATCH, KubeApi
from sloscale.resource import SERVICE_LABEL
from sloscale.workload import (
    TEMPLATE_HASH_ANNOTATION,
    find_container,
    observe,
    rollout_in_progress,
    selector_of,
)

NS = "default"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, timeout_s: float = 10.0) -> T:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return value


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, KubeApi]]:
    # A short event log, so that a watch resumed from an old resourceVersion meets 410 Gone.
    with ApiServer.in_thread(history=5) as server:
        client = KubeApi.connect(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            yield server, client
        finally:
            client.close()


@pytest.fixture
def informers() -> Iterator[list[Informer]]:
    started: list[Informer] = []
    try:
        yield started
    finally:
        for informer in started:
            informer.stop()


def deployment(name: str, labels: dict[str, str], replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "vllm", "image": "vllm"}]},
            },
        },
    }


def scale(client: KubeApi, name: str, replicas: int) -> None:
    client.request(
        "PATCH",
        f"{DEPLOYMENTS}/{name}/scale",
        body={"spec": {"replicas": replicas}},
        content_type=MERGE_PATCH,
    )


def replicas_of(informer: Informer, name: str) -> int | None:
    found = informer.get(NS, name)
    return None if found is None else int(found["spec"]["replicas"])


def test_lists_then_follows_changes_and_deletions(
    api: tuple[ApiServer, KubeApi], informers: list[Informer]
) -> None:
    _, client = api
    client.request("POST", DEPLOYMENTS, body=deployment("a", {"app": "a"}))
    informer = Informer(client, DEPLOYMENTS).start()
    informers.append(informer)
    assert informer.wait_synced(10)
    assert replicas_of(informer, "a") == 1  # from the LIST

    client.request("POST", DEPLOYMENTS, body=deployment("b", {"app": "b", "tier": "x"}))
    scale(client, "a", 3)
    eventually(lambda: replicas_of(informer, "a") == 3, "the scale to reach the cache")
    eventually(lambda: informer.get(NS, "b"), "the new Deployment")
    assert [d["metadata"]["name"] for d in informer.select(NS, {"tier": "x"})] == ["b"]
    assert informer.select(NS, {"tier": "x", "app": "a"}) == []
    assert informer.select("elsewhere", {"app": "a"}) == []

    client.request("DELETE", f"{DEPLOYMENTS}/b")
    eventually(lambda: informer.get(NS, "b") is None, "the deletion")
    assert len(informer) == 1 and informer.lists == 1  # all of it from one LIST and its watch


def test_an_expired_resource_version_means_a_fresh_list_that_drops_what_was_deleted(
    api: tuple[ApiServer, KubeApi], informers: list[Informer]
) -> None:
    server, client = api
    client.request("POST", DEPLOYMENTS, body=deployment("gone", {"app": "gone"}))
    # The LIST is answered at once; the watch after it is held back while more changes happen
    # than the server's event log keeps: resuming from the list's resourceVersion is refused.
    server.faults.add("GET", "/deployments$", times=1)
    server.faults.add("GET", "/deployments$", latency=1.5, times=1)
    informer = Informer(client, DEPLOYMENTS).start()
    informers.append(informer)
    assert informer.wait_synced(10)
    assert informer.get(NS, "gone") is not None
    client.request("DELETE", f"{DEPLOYMENTS}/gone")
    for i in range(8):
        client.request("POST", DEPLOYMENTS, body=deployment(f"new-{i}", {"app": "new"}))
    eventually(lambda: informer.expired == 1 and informer.lists == 2, "410 Gone, then a LIST")
    eventually(lambda: len(informer.select(NS, {"app": "new"})) == 8, "the new Deployments")
    assert informer.get(NS, "gone") is None
    # And it follows the watch again afterwards.
    scale(client, "new-0", 2)
    eventually(lambda: replicas_of(informer, "new-0") == 2, "a change after the relist")


def test_a_cut_watch_means_a_fresh_list(
    api: tuple[ApiServer, KubeApi], informers: list[Informer]
) -> None:
    server, client = api
    client.request("POST", DEPLOYMENTS, body=deployment("gone", {"app": "gone"}))
    informer = Informer(client, DEPLOYMENTS, backoff_s=(0.5, 1.0)).start()
    informers.append(informer)
    assert informer.wait_synced(10)
    eventually(lambda: server.faults.open_watches() == 1, "the watch to open")
    # Cut mid-stream (a restarted API server, a load balancer): changes made before the
    # informer is back are found by the LIST it makes on reconnecting.
    assert server.faults.drop_watches() == 1
    client.request("DELETE", f"{DEPLOYMENTS}/gone")
    client.request("POST", DEPLOYMENTS, body=deployment("new", {"app": "new"}))
    eventually(lambda: informer.lists == 2, "a second LIST")
    eventually(lambda: informer.get(NS, "new"), "the new Deployment")
    assert informer.get(NS, "gone") is None and informer.expired == 0
    scale(client, "new", 2)
    eventually(lambda: replicas_of(informer, "new") == 2, "a change after the relist")


def test_a_failing_api_is_retried_until_the_list_succeeds(
    api: tuple[ApiServer, KubeApi], informers: list[Informer]
) -> None:
    server, client = api
    client.request("POST", DEPLOYMENTS, body=deployment("a", {"app": "a"}))
    server.faults.add("GET", "/deployments$", status=500, times=2)
    informer = Informer(client, DEPLOYMENTS, backoff_s=(0.05, 0.1)).start()
    informers.append(informer)
    assert informer.wait_synced(10)
    assert replicas_of(informer, "a") == 1 and server.faults.hits == 2


def test_stop_returns_at_once_from_an_open_watch(
    api: tuple[ApiServer, KubeApi], informers: list[Informer]
) -> None:
    _, client = api
    informer = Informer(client, DEPLOYMENTS).start()
    assert informer.wait_synced(10)
    time.sleep(0.2)  # the watch is open and idle
    informer.stop(timeout_s=10)
    assert not informer._thread.is_alive()


def test_pods_are_kept_trimmed_to_what_the_control_loop_reads() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "namespace": NS,
            "labels": {"app": "a"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubelet"}],
            "annotations": {"big": "x" * 1000},
        },
        "spec": {"containers": [{"name": "vllm", "image": "vllm", "args": ["--a"] * 50}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"},
            ],
            "containerStatuses": [{"name": "vllm", "restartCount": 2, "image": "vllm"}],
        },
    }
    assert trim_pod(pod) == {
        "metadata": {
            "name": "p",
            "namespace": NS,
            "labels": {"app": "a"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}
            ],
            "containerStatuses": [{"name": "vllm", "restartCount": 2}],
        },
    }


def test_the_workload_cache_says_unknown_until_listed_then_answers_per_namespace(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    client.request("POST", DEPLOYMENTS, body=deployment("a", {SERVICE_LABEL: "a"}))
    client.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "other"}})
    cache = WorkloadCache(client, all_namespaces=False)
    try:
        first = cache.deployment(NS, "a")  # starts this namespace's informers
        assert first is None or first["metadata"]["name"] == "a"
        found = eventually(lambda: cache.deployment(NS, "a"), "the namespace's Deployments")
        assert found["spec"]["replicas"] == 1
        selector = {SERVICE_LABEL: "a"}
        assert eventually(lambda: cache.pods(NS, selector) is not None, "the pods") is True
        assert cache.pods(NS, selector) == []
        assert cache.pods(NS, {}) is None  # no selector: nothing the cache can answer
        assert cache.deployment("other", "a") is None
        paths = sorted(i.path for i in cache.informers())
        assert paths == [
            "/api/v1/namespaces/default/pods",
            "/api/v1/namespaces/other/pods",
            "/apis/apps/v1/namespaces/default/deployments",
            "/apis/apps/v1/namespaces/other/deployments",
        ]
    finally:
        cache.close()
    assert all(not i._thread.is_alive() for i in cache.informers())
    assert cache.deployment(NS, "a") is None  # closed: it answers nothing


def test_watching_every_namespace_takes_one_informer_per_kind(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    cache = WorkloadCache(client, all_namespaces=True)
    try:
        cache.deployment(NS, "a")
        cache.deployment("other", "b")
        assert sorted(i.path for i in cache.informers()) == [
            "/api/v1/pods",
            "/apis/apps/v1/deployments",
        ]
    finally:
        cache.close()


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "vllm", "image": "vllm"}]},
    }


def test_only_the_operators_deployments_and_pods_are_cached_and_deployments_trimmed(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    pods = f"/api/v1/namespaces/{NS}/pods"
    ours = deployment("ours", {SERVICE_LABEL: "ours"})
    ours["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "x" * 10_000,
        TEMPLATE_HASH_ANNOTATION: "abc",
    }
    ours["spec"]["template"]["spec"]["containers"][0].update(
        args=["--max-num-seqs=64"], env=[{"name": "A", "value": "b" * 1000}]
    )
    client.request("POST", DEPLOYMENTS, body=ours)
    client.request("POST", DEPLOYMENTS, body=deployment("theirs", {"app": "theirs"}))
    client.request("POST", pods, body=pod("ours-0", {SERVICE_LABEL: "ours"}))
    client.request("POST", pods, body=pod("theirs-0", {"app": "theirs"}))
    cache = WorkloadCache(client, all_namespaces=True)
    try:
        cached = eventually(lambda: cache.deployment(NS, "ours"), "our Deployment")
        assert cache.deployment(NS, "theirs") is None  # the reconciler GETs what is not cached
        assert eventually(lambda: cache.pods(NS, {SERVICE_LABEL: "ours"}), "our pod")
        # The server selected: the cluster's other objects never reached the operator ...
        client.request("POST", DEPLOYMENTS, body=deployment("later", {"app": "later"}))
        client.request("POST", DEPLOYMENTS, body=deployment("next", {SERVICE_LABEL: "next"}))
        eventually(lambda: cache.deployment(NS, "next"), "a new Deployment of ours")
        deployments, pod_cache = sorted(cache.informers(), key=lambda i: i.path, reverse=True)
        assert (len(deployments), len(pod_cache)) == (2, 1)
        # ... and one that stops carrying the label leaves the cache (a DELETED to the watch).
        client.request(
            "PATCH",
            f"{DEPLOYMENTS}/next",
            body={"metadata": {"labels": {SERVICE_LABEL: None}}},
            content_type=MERGE_PATCH,
        )
        eventually(lambda: len(deployments) == 1, "the unlabelled Deployment to leave")
    finally:
        cache.close()
    # What the reconciler reads is kept; a client's copy of the manifest, env and the rest not.
    assert cached["metadata"]["annotations"] == {TEMPLATE_HASH_ANNOTATION: "abc"}
    assert cached["spec"]["template"]["spec"] == {
        "containers": [{"name": "vllm", "args": ["--max-num-seqs=64"]}]
    }
    assert "managedFields" not in cached["metadata"]
    assert cached["metadata"]["labels"] == {SERVICE_LABEL: "ours"}


def test_a_selector_not_on_the_service_label_is_left_to_the_api(
    api: tuple[ApiServer, KubeApi],
) -> None:
    # Pods selected by other labels may lack the service label: only the API knows them all.
    _, client = api
    cache = WorkloadCache(client, all_namespaces=True)
    try:
        selector = {SERVICE_LABEL: "a"}
        eventually(lambda: cache.pods(NS, selector) is not None, "the pod cache")
        assert cache.pods(NS, {"app": "a"}) is None
        assert cache.pods(NS, {"app": "a", SERVICE_LABEL: "a"}) == []
    finally:
        cache.close()


def test_a_trimmed_deployment_reads_as_the_whole_one() -> None:
    whole: dict[str, Any] = {
        "metadata": {
            "name": "chat",
            "namespace": NS,
            "uid": "u",
            "resourceVersion": "7",
            "generation": 3,
            "labels": {SERVICE_LABEL: "chat"},
            "annotations": {TEMPLATE_HASH_ANNOTATION: "h", "other/annotation": "x"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {SERVICE_LABEL: "chat"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {SERVICE_LABEL: "chat"}},
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "proxy", "ports": [{"containerPort": 80}]},
                        {
                            "name": "vllm",
                            "image": "vllm",
                            "command": ["python", "-m", "vllm"],
                            "args": ["--max-num-seqs", "48"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        },
                    ],
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                },
            },
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "True"}],
        },
    }
    trimmed = trim_deployment(copy.deepcopy(whole))
    assert observe(trimmed, [], "vllm") == observe(whole, [], "vllm")
    assert observe(trimmed, [], None) == observe(whole, [], None)
    assert find_container(trimmed, "vllm")[0] == find_container(whole, "vllm")[0] == 1
    assert selector_of(trimmed) == selector_of(whole)
    assert rollout_in_progress(trimmed) and rollout_in_progress(whole)
    assert trimmed["metadata"]["annotations"] == {TEMPLATE_HASH_ANNOTATION: "h"}
    assert "strategy" not in trimmed["spec"] and "conditions" not in trimmed["status"]
    assert trimmed["spec"]["template"]["spec"]["containers"][0] == {"name": "sidecar"}


def test_a_cache_whose_list_keeps_failing_goes_stale_and_says_so_once(
    api: tuple[ApiServer, KubeApi], caplog: pytest.LogCaptureFixture
) -> None:
    server, client = api
    client.request("POST", DEPLOYMENTS, body=deployment("a", {SERVICE_LABEL: "a"}))
    cache = WorkloadCache(client, all_namespaces=False, backoff_s=(0.02, 0.1), stale_after_s=0.5)
    collector = cache.collector()
    try:
        eventually(lambda: cache.deployment(NS, "a"), "the Deployment in the cache")
        informer = next(i for i in cache.informers() if i.path.endswith("/deployments"))
        assert gauges(collector)["sloscale_informer_fresh"][("deployments", NS)] == 1.0
        # Both watches open (deployments and pods) before the fault: a watch still opening
        # when it lands would be refused, leaving no watch to cut.
        eventually(lambda: server.faults.open_watches() == 2, "both watches open")

        # The watch breaks and every LIST after it fails: first still served (a relist usually
        # follows at once), then stale, and readers are sent to the API.
        fault = server.faults.add("GET", "/deployments$", status=500)
        caplog.set_level(logging.DEBUG, logger="sloscale.informers")
        eventually(lambda: server.faults.drop_watches("/deployments$") == 1, "the watch cut")
        eventually(lambda: informer.failures >= 1, "a failed LIST")
        eventually(lambda: cache.deployment(NS, "a") is None, "the stale cache refused", 5)
        eventually(lambda: informer.failures >= 4, "more failed LISTs")
        assert informer.synced and informer.get(NS, "a") is not None  # kept, not served
        state = gauges(collector)
        assert state["sloscale_informer_fresh"][("deployments", NS)] == 0.0
        assert state["sloscale_informer_failing_seconds"][("deployments", NS)] >= 0.5
        assert state["sloscale_informer_fresh"][("pods", NS)] == 1.0  # the pods are fine
        scale(client, "a", 4)  # missed by the cache meanwhile

        server.faults.remove(fault.id)
        eventually(lambda: informer.fresh, "the cache current again")
        found = eventually(lambda: cache.deployment(NS, "a"), "the Deployment served again")
        assert found["spec"]["replicas"] == 4
        assert gauges(collector)["sloscale_informer_failing_seconds"][("deployments", NS)] == 0
    finally:
        cache.close()
    # Once per change of state — failing, stale, current again — however many retries.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 3, warnings
    assert "list/watch failed" in warnings[0] and "stale" in warnings[1]
    assert "listed again" in warnings[2]


def gauges(collector: Collector) -> dict[str, dict[tuple[str, ...], float]]:
    found: dict[str, dict[tuple[str, ...], float]] = {}
    for family in collector.collect():
        for sample in family.samples:
            labels = (sample.labels["resource"], sample.labels["namespace"])
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def test_retain_stops_the_informers_of_namespaces_left_without_a_service(
    api: tuple[ApiServer, KubeApi],
) -> None:
    _, client = api
    cache = WorkloadCache(client, all_namespaces=False)
    try:
        cache.deployment(NS, "a")
        cache.deployment("other", "b")
        assert len(cache.informers()) == 4
        stopped = cache.retain({NS})
        assert sorted(i.path for i in stopped) == [
            "/api/v1/namespaces/other/pods",
            "/apis/apps/v1/namespaces/other/deployments",
        ]
        eventually(lambda: all(not i._thread.is_alive() for i in stopped), "their threads")
        assert all(NS in i.path for i in cache.informers()) and len(cache.informers()) == 2
        cache.deployment("other", "b")  # a service there again: started again
        assert len(cache.informers()) == 4
        assert cache.retain(set()) and cache.informers() == []
    finally:
        cache.close()
    every = WorkloadCache(client, all_namespaces=True)
    try:
        every.deployment(NS, "a")
        assert every.retain(set()) == [] and len(every.informers()) == 2  # until close
    finally:
        every.close()


def test_retries_back_off_doubling_up_to_a_cap_each_pause_jittered() -> None:
    longest = list(itertools.islice(backoff(0.5, 30.0, rng=lambda: 1.0), 9))
    assert longest == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    shortest = list(itertools.islice(backoff(0.5, 30.0, rng=lambda: 0.0), 9))
    assert shortest == [d / 2 for d in longest]
    drawn = list(itertools.islice(backoff(0.5, 30.0), 200))
    assert all(d / 2 <= p <= d for p, d in zip(drawn, longest + [30.0] * 191, strict=True))
    assert len(set(drawn[10:])) > 1  # not one fixed pause: replicas spread out


class RefusedWatch(Informer):
    """Lists fine, and every watch after a list breaks at once; records each back-off pause."""

    pauses: list[float]

    def _list(self) -> None:
        self.lists += 1

    def _watch(self) -> None:
        raise ConnectionResetError("watch refused")


class StopAfter:
    """Stands in for the informer's stop flag: records the pauses, stops after `n` of them."""

    def __init__(self, pauses: list[float], n: int) -> None:
        self.pauses, self.n = pauses, n

    def is_set(self) -> bool:
        return len(self.pauses) >= self.n

    def wait(self, timeout: float) -> bool:
        self.pauses.append(timeout)
        return self.is_set()


def test_a_watch_refused_after_every_list_backs_off_instead_of_listing_in_a_loop() -> None:
    informer = RefusedWatch(None, DEPLOYMENTS, backoff_s=(0.5, 30.0))  # type: ignore[arg-type]
    pauses: list[float] = []
    informer._stopping = StopAfter(pauses, 7)  # type: ignore[assignment]
    informer._run()  # in this thread: returns once stopped
    assert informer.lists == 7
    for pause, ceiling in zip(pauses, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0], strict=True):
        assert ceiling / 2 <= pause <= ceiling


class EndedAtOnce(RefusedWatch):
    """A server that ends every watch as soon as it is opened, normally (no error)."""

    watches = 0

    def _watch(self) -> None:
        self.watches += 1


def test_a_watch_the_server_ends_at_once_is_reopened_after_a_growing_pause() -> None:
    informer = EndedAtOnce(None, DEPLOYMENTS, backoff_s=(0.5, 30.0))  # type: ignore[arg-type]
    pauses: list[float] = []
    informer._stopping = StopAfter(pauses, 5)  # type: ignore[assignment]
    informer._run()
    assert informer.lists == 1 and informer.watches == 5  # no relist: the watches did not fail
    for pause, ceiling in zip(pauses, [0.5, 1.0, 2.0, 4.0, 8.0], strict=True):
        assert ceiling / 2 <= pause <= ceiling
