"""A kopf operator's full lifecycle against the emulator, repeated to catch flakes.

create → handler runs → status patched → update → handler runs → delete → finalizer removed →
object gone; with a dropped watch in the middle, which kopf must survive by re-listing. Set
SLOSCALE_KOPF_REPEAT to run it more times (the default keeps `make test` short).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apiserver_support import CRD, GROUP, PLURAL, ROOT, VERSION, Cluster, isvc, start_cluster
from kopf.testing import KopfRunner
from kubernetes.client.rest import ApiException

from sloscale.sandbox.processes import wait_for

OPERATOR = Path(__file__).with_name("kopf_operator.py")
PEERING_CRDS = ROOT / "charts" / "sloscale" / "crds" / "kopf-peering.yaml"
REPEAT = int(os.environ.get("SLOSCALE_KOPF_REPEAT", "3"))
FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def _until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    return wait_for(check, timeout, what, interval_s=0.05)


@pytest.fixture(scope="module")
def kopf_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("kopf"))


@pytest.mark.parametrize("attempt", range(REPEAT))
def test_kopf_operator_lifecycle(kopf_cluster: Cluster, attempt: int, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = kopf_cluster
    ns = cluster.namespace()
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    c = cluster.custom

    def get() -> dict[str, Any]:
        obj: dict[str, Any] = c.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "svc")
        return obj

    args = ["run", "--standalone", "--namespace", ns, "--verbose", str(OPERATOR)]
    with KopfRunner(args, timeout=60) as runner:
        c.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("svc", replicas={"min": 1, "max": 3}))
        created = _until(lambda: get().get("status", {}).get("observedGeneration") == 1 and get(), "the create handler's status")
        assert created["status"]["replicas"] == {"desired": 1}
        assert FINALIZER in created["metadata"]["finalizers"]

        _until(lambda: cluster.api.faults.drop_watches(PLURAL) >= 1, "an open watch to cut")
        c.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "svc", {"spec": {"replicas": {"max": 5}}})
        updated = _until(lambda: get().get("status", {}).get("observedGeneration") == 2 and get(), "the update handler's status")
        assert updated["status"]["replicas"] == {"desired": 5}

        c.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "svc")
        _until(lambda: _gone(get), "the finalizer to be removed and the object deleted")
        reasons = _until(lambda: _reasons(cluster, ns) >= {"Created", "CleanedUp"} and _reasons(cluster, ns), "kopf's events")
        assert {"Created", "CleanedUp"} <= reasons
    assert runner.exception is None
    assert runner.exit_code == 0
    assert "created with max 3" in runner.output
    assert "Handler 'deleted' succeeded" in runner.output
    assert "Traceback" not in runner.output


def _reasons(cluster: Cluster, ns: str) -> set[str]:
    return {e.reason for e in cluster.core.list_namespaced_event(ns, field_selector="involvedObject.name=svc").items}


def _gone(get: Callable[[], Any]) -> bool:
    try:
        get()
    except ApiException as err:
        return err.status == 404
    return False


@pytest.fixture(scope="module")
def peering_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("peering"), crds=[CRD, PEERING_CRDS])


def test_kopf_peering_keeps_a_heartbeat_in_the_peering_object(peering_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = peering_cluster
    ns = cluster.namespace()
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    c = cluster.custom
    c.create_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "sloscale"}})

    def peers() -> dict[str, Any]:
        status: dict[str, Any] = c.get_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", "sloscale").get("status") or {}
        return status

    with KopfRunner(["run", "--peering", "sloscale", "--namespace", ns, "--verbose", str(OPERATOR)], timeout=60) as runner:
        heartbeat = _until(peers, "a heartbeat in the peering object")
        assert [p["priority"] for p in heartbeat.values()] == [0]
        c.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("svc"))
        _until(lambda: c.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "svc").get("status"), "the create handler's status")
    assert runner.exit_code == 0 and runner.exception is None
    assert peers() == {}  # the operator removed its own entry on exit
