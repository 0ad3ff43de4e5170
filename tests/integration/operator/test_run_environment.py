"""`sloscale run` configured through its environment variables alone, as the Helm chart runs it:
namespace scope, and a Prometheus that cannot be reached (an outage is never read as zero load)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Cluster, Operator, wait_for
from sloscale.sandbox.processes import free_port, stop_process

ROOT = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def scoped(cluster: Cluster) -> Iterator[tuple[str, str]]:
    watched, ignored = f"{cluster.namespace}-a", f"{cluster.namespace}-b"
    for namespace in (watched, ignored):
        cluster.api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    try:
        yield watched, ignored
    finally:
        for namespace in (watched, ignored):
            cluster.api.request("DELETE", f"/api/v1/namespaces/{namespace}")


@pytest.fixture(scope="module")
def env_operator(
    cluster: Cluster, scoped: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    watched, _ = scoped
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCALE_")}
    env.update(
        KUBECONFIG=str(cluster.kubeconfig),
        SLOSCALE_NAMESPACES=f"{watched},{cluster.namespace}-unused",
        SLOSCALE_PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        SLOSCALE_TICK_INTERVAL="1s",
        SLOSCALE_METRICS_PORT=str(port),
        SLOSCALE_LOG_LEVEL="info",
    )
    log = tmp_path_factory.mktemp("env-operator") / "operator.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "sloscale", "run"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    running = Operator(process, log, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        stop_process(process, grace_s=20)


def apply(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "chat-p99-ttft.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace}
    path = f"/apis/sloscale.dev/v1alpha1/namespaces/{namespace}/inferenceservices"
    return cluster.api.request("POST", path, body=doc)


def test_only_the_watched_namespaces_are_controlled_and_an_outage_holds(
    cluster: Cluster, scoped: tuple[str, str], env_operator: Operator
) -> None:
    watched, ignored = scoped
    apply(cluster, watched, "held")
    apply(cluster, ignored, "elsewhere")

    def held_status() -> dict[str, Any] | None:
        body = cluster.get(
            f"/apis/sloscale.dev/v1alpha1/namespaces/{watched}/inferenceservices/held"
        )
        conditions = {
            c["type"]: c for c in ((body or {}).get("status") or {}).get("conditions", [])
        }
        available = conditions.get("MetricsAvailable", {})
        return conditions if available.get("reason") == "QueryFailed" else None

    conditions = wait_for(held_status, 30, "MetricsAvailable=False (QueryFailed)", env_operator)
    assert conditions["MetricsAvailable"]["status"] == "False"
    assert "cannot connect" in conditions["MetricsAvailable"]["message"]
    assert conditions["ObjectiveMet"]["status"] == "Unknown"
    deployment = cluster.get(f"/apis/apps/v1/namespaces/{watched}/deployments/held")
    assert (
        deployment is not None and deployment["spec"]["replicas"] == 1
    )  # held, never scaled to zero

    with urllib.request.urlopen(f"{env_operator.metrics_url}/healthz", timeout=5) as response:
        assert response.status == 200
    assert (
        'sloscale_metrics_available{namespace="' + watched + '",service="held"} 0.0'
        in env_operator.scrape()
    )

    elsewhere = cluster.get(
        f"/apis/sloscale.dev/v1alpha1/namespaces/{ignored}/inferenceservices/elsewhere"
    )
    assert elsewhere is not None and not elsewhere.get("status")
    assert not (elsewhere["metadata"].get("finalizers") or [])
    assert cluster.get(f"/apis/apps/v1/namespaces/{ignored}/deployments/elsewhere") is None
