"""The watch-fed caches against the API emulator over real HTTP: they list, follow the watch,
forget what was deleted, list again when their resourceVersion has expired, and stop at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sloscale.apiserver import ApiServer
from sloscale.informers import Informer, WorkloadCache, trim_pod
from sloscale.kube import MERGE_PATCH, KubeApi
from sloscale.resource import SERVICE_LABEL

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
