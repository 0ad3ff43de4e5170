"""Every example in examples/ is accepted by the API (schema and CEL rules) and usable by the operator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from sloscale.apiserver import ApiServer
from sloscale.kube import KubeApi
from sloscale.resource import parse_spec, resolve_policy
from sloscale.scaling.policy import ObjectiveKind
from sloscale.workload import render_deployment

ROOT = Path(__file__).parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
COLLECTION = "/apis/sloscale.dev/v1alpha1/namespaces/default/inferenceservices"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApi]:
    with ApiServer.in_thread(crds=[ROOT / "crds" / "inferenceservice.yaml"]) as server:
        client = KubeApi.connect(
            str(server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig"))
        )
        try:
            yield client
        finally:
            client.close()


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def test_the_required_kinds_of_example_exist() -> None:
    specs = [parse_spec(load(p)["spec"]) for p in EXAMPLES]
    metrics = {s.objective.latency.metric for s in specs if s.objective.latency}
    assert {"TimeToFirstToken", "InterTokenLatency"} <= metrics
    assert any(s.objective.latency and s.objective.latency.percentile == "p99" for s in specs)
    assert any(s.objective.type is ObjectiveKind.THROUGHPUT for s in specs)
    assert any(not s.owned for s in specs)
    assert any(s.advisory for s in specs)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_accepted_by_the_api(api: KubeApi, path: Path) -> None:
    created = api.request("POST", COLLECTION, body=load(path))
    assert created["metadata"]["generation"] == 1
    # What the API stored (defaults applied) is what the operator reads.
    spec = parse_spec(created["spec"])
    policy = resolve_policy(spec)
    assert policy.min_replicas <= policy.max_replicas
    if spec.owned:
        meta = {**created["metadata"], "namespace": "default"}
        deployment = render_deployment(
            meta, spec, replicas=1, max_num_seqs=spec.batching.initial_max_num_seqs
        )
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]


def test_unquoted_off_is_rejected_not_misread(api: KubeApi) -> None:
    """YAML 1.1 reads `mode: Off` as false; the API must refuse it rather than store a boolean."""
    doc = load(ROOT / "examples" / "advisory.yaml")
    doc["metadata"]["name"] = "unquoted-off"
    doc["spec"]["batching"] = yaml.safe_load("mode: Off")
    assert doc["spec"]["batching"] == {"mode": False}
    with pytest.raises(ApiException) as err:
        api.request("POST", COLLECTION, body=doc)
    assert err.value.status == 422
    assert "spec.batching.mode" in (err.value.body or "")
