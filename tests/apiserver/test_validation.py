"""Custom resources against the project CRD: schema, CEL rules, defaulting, pruning, 422 shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from apiserver_support import CRD, GROUP, PLURAL, VERSION, Cluster, isvc
from kubernetes.client.rest import ApiException


def _reject(cluster: Cluster, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as err:
        cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    assert err.value.status == 422
    status: dict[str, Any] = json.loads(err.value.body)
    return status


def _causes(status: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["reason"], c.get("field", ""), c["message"]) for c in status["details"]["causes"]]


def test_defaults_from_the_schema_are_filled_in(cluster: Cluster, ns: str) -> None:
    made = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a", engine={}, batching={}))
    spec = made["spec"]
    assert spec["mode"] == "Enforce" and spec["coldStart"] == "120s"
    assert spec["objective"]["latency"] == {"metric": "TimeToFirstToken", "target": "1s", "percentile": "p99", "window": "5m", "attainment": "99%"}
    assert spec["engine"] == {"image": "vllm/vllm-openai:v0.32.0", "gpus": 1, "port": 8000, "startupTimeout": "30m", "gpuProfile": "H100"}
    assert spec["batching"] == {"mode": "Auto", "minMaxNumSeqs": 8, "initialMaxNumSeqs": 64, "maxMaxNumSeqs": 256, "cooldown": "15m"}
    assert "behavior" not in spec  # absent objects are not created by defaulting


def test_a_cel_failure_is_a_422_shaped_like_the_real_servers(cluster: Cluster, ns: str) -> None:
    status = _reject(cluster, ns, isvc("x", replicas={"min": 5, "max": 2}))
    assert (status["kind"], status["status"], status["reason"], status["code"]) == ("Status", "Failure", "Invalid", 422)
    assert status["details"]["name"] == "x" and status["details"]["group"] == GROUP and status["details"]["kind"] == "InferenceService"
    assert _causes(status) == [("FieldValueInvalid", "spec.replicas", 'Invalid value: "object": replicas.min must be less than or equal to replicas.max')]
    assert status["message"] == ('InferenceService.sloscale.dev "x" is invalid: spec.replicas: Invalid value: "object": '
                                 "replicas.min must be less than or equal to replicas.max")


def test_several_errors_are_listed_in_brackets(cluster: Cluster, ns: str) -> None:
    body = isvc("x", replicas={"min": 5, "max": 2})
    body["spec"]["objective"]["latency"]["window"] = "10s"
    status = _reject(cluster, ns, body)
    assert status["message"].startswith('InferenceService.sloscale.dev "x" is invalid: [')
    assert {c[1] for c in _causes(status)} == {"spec.replicas", "spec.objective.latency"}


LATENCY = {"metric": "TimeToFirstToken", "target": "1s"}


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({"scaleTargetRef": {"name": "d"}}, "spec", "set exactly one of spec.model"),
    ({"model": None, "engine": {"gpus": 1}, "scaleTargetRef": {"name": "d"}}, "spec", "spec.engine applies only with spec.model"),
    ({"engine": {"args": ["--max-num-seqs=8"]}}, "spec.engine.args", "--max-num-seqs is set by the operator"),
    ({"objective": {"type": "Latency", "throughput": {"latencyBound": LATENCY}}}, "spec.objective", "objective must set exactly the member"),
    ({"objective": {"type": "Throughput", "latency": LATENCY}}, "spec.objective", "objective must set exactly the member"),
    ({"objective": {"type": "Latency", "latency": {**LATENCY, "target": "0s"}}}, "spec.objective.latency", "target must be a positive duration"),
    ({"objective": {"type": "Latency", "latency": {**LATENCY, "window": "29s"}}}, "spec.objective.latency", "window must be at least 30s"),
    ({"objective": {"type": "Throughput", "throughput": {"latencyBound": {**LATENCY, "window": "800ms"}}}}, "spec.objective.throughput.latencyBound", "window must be at least 30s"),
    ({"batching": {"minMaxNumSeqs": 100}}, "spec.batching", "batching bounds must be ordered"),
    ({"replicas": {"min": 3, "max": 2}}, "spec.replicas", "replicas.min must be less than or equal to replicas.max"),
])
def test_every_cel_rule_of_the_crd_is_enforced(cluster: Cluster, ns: str, spec: dict[str, Any], field: str, message: str) -> None:
    body = isvc("x", **spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    causes = _causes(_reject(cluster, ns, body))
    assert [(c[0], c[1]) for c in causes] == [("FieldValueInvalid", field)]
    assert message in causes[0][2]


@pytest.mark.parametrize("window", ["30s", "1h30m", "5m", "45000ms"])
def test_go_duration_strings_evaluate_in_cel(cluster: Cluster, ns: str, window: str) -> None:
    body = isvc(f"w{window.replace('ms', 'x')}", objective={"type": "Latency", "latency": {**LATENCY, "window": window, "target": "800ms"}})
    assert cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)["spec"]["objective"]["latency"]["window"] == window


@pytest.mark.parametrize(("spec", "cause"), [
    ({"mode": "Sometimes"}, ("FieldValueNotSupported", "spec.mode", 'Unsupported value: "Sometimes": supported values: "Enforce", "Advisory"')),
    ({"replicas": {"min": "one", "max": 2}}, ("FieldValueTypeInvalid", "spec.replicas.min", 'Invalid value: "string": spec.replicas.min in body must be of type integer: "string"')),
    ({"replicas": {"min": 1}}, ("FieldValueRequired", "spec.replicas.max", "Required value")),
    ({"replicas": {"min": 1, "max": 1001}}, ("FieldValueInvalid", "spec.replicas.max", "Invalid value: 1001: spec.replicas.max in body should be less than or equal to 1000")),
    ({"replicas": {"min": -1, "max": 1}}, ("FieldValueInvalid", "spec.replicas.min", "Invalid value: -1: spec.replicas.min in body should be greater than or equal to 0")),
    ({"coldStart": "2 minutes"}, ("FieldValueInvalid", "spec.coldStart", "Invalid value: \"2 minutes\": spec.coldStart in body should match '^([0-9]+(ms|s|m|h))+$'")),
    ({"model": ""}, ("FieldValueInvalid", "spec.model", 'Invalid value: "": spec.model in body should be at least 1 chars long')),
    ({"model": "m" * 254}, ("FieldValueTooLong", "spec.model", "Too long: may not be more than 253 bytes")),
    ({"engine": {"args": ["--x"] * 65}}, ("FieldValueTooMany", "spec.engine.args", "Too many: 65: must have at most 64 items")),
])
def test_schema_errors_carry_kubernetes_reasons_and_field_paths(cluster: Cluster, ns: str, spec: dict[str, Any], cause: tuple[str, str, str]) -> None:
    causes = _causes(_reject(cluster, ns, isvc("x", **spec)))
    assert causes[0] == cause


def test_blocking_schema_errors_skip_the_cel_rules(cluster: Cluster, ns: str) -> None:
    causes = _causes(_reject(cluster, ns, isvc("x", mode="Sometimes", replicas={"min": 5, "max": 2})))
    assert causes[0][1] == "spec.mode"
    assert "some validation rules were not checked" in causes[-1][2]
    assert all(c[1] != "spec.replicas" for c in causes)


def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(cluster: Cluster, ns: str) -> None:
    body = isvc("x")
    body["spec"]["bogus"] = 1
    body["spec"]["replicas"]["extra"] = True
    body["metadata"]["madeUp"] = "x"
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}"
    strict = cluster.http("POST", path + "?fieldValidation=Strict", body)
    assert strict.status_code == 400
    assert 'unknown field "spec.bogus"' in strict.json()["message"]
    made = cluster.http("POST", path, body)
    assert made.status_code == 201
    assert "bogus" not in made.json()["spec"] and "extra" not in made.json()["spec"]["replicas"]
    assert "madeUp" not in made.json()["metadata"]
    assert 'unknown field \\"spec.bogus\\"' in made.headers["Warning"]


def test_transition_rules_see_the_old_object(cluster: Cluster, ns: str) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "pools.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "pools", "kind": "Pool"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "properties": {
                         "size": {"type": "integer", "x-kubernetes-validations": [
                             {"rule": "self >= oldSelf", "message": "size may not shrink"}]},
                         "tier": {"type": "string", "x-kubernetes-validations": [
                             {"rule": "self == oldSelf", "message": "tier is immutable", "reason": "FieldValueForbidden"}]},
                         "limit": {"type": "integer", "maximum": 100}}}}}}}]},
    }
    cluster.crds.create_custom_resource_definition(crd)
    c = cluster.custom
    c.create_namespaced_custom_object("example.com", "v1", ns, "pools", {"apiVersion": "example.com/v1", "kind": "Pool", "metadata": {"name": "p"}, "spec": {"size": 3, "tier": "gold", "limit": 50}})
    assert c.patch_namespaced_custom_object("example.com", "v1", ns, "pools", "p", {"spec": {"size": 5}})["spec"]["size"] == 5
    with pytest.raises(ApiException) as err:
        c.patch_namespaced_custom_object("example.com", "v1", ns, "pools", "p", {"spec": {"size": 4, "tier": "silver"}})
    causes = _causes(json.loads(err.value.body))
    assert ("FieldValueInvalid", "spec.size", 'Invalid value: "integer": size may not shrink') in causes
    assert ("FieldValueForbidden", "spec.tier", "Forbidden: tier is immutable") in causes
    # Ratcheting: tighten the schema; the stored value stays acceptable while it is unchanged.
    stored = cluster.crds.read_custom_resource_definition("pools.example.com")
    body = cluster.client.sanitize_for_serialization(stored)
    body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["limit"]["maximum"] = 10
    cluster.crds.replace_custom_resource_definition("pools.example.com", body)
    assert c.patch_namespaced_custom_object("example.com", "v1", ns, "pools", "p", {"spec": {"size": 6}})["spec"]["size"] == 6
    with pytest.raises(ApiException) as err:
        c.patch_namespaced_custom_object("example.com", "v1", ns, "pools", "p", {"spec": {"limit": 40}})
    assert _causes(json.loads(err.value.body))[0][1] == "spec.limit"
    cluster.crds.delete_custom_resource_definition("pools.example.com")


def test_status_writes_are_validated_against_the_status_schema(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    with pytest.raises(ApiException) as err:
        cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "a", {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}})
    fields = {c[1] for c in _causes(json.loads(err.value.body))}
    assert {"status.conditions[0].status", "status.conditions[0].reason"} <= fields


def test_every_example_in_the_crd_file_is_accepted_by_kubectl(cluster: Cluster, ns: str) -> None:
    doc = yaml.safe_load(CRD.read_text())
    assert doc["spec"]["names"]["shortNames"] == ["infsvc"]
    good = yaml.safe_dump(isvc("kubectl-ok"))
    assert "created" in cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=good).stdout
    bad = yaml.safe_dump(isvc("kubectl-bad", replicas={"min": 5, "max": 2}))
    out = cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=bad, check=False)
    assert out.returncode != 0
    assert 'The InferenceService "kubectl-bad" is invalid: spec.replicas: Invalid value: "object": replicas.min must be less than or equal to replicas.max' in out.stderr


def test_map_lists_refuse_duplicate_keys_and_date_times_are_checked(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    cond = {"type": "Ready", "status": "True", "reason": "R", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    with pytest.raises(ApiException) as err:
        cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "a", {"status": {"conditions": [cond, {**cond, "status": "False"}]}})
    assert _causes(json.loads(err.value.body)) == [("FieldValueDuplicate", "status.conditions[1]", 'Duplicate value: {"type":"Ready"}')]
    with pytest.raises(ApiException) as err:
        cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "a", {"status": {"conditions": [{**cond, "lastTransitionTime": "yesterday"}]}})
    assert _causes(json.loads(err.value.body))[0][:2] == ("FieldValueInvalid", "status.conditions[0].lastTransitionTime")
    ok = cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "a", {"status": {"conditions": [cond], "lastScaleTime": "2026-01-01T00:00:00.5+02:00"}})
    assert ok["status"]["conditions"] == [cond]


def test_durations_beyond_gos_range_fail_the_rule_as_an_evaluation_error(cluster: Cluster, ns: str) -> None:
    assert cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("ok", objective={"type": "Latency", "latency": {**LATENCY, "target": "2562047h"}}))
    causes = _causes(_reject(cluster, ns, isvc("x", objective={"type": "Latency", "latency": {**LATENCY, "target": "2562048h"}})))
    assert causes == [("FieldValueInvalid", "spec.objective.latency",
                       'Invalid value: "object": time: invalid duration "2562048h" evaluating rule: target must be a positive duration such as 800ms or 2s')]
