"""Fault injection: latency, error statuses by method and path, counts, probability, dropped watches."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from apiserver_support import Cluster, start_cluster
from kubernetes.client.rest import ApiException


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path, fault_seed=7)


def test_an_error_status_fires_for_its_count_then_stops(faulty: Cluster) -> None:
    faulty.api.faults.add("GET", r"/configmaps$", status=503, times=2)
    for _ in range(2):
        resp = faulty.http("GET", "/api/v1/namespaces/default/configmaps")
        assert resp.status_code == 503
        assert resp.json()["reason"] == "ServiceUnavailable" and resp.headers["Retry-After"] == "1"
    assert faulty.http("GET", "/api/v1/namespaces/default/configmaps").status_code == 200
    assert faulty.api.faults.current() == []


def test_faults_match_method_and_path_only(faulty: Cluster) -> None:
    faulty.api.faults.add("PATCH", r"/configmaps/", status=409)
    faulty.core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert faulty.core.read_namespaced_config_map("c", "default").metadata.name == "c"
    with pytest.raises(ApiException) as err:
        faulty.core.patch_namespaced_config_map("c", "default", {"data": {"a": "b"}})
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as err:
        faulty.core.patch_namespaced_config_map("c", "default", {"data": {"a": "b"}})
    assert err.value.status == 409  # no count: it keeps firing until cleared
    faulty.api.faults.clear()
    assert faulty.core.patch_namespaced_config_map("c", "default", {"data": {"a": "b"}}).data == {"a": "b"}


def test_latency_delays_the_answer(faulty: Cluster) -> None:
    faulty.api.faults.add("GET", r"^/version$", latency=1.0, times=1)
    with pytest.raises(requests.Timeout):
        requests.get(faulty.url + "/version", timeout=0.2)
    assert requests.get(faulty.url + "/version", timeout=5).status_code == 200


def test_probability_is_repeatable_for_a_seed(tmp_path: Path) -> None:
    outcomes = []
    for run in range(2):
        for cluster in start_cluster(tmp_path / str(run), fault_seed=42):
            cluster.api.faults.add("GET", r"^/version$", status=500, probability=0.5)
            outcomes.append([cluster.http("GET", "/version").status_code for _ in range(20)])
    assert outcomes[0] == outcomes[1]
    assert {200, 500} == set(outcomes[0])


def test_the_admin_endpoint_adds_lists_and_clears_faults(faulty: Cluster) -> None:
    added = faulty.http("POST", "/_emulator/faults", {"method": "POST", "path": "/pods", "status": 500, "times": 1})
    assert added.status_code == 201 and added.json()["status"] == 500
    assert [f["path"] for f in faulty.http("GET", "/_emulator/faults").json()["faults"]] == ["/pods"]
    resp = faulty.http("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    assert resp.status_code == 500 and resp.json()["reason"] == "InternalError"
    assert faulty.http("POST", "/_emulator/faults", {"bogus": 1}).status_code == 400
    faulty.http("POST", "/_emulator/faults", {"path": "x", "status": 503})
    assert faulty.http("DELETE", "/_emulator/faults").json() == {"faults": []}


def _open_watch(cluster: Cluster, path: str) -> tuple[threading.Thread, list[object], threading.Event]:
    seen: list[object] = []
    started = threading.Event()

    def read() -> None:
        try:
            with requests.get(cluster.url + path, stream=True, timeout=30) as resp:
                started.set()
                for line in resp.iter_lines():
                    if line:
                        seen.append(json.loads(line))
            seen.append("closed")
        except requests.RequestException as exc:
            seen.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert started.wait(10)
    return thread, seen, started


def test_open_watches_can_be_cut(faulty: Cluster) -> None:
    thread, seen, _ = _open_watch(faulty, "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=60")
    for _ in range(400):
        if faulty.api.faults.open_watches() == 1:
            break
        threading.Event().wait(0.05)
    assert faulty.http("POST", "/_emulator/faults/drop-watches", {}).json() == {"dropped": 1}
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(seen[-1], requests.RequestException)  # the stream broke; it did not end cleanly


def test_a_drop_fault_cuts_matching_watches_after_a_delay(faulty: Cluster) -> None:
    faulty.api.faults.add("GET", r"/configmaps", drop_watch_after=0.2, times=1)
    faulty.core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    thread, seen, _ = _open_watch(faulty, "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=60")
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(seen[0], dict) and seen[0]["type"] == "ADDED"
    assert isinstance(seen[-1], requests.RequestException)
    assert faulty.http("GET", "/api/v1/namespaces/default/configmaps").status_code == 200
