"""kubectl against the emulator: apply, get (server-side tables), describe, explain, delete."""

from __future__ import annotations

import os
import subprocess

import yaml
from apiserver_support import CRD, GROUP, KUBECTL, PLURAL, VERSION, Cluster, deployment, isvc

STATUS = {
    "observedGeneration": 1,
    "objective": {"name": "p99 TTFT", "target": "1s"},
    "observed": {"value": "850ms"},
    "replicas": {"current": 2, "desired": 3},
    "batch": {"current": 64},
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "ObjectiveMet", "status": "False", "reason": "AboveTarget", "message": "850ms > 1s", "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ],
}


def test_apply_get_and_printer_columns(cluster: Cluster, ns: str) -> None:
    manifest = yaml.safe_dump(isvc("chat"))
    assert "inferenceservice.sloscale.dev/chat created" in cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=manifest).stdout
    assert "unchanged" in cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=manifest).stdout
    cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "chat", {"status": STATUS})
    lines = cluster.kubectl("get", "-n", ns, "infsvc").stdout.splitlines()
    assert lines[0].split() == ["NAME", "OBJECTIVE", "TARGET", "OBSERVED", "REPLICAS", "DESIRED", "BATCH", "MET", "AGE"]
    row = lines[1].split()
    assert row[:9][:-1] == ["chat", "p99", "TTFT", "1s", "850ms", "2", "3", "64", "False"][:8]
    assert row[1:3] == ["p99", "TTFT"] and row[3:9] == ["1s", "850ms", "2", "3", "64", "False"]


def test_apply_changes_a_custom_resource_with_a_merge_patch(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(isvc("chat")))
    changed = yaml.safe_dump(isvc("chat", replicas={"min": 2, "max": 9}))
    assert "configured" in cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=changed).stdout
    obj = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    assert obj["spec"]["replicas"] == {"min": 2, "max": 9} and obj["metadata"]["generation"] == 2


def test_apply_changes_a_deployment_with_a_strategic_merge_patch(cluster: Cluster, ns: str) -> None:
    dep = deployment("web")
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(dep))
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "9"}]
    out = cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(dep))
    assert "configured" in out.stdout and "warning" not in out.stderr.lower()
    env = cluster.apps.read_namespaced_deployment("web", ns).spec.template.spec.containers[0].env
    assert [(e.name, e.value) for e in env] == [("A", "9")]


def test_get_yaml_and_json_round_trip_the_stored_object(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("chat"))
    obj = yaml.safe_load(cluster.kubectl("get", "-n", ns, "inferenceservice", "chat", "-o", "yaml").stdout)
    assert obj["kind"] == "InferenceService" and obj["spec"]["mode"] == "Enforce"
    listed = yaml.safe_load(cluster.kubectl("get", "-n", ns, "deploy,infsvc", "-o", "yaml").stdout)
    assert [i["kind"] for i in listed["items"]] == ["InferenceService"]
    jsonpath = cluster.kubectl("get", "-n", ns, "infsvc", "chat", "-o", "jsonpath={.spec.replicas.max}").stdout
    assert jsonpath == "4"


def test_get_built_in_kinds_prints_their_usual_columns(cluster: Cluster, ns: str) -> None:
    cluster.apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    header = cluster.kubectl("get", "-n", ns, "deployments").stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert cluster.kubectl("get", "-n", ns, "deployments").stdout.splitlines()[1].split()[:2] == ["web", "0/2"]
    namespaces = cluster.kubectl("get", "namespaces").stdout
    assert "default" in namespaces and "Active" in namespaces
    cluster.core.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    cluster.core.patch_namespaced_pod_status("p", ns, {"status": {"phase": "Running", "podIP": "10.0.0.7"}})
    wide = cluster.kubectl("get", "pods", "-A", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:4] == ["NAMESPACE", "NAME", "READY", "STATUS"] and "IP" in wide[0].split()
    row = next(line.split() for line in wide if line.startswith(ns))
    assert row[1:4] == ["p", "0/1", "Running"] and "10.0.0.7" in row


def test_explain_reads_the_crd_schema(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "inferenceservice.spec.replicas").stdout
    assert "KIND:       InferenceService" in out
    assert "Bounds of the replica lever." in out
    assert "max\t<integer> -required-" in out


def test_delete_waits_until_the_object_is_gone(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("chat"))
    out = cluster.kubectl("delete", "-n", ns, "infsvc", "chat")
    assert 'inferenceservice.sloscale.dev "chat" deleted' in out.stdout
    assert "No resources found" in cluster.kubectl("get", "-n", ns, "infsvc").stderr
    missing = cluster.kubectl("delete", "-n", ns, "infsvc", "chat", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_get_watch_streams_rows_as_objects_change(cluster: Cluster, ns: str) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("chat"))
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.Popen([str(KUBECTL), "get", "-n", ns, "infsvc", "--watch"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[0] == "NAME"
        assert proc.stdout.readline().split()[0] == "chat"
        cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "chat", {"status": STATUS})
        assert proc.stdout.readline().split()[:3] == ["chat", "p99", "TTFT"]
    finally:
        proc.kill()
        proc.wait(10)


def test_apply_works_for_namespaces_and_the_crd_itself(cluster: Cluster) -> None:
    def namespace(label: str) -> str:
        return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "applied", "labels": {"a": label}}})

    assert "created" in cluster.kubectl("apply", "-f", "-", stdin=namespace("1")).stdout
    assert "configured" in cluster.kubectl("apply", "-f", "-", stdin=namespace("2")).stdout
    assert cluster.core.read_namespace("applied").metadata.labels["a"] == "2"
    crd = yaml.safe_load(CRD.read_text())
    crd["metadata"].setdefault("labels", {})["extra"] = "x"
    assert "configured" in cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd)).stdout
    assert "inferenceservices" in {r["name"] for r in cluster.http("GET", "/apis/sloscale.dev/v1alpha1").json()["resources"]}
