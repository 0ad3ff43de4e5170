"""The scale subresource (autoscaling/v1 Scale) and Events in both API versions."""

from __future__ import annotations

import json

import pytest
from apiserver_support import GROUP, PLURAL, VERSION, Cluster, deployment, isvc
from kubernetes.client.rest import ApiException


def test_deployment_scale_reads_and_writes_spec_replicas(cluster: Cluster, ns: str) -> None:
    cluster.apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    cluster.apps.patch_namespaced_deployment_status("web", ns, {"status": {"replicas": 2, "readyReplicas": 1}})
    scale = cluster.apps.read_namespaced_deployment_scale("web", ns)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (2, 2, "app=web")
    scaled = cluster.apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
    assert scaled.spec.replicas == 4
    dep = cluster.apps.read_namespaced_deployment("web", ns)
    assert (dep.spec.replicas, dep.metadata.generation, dep.status.ready_replicas) == (4, 2, 1)


def test_replacing_a_scale_with_a_stale_version_or_negative_replicas_fails(cluster: Cluster, ns: str) -> None:
    cluster.apps.create_namespaced_deployment(ns, deployment("web"))
    scale = cluster.apps.read_namespaced_deployment_scale("web", ns)
    cluster.apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}})
    scale.spec.replicas = 5
    with pytest.raises(ApiException) as err:
        cluster.apps.replace_namespaced_deployment_scale("web", ns, scale)
    assert err.value.status == 409
    fresh = cluster.apps.read_namespaced_deployment_scale("web", ns)
    fresh.spec.replicas = -1
    with pytest.raises(ApiException) as err:
        cluster.apps.replace_namespaced_deployment_scale("web", ns, fresh)
    assert err.value.status == 422
    assert json.loads(err.value.body)["details"]["causes"][0]["field"] == "spec.replicas"


def test_kubectl_scale_moves_a_deployment(cluster: Cluster, ns: str) -> None:
    cluster.apps.create_namespaced_deployment(ns, deployment("web"))
    assert "scaled" in cluster.kubectl("scale", "-n", ns, "deployment/web", "--replicas=3").stdout
    assert cluster.apps.read_namespaced_deployment("web", ns).spec.replicas == 3


def test_a_custom_resource_scale_subresource_follows_the_crd_paths(cluster: Cluster, ns: str) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "fleets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "fleets", "kind": "Fleet"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size", "labelSelectorPath": ".status.selector"}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {"size": {"type": "integer", "maximum": 10}}},
                                   "status": {"type": "object", "properties": {"size": {"type": "integer"}, "selector": {"type": "string"}}}}}}}]},
    }
    cluster.crds.create_custom_resource_definition(crd)
    c = cluster.custom
    c.create_namespaced_custom_object("example.com", "v1", ns, "fleets", {"apiVersion": "example.com/v1", "kind": "Fleet", "metadata": {"name": "f"}, "spec": {"size": 1}})
    c.patch_namespaced_custom_object_status("example.com", "v1", ns, "fleets", "f", {"status": {"size": 1, "selector": "app=f"}})
    scale = c.get_namespaced_custom_object_scale("example.com", "v1", ns, "fleets", "f")
    assert scale["spec"] == {"replicas": 1} and scale["status"] == {"replicas": 1, "selector": "app=f"}
    c.patch_namespaced_custom_object_scale("example.com", "v1", ns, "fleets", "f", {"spec": {"replicas": 3}})
    assert c.get_namespaced_custom_object("example.com", "v1", ns, "fleets", "f")["spec"]["size"] == 3
    with pytest.raises(ApiException) as err:  # the CR's own schema still applies
        c.patch_namespaced_custom_object_scale("example.com", "v1", ns, "fleets", "f", {"spec": {"replicas": 11}})
    assert err.value.status == 422
    cluster.crds.delete_custom_resource_definition("fleets.example.com")


def test_core_events_are_visible_as_events_k8s_io_and_back(cluster: Cluster, ns: str) -> None:
    owner = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("chat"))
    ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "name": "chat", "namespace": ns, "uid": owner["metadata"]["uid"]}
    cluster.core.create_namespaced_event(ns, {"metadata": {"generateName": "chat-"}, "involvedObject": ref, "reason": "ScaledUp",
                                              "message": "2 -> 3 replicas", "type": "Normal", "source": {"component": "sloscale"}})
    new_api = cluster.http("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events").json()["items"]
    assert [(e["reason"], e["note"], e["regarding"]["name"], e["deprecatedSource"]["component"]) for e in new_api] == [("ScaledUp", "2 -> 3 replicas", "chat", "sloscale")]
    posted = cluster.http("POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", {
        "metadata": {"name": "chat.2"}, "regarding": ref, "reason": "BatchChanged", "note": "64 -> 32", "type": "Normal",
        "action": "Patch", "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "sloscale.dev/operator", "reportingInstance": "op-1"})
    assert posted.status_code == 201 and posted.json()["apiVersion"] == "events.k8s.io/v1"
    core = cluster.core.list_namespaced_event(ns, field_selector=f"involvedObject.name=chat,involvedObject.uid={owner['metadata']['uid']}").items
    assert sorted((e.reason, e.message) for e in core) == [("BatchChanged", "64 -> 32"), ("ScaledUp", "2 -> 3 replicas")]
    incomplete = cluster.http("POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", {"metadata": {"name": "x"}, "regarding": ref, "reason": "R"})
    assert incomplete.status_code == 422
    described = cluster.kubectl("describe", "-n", ns, "infsvc", "chat").stdout
    assert "ScaledUp" in described and "2 -> 3 replicas" in described
