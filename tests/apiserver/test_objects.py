"""Object semantics through the official client: create, update, patch, subresources, selectors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apiserver_support import GROUP, PLURAL, VERSION, Cluster, deployment, isvc
from kubernetes.client.rest import ApiException


def _status(err: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(err.value.body)
    return body


def test_create_answers_201_with_server_set_metadata(cluster: Cluster, ns: str) -> None:
    obj, code, _ = cluster.core.create_namespaced_config_map_with_http_info(ns, {"metadata": {"name": "c"}, "data": {"a": "1"}})
    assert code == 201
    assert obj.metadata.uid and obj.metadata.resource_version and obj.metadata.creation_timestamp
    cr = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    assert cr["metadata"]["generation"] == 1 and cr["metadata"]["namespace"] == ns
    assert int(cr["metadata"]["resourceVersion"]) > int(obj.metadata.resource_version)


def test_generate_name_gets_a_random_suffix(cluster: Cluster, ns: str) -> None:
    names = {cluster.core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}}).metadata.name for _ in range(3)}
    assert len(names) == 3
    assert all(n.startswith("gen-") and len(n) == len("gen-") + 5 for n in names)


def test_name_or_generate_name_is_required_and_names_are_validated(cluster: Cluster, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_config_map(ns, {"metadata": {}})
    assert err.value.status == 422
    assert _status(err)["details"]["causes"][0] == {"reason": "FieldValueRequired", "field": "metadata.name", "message": "Required value: name or generateName is required"}
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "Bad_Name"}})
    assert err.value.status == 422 and "RFC 1123 subdomain" in _status(err)["message"]


def test_duplicate_create_is_409_already_exists(cluster: Cluster, ns: str) -> None:
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "dup"}})
    assert err.value.status == 409
    assert _status(err)["reason"] == "AlreadyExists"
    assert _status(err)["message"] == 'configmaps "dup" already exists'


def test_missing_objects_and_namespaces_are_404(cluster: Cluster, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        cluster.apps.read_namespaced_deployment("nope", ns)
    assert err.value.status == 404 and _status(err)["message"] == 'deployments.apps "nope" not found'
    assert _status(err)["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "c"}})
    assert err.value.status == 404 and _status(err)["message"] == 'namespaces "no-such-ns" not found'


def test_put_with_a_stale_resource_version_is_409_conflict(cluster: Cluster, ns: str) -> None:
    first = cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"v": "1"}})
    first.data = {"v": "2"}
    cluster.core.replace_namespaced_config_map("c", ns, first)
    first.data = {"v": "3"}
    with pytest.raises(ApiException) as err:
        cluster.core.replace_namespaced_config_map("c", ns, first)
    assert err.value.status == 409
    assert _status(err)["reason"] == "Conflict"
    assert "the object has been modified" in _status(err)["message"]
    assert cluster.core.read_namespaced_config_map("c", ns).data == {"v": "2"}


def test_custom_resources_need_a_resource_version_to_be_replaced(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    with pytest.raises(ApiException) as err:
        cluster.custom.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", isvc("a"))
    assert err.value.status == 422
    assert _status(err)["details"]["causes"][0]["field"] == "metadata.resourceVersion"


def test_generation_bumps_on_spec_changes_only(cluster: Cluster, ns: str) -> None:
    c = cluster.custom
    c.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    labelled = c.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"metadata": {"labels": {"x": "y"}}})
    assert labelled["metadata"]["generation"] == 1
    status = c.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "a", {"status": {"observedGeneration": 1}})
    assert status["metadata"]["generation"] == 1
    changed = c.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"spec": {"replicas": {"max": 6}}})
    assert changed["metadata"]["generation"] == 2
    dep = cluster.apps.create_namespaced_deployment(ns, deployment("web"))
    assert dep.metadata.generation == 1
    dep = cluster.apps.patch_namespaced_deployment("web", ns, {"metadata": {"annotations": {"a": "b"}}})
    assert dep.metadata.generation == 1
    dep = cluster.apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}})
    assert dep.metadata.generation == 2


def test_a_write_that_changes_nothing_keeps_the_resource_version(cluster: Cluster, ns: str) -> None:
    made = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    same = cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"spec": {"replicas": {"max": 4}}})
    assert same["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]


def test_status_is_written_only_through_the_status_subresource(cluster: Cluster, ns: str) -> None:
    c = cluster.custom
    created = c.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {**isvc("a"), "status": {"observedGeneration": 7}})
    assert "status" not in created
    main = c.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"spec": {"mode": "Advisory"}, "status": {"observedGeneration": 9}})
    assert main["spec"]["mode"] == "Advisory" and "status" not in main
    sub = c.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "a", {"spec": {"mode": "Enforce"}, "status": {"observedGeneration": 2}})
    assert sub["spec"]["mode"] == "Advisory" and sub["status"] == {"observedGeneration": 2}
    dep = cluster.apps.create_namespaced_deployment(ns, {**deployment("web"), "status": {"replicas": 5}})
    assert dep.status.replicas is None
    dep = cluster.apps.patch_namespaced_deployment_status("web", ns, {"status": {"replicas": 1, "readyReplicas": 1}})
    assert dep.status.ready_replicas == 1 and dep.metadata.generation == 1


def test_merge_patch_deletes_with_null_and_replaces_lists(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a", engine={"args": ["--a", "--b"]}))
    out = cluster.http("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/a",
                       {"spec": {"engine": {"args": ["--c"], "gpus": None}}}, "application/merge-patch+json").json()
    assert out["spec"]["engine"]["args"] == ["--c"]
    assert out["spec"]["engine"]["gpus"] == 1  # deleted, then defaulted again from the schema


def test_strategic_merge_patch_merges_containers_and_env_by_name(cluster: Cluster, ns: str) -> None:
    cluster.apps.create_namespaced_deployment(ns, deployment("web"))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]},
                                                          {"name": "sidecar", "image": "busybox:1"}]}}}}
    dep = cluster.apps.patch_namespaced_deployment("web", ns, patch)  # the client sends strategic merge
    containers = {c.name: c for c in dep.spec.template.spec.containers}
    assert set(containers) == {"vllm", "sidecar"}
    assert containers["vllm"].image == "vllm/vllm-openai:v0.11.0"
    assert [(e.name, e.value) for e in containers["vllm"].env] == [("A", "1"), ("B", "3"), ("C", "4")]
    delete = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    dep = cluster.apps.patch_namespaced_deployment("web", ns, delete)
    assert [c.name for c in dep.spec.template.spec.containers] == ["vllm"]


def test_strategic_merge_is_refused_for_custom_resources(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    resp = cluster.http("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/a", {"spec": {}}, "application/strategic-merge-patch+json")
    assert resp.status_code == 415 and resp.json()["reason"] == "UnsupportedMediaType"


def test_json_patch_applies_and_a_failed_test_is_422(cluster: Cluster, ns: str) -> None:
    made = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    rv = made["metadata"]["resourceVersion"]
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/a"
    ok = cluster.http("PATCH", path, [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                                      {"op": "replace", "path": "/spec/replicas/max", "value": 7}], "application/json-patch+json")
    assert ok.status_code == 200 and ok.json()["spec"]["replicas"]["max"] == 7
    stale = cluster.http("PATCH", path, [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                                         {"op": "replace", "path": "/spec/replicas/max", "value": 8}], "application/json-patch+json")
    assert stale.status_code == 422 and stale.json()["reason"] == "Invalid"
    missing = cluster.http("PATCH", path, [{"op": "remove", "path": "/spec/nothing"}], "application/json-patch+json")
    assert missing.status_code == 422
    assert cluster.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a")["spec"]["replicas"]["max"] == 7


def test_a_merge_patch_carrying_a_stale_resource_version_is_409(cluster: Cluster, ns: str) -> None:
    made = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"spec": {"mode": "Advisory"}})
    with pytest.raises(ApiException) as err:
        cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", {"metadata": {"resourceVersion": made["metadata"]["resourceVersion"]}, "spec": {"mode": "Enforce"}})
    assert err.value.status == 409


@pytest.mark.parametrize(("selector", "expected"), [
    ("tier=gpu", ["a", "b"]),
    ("tier==gpu,zone=x", ["a"]),
    ("tier!=gpu", ["c", "d"]),
    ("zone in (x,y)", ["a", "b", "c"]),
    ("zone notin (x)", ["b", "c", "d"]),
    ("zone", ["a", "b", "c"]),
    ("!zone", ["d"]),
])
def test_label_selectors(cluster: Cluster, selector: str, expected: list[str]) -> None:
    ns = cluster.namespace()
    for name, labels in {"a": {"tier": "gpu", "zone": "x"}, "b": {"tier": "gpu", "zone": "y"}, "c": {"tier": "cpu", "zone": "y"}, "d": {}}.items():
        cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})
    found = cluster.core.list_namespaced_config_map(ns, label_selector=selector).items
    assert [o.metadata.name for o in found] == expected


def test_field_selectors_and_unsupported_fields(cluster: Cluster, ns: str) -> None:
    for name in ("p1", "p2"):
        cluster.core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    cluster.core.patch_namespaced_pod_status("p2", ns, {"status": {"phase": "Running"}})
    assert [p.metadata.name for p in cluster.core.list_namespaced_pod(ns, field_selector="status.phase=Running").items] == ["p2"]
    assert [p.metadata.name for p in cluster.core.list_namespaced_pod(ns, field_selector="metadata.name!=p2").items] == ["p1"]
    everywhere = cluster.core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={ns}").items
    assert len(everywhere) == 2
    with pytest.raises(ApiException) as err:
        cluster.core.list_namespaced_pod(ns, field_selector="spec.bogus=1")
    assert err.value.status == 400


def test_lists_paginate_with_limit_and_continue(cluster: Cluster, ns: str) -> None:
    for i in range(5):
        cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
    page = cluster.core.list_namespaced_config_map(ns, limit=2)
    names = [o.metadata.name for o in page.items]
    assert page.metadata.remaining_item_count == 3
    while page.metadata._continue:
        page = cluster.core.list_namespaced_config_map(ns, limit=2, _continue=page.metadata._continue)
        names += [o.metadata.name for o in page.items]
    assert names == [f"c{i}" for i in range(5)]


def test_lists_carry_kind_api_version_and_a_resource_version(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    body = cluster.http("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}").json()
    assert (body["kind"], body["apiVersion"]) == ("InferenceServiceList", f"{GROUP}/{VERSION}")
    assert int(body["metadata"]["resourceVersion"]) >= int(body["items"][0]["metadata"]["resourceVersion"])
    assert body["items"][0]["kind"] == "InferenceService"


def test_dry_run_validates_without_storing(cluster: Cluster, ns: str) -> None:
    resp = cluster.http("POST", f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", {"metadata": {"name": "dry"}})
    assert resp.status_code == 201 and resp.json()["metadata"]["name"] == "dry"
    assert cluster.http("GET", f"/api/v1/namespaces/{ns}/configmaps/dry").status_code == 404


def test_deployments_get_the_real_servers_defaults_and_checks(cluster: Cluster, ns: str) -> None:
    dep = cluster.apps.create_namespaced_deployment(ns, deployment("web"))
    assert dep.spec.strategy.type == "RollingUpdate" and dep.spec.revision_history_limit == 10
    assert dep.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert dep.spec.template.spec.restart_policy == "Always"
    bad = deployment("bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as err:
        cluster.apps.create_namespaced_deployment(ns, bad)
    assert err.value.status == 422
    assert _status(err)["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


def test_crd_selectable_fields_extend_field_selectors(cluster: Cluster, ns: str) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "lamps.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "lamps", "kind": "Lamp"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "selectableFields": [{"jsonPath": ".spec.color"}],
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {"color": {"type": "string"}, "watts": {"type": "integer"}}}}}}}]},
    }
    cluster.crds.create_custom_resource_definition(crd)
    for name, color in (("a", "red"), ("b", "blue")):
        cluster.custom.create_namespaced_custom_object("example.com", "v1", ns, "lamps", {"apiVersion": "example.com/v1", "kind": "Lamp", "metadata": {"name": name}, "spec": {"color": color, "watts": 5}})
    found = cluster.custom.list_namespaced_custom_object("example.com", "v1", ns, "lamps", field_selector="spec.color=blue")["items"]
    assert [o["metadata"]["name"] for o in found] == ["b"]
    with pytest.raises(ApiException) as err:
        cluster.custom.list_namespaced_custom_object("example.com", "v1", ns, "lamps", field_selector="spec.watts=5")
    assert err.value.status == 400
    cluster.crds.delete_custom_resource_definition("lamps.example.com")
