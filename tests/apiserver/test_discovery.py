"""Discovery, version and CRD registration, as clients and kubectl find resources."""

from __future__ import annotations

import json

import pytest
from apiserver_support import Cluster
from kubernetes.client.rest import ApiException

WIDGETS = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
        }],
    },
}


@pytest.mark.parametrize("path", ["/version", "/api", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1", "/apis/sloscale.dev/v1alpha1"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_discovery_documents_answer_with_and_without_trailing_slash(cluster: Cluster, path: str, slash: str) -> None:
    resp = cluster.http("GET", path + slash)
    assert resp.status_code == 200
    body = resp.json()
    expected = {"/version": None, "/api": "APIVersions", "/apis": "APIGroupList", "/apis/apps": "APIGroup"}.get(path, "APIResourceList")
    assert body.get("kind") == expected
    if path == "/version":
        assert body["major"] == "1" and body["gitVersion"].startswith("v1.")


def test_apps_v1_lists_scale_and_status_subresources(cluster: Cluster) -> None:
    resources = {r["name"]: r for r in cluster.http("GET", "/apis/apps/v1").json()["resources"]}
    assert resources["deployments"]["namespaced"] is True
    assert {"create", "watch", "patch"} <= set(resources["deployments"]["verbs"])
    scale = resources["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert resources["deployments/status"]["verbs"] == ["get", "patch", "update"]


def test_core_and_events_groups_are_served(cluster: Cluster) -> None:
    core = {r["name"] for r in cluster.http("GET", "/api/v1").json()["resources"]}
    assert {"namespaces", "pods", "services", "endpoints", "events", "configmaps", "secrets"} <= core
    groups = {g["name"]: g for g in cluster.http("GET", "/apis").json()["groups"]}
    assert {"apps", "events.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io", "sloscale.dev"} <= set(groups)
    assert groups["sloscale.dev"]["preferredVersion"]["groupVersion"] == "sloscale.dev/v1alpha1"


def test_unknown_paths_are_404_status_objects(cluster: Cluster) -> None:
    for path in ("/apis/nope.dev/v1", "/api/v2", "/apis/apps/v1/namespaces/default/gadgets", "/nothing"):
        resp = cluster.http("GET", path)
        assert resp.status_code == 404
        assert resp.json()["kind"] == "Status" and resp.json()["reason"] == "NotFound"


def test_a_crd_registers_its_resource_on_create_and_removes_it_on_delete(cluster: Cluster, ns: str) -> None:
    created = cluster.crds.create_custom_resource_definition(WIDGETS)
    assert {c.type: c.status for c in created.status.conditions}["Established"] == "True"
    assert "widgets" in {r["name"] for r in cluster.http("GET", "/apis/example.com/v1").json()["resources"]}
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}}
    cluster.custom.create_namespaced_custom_object("example.com", "v1", ns, "widgets", widget)
    assert "wd" in cluster.kubectl("api-resources", "--api-group=example.com").stdout
    cluster.crds.delete_custom_resource_definition("widgets.example.com")
    assert cluster.http("GET", f"/apis/example.com/v1/namespaces/{ns}/widgets/w").status_code == 404
    assert "example.com" not in {g["name"] for g in cluster.http("GET", "/apis").json()["groups"]}


def test_a_crd_whose_name_does_not_match_its_names_is_invalid(cluster: Cluster) -> None:
    bad = {**WIDGETS, "metadata": {"name": "gadgets.example.com"}}
    with pytest.raises(ApiException) as err:
        cluster.crds.create_custom_resource_definition(bad)
    assert err.value.status == 422
    cause = json.loads(err.value.body)["details"]["causes"][0]
    assert cause == {"reason": "FieldValueInvalid", "field": "metadata.name",
                     "message": 'Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group'}


def test_a_crd_with_a_rule_that_does_not_compile_is_rejected(cluster: Cluster) -> None:
    bad = {**WIDGETS, "metadata": {"name": "blobs.example.com"}, "spec": {
        **WIDGETS["spec"], "names": {"plural": "blobs", "kind": "Blob"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "x-kubernetes-validations": [{"rule": "self.size >"}]}}}]}}
    with pytest.raises(ApiException) as err:
        cluster.crds.create_custom_resource_definition(bad)
    assert err.value.status == 422
    cause = json.loads(err.value.body)["details"]["causes"][0]
    assert cause["field"] == "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule"
    assert "compilation failed" in cause["message"]


def test_kubectl_discovers_the_project_kinds(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources").stdout
    line = next(x for x in out.splitlines() if x.startswith("inferenceservices"))
    assert "infsvc" in line and "sloscale.dev/v1alpha1" in line and "InferenceService" in line
    assert "Server Version: v1.37" in cluster.kubectl("version").stdout
