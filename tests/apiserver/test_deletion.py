"""Deletion: finalizers, deletionTimestamp, preconditions, ownerReference cascading, namespaces."""

from __future__ import annotations

from typing import Any

import pytest
from apiserver_support import GROUP, PLURAL, VERSION, Cluster, deployment, isvc
from kubernetes.client.rest import ApiException


def _owner_ref(obj: dict[str, Any], block: bool = False) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": block}


def _exists(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
        return True
    except ApiException as err:
        assert err.status == 404
        return False


def test_finalizers_hold_the_object_until_they_are_removed(cluster: Cluster, ns: str) -> None:
    c = cluster.custom
    c.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {**isvc("a"), "metadata": {"name": "a", "finalizers": ["sloscale.dev/cleanup"]}})
    resp = cluster.http("DELETE", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/a")
    assert resp.status_code == 202
    held = c.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a")
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as err:
        c.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"metadata": {"finalizers": ["sloscale.dev/cleanup", "other"]}})
    assert err.value.status == 422 and "no new finalizers can be added" in err.value.body
    again = cluster.http("DELETE", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/a")
    assert again.status_code == 202
    c.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"metadata": {"finalizers": None}})
    assert not _exists(c.get_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "a")


def test_delete_without_finalizers_returns_the_object_or_a_success_status(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    gone = cluster.http("DELETE", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/a")
    assert gone.status_code == 200 and gone.json()["kind"] == "InferenceService"
    cluster.apps.create_namespaced_deployment(ns, deployment("web"))
    status = cluster.http("DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/web").json()
    assert (status["kind"], status["status"], status["details"]["name"]) == ("Status", "Success", "web")


def test_delete_preconditions_are_checked(cluster: Cluster, ns: str) -> None:
    made = cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    with pytest.raises(ApiException) as err:
        cluster.core.delete_namespaced_config_map("c", ns, body={"preconditions": {"uid": "not-the-uid"}})
    assert err.value.status == 409 and "Precondition failed" in err.value.body
    cluster.core.delete_namespaced_config_map("c", ns, body={"preconditions": {"uid": made.metadata.uid}})
    assert not _exists(cluster.core.read_namespaced_config_map, "c", ns)


def test_background_deletion_cascades_through_owner_references(cluster: Cluster, ns: str) -> None:
    owner = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("chat"))
    dep = cluster.apps.create_namespaced_deployment(ns, deployment("chat", ownerReferences=[_owner_ref(owner)]))
    dep_ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat", "uid": dep.metadata.uid}
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "grandchild", "ownerReferences": [dep_ref]}})
    other = cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "other-owner"}})
    other_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "other-owner", "uid": other.metadata.uid}
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "shared", "ownerReferences": [_owner_ref(owner), other_ref]}})
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    assert not _exists(cluster.apps.read_namespaced_deployment, "chat", ns)
    assert not _exists(cluster.core.read_namespaced_config_map, "grandchild", ns)
    shared = cluster.core.read_namespaced_config_map("shared", ns)
    assert [r.uid for r in shared.metadata.owner_references] == [other.metadata.uid]


def test_orphan_deletion_keeps_dependents_and_drops_their_references(cluster: Cluster, ns: str) -> None:
    owner = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("chat"))
    cluster.apps.create_namespaced_deployment(ns, deployment("chat", ownerReferences=[_owner_ref(owner)]))
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat", propagation_policy="Orphan")
    kept = cluster.apps.read_namespaced_deployment("chat", ns)
    assert kept.metadata.owner_references is None


def test_foreground_deletion_waits_for_dependents(cluster: Cluster, ns: str) -> None:
    owner = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("chat"))
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "dep", "finalizers": ["x/hold"], "ownerReferences": [_owner_ref(owner, block=True)]}})
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat", propagation_policy="Foreground")
    waiting = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
    assert cluster.core.read_namespaced_config_map("dep", ns).metadata.deletion_timestamp is not None
    cluster.core.patch_namespaced_config_map("dep", ns, {"metadata": {"finalizers": None}})
    assert not _exists(cluster.core.read_namespaced_config_map, "dep", ns)
    assert not _exists(cluster.custom.get_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "chat")


def test_deleting_a_namespace_deletes_its_contents_then_itself(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {**isvc("a"), "metadata": {"name": "a", "finalizers": ["x/hold"]}})
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    cluster.core.delete_namespace(ns)
    assert cluster.core.read_namespace(ns).status.phase == "Terminating"
    assert not _exists(cluster.core.read_namespaced_config_map, "c", ns)
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "late"}})
    assert err.value.status == 403
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"metadata": {"finalizers": []}})
    assert not _exists(cluster.core.read_namespace, ns)


def test_delete_collection_by_label(cluster: Cluster, ns: str) -> None:
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": {"app": app}}})
    cluster.core.delete_collection_namespaced_config_map(ns, label_selector="app=x")
    assert [o.metadata.name for o in cluster.core.list_namespaced_config_map(ns).items] == ["c"]
