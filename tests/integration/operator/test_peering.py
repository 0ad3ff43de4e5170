"""Two operator replicas with `--peering`: one acts, the other waits, and takes over when the
first stops."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from traffic import FAST

from conftest import Cluster, Operator, Pods, _healthy, wait_for
from sloscale.sandbox.processes import free_port
from sloscale.sandbox.prometheus import PrometheusServer

ROOT = Path(__file__).parents[3]
PEERING = "sloscale"


@pytest.fixture(scope="module")
def peering(cluster: Cluster) -> str:
    for crd in yaml.safe_load_all(
        (ROOT / "charts" / "sloscale" / "crds" / "kopf-peering.yaml").read_text()
    ):
        if crd:
            with contextlib.suppress(ApiException):  # a real cluster may have them already
                cluster.api.request(
                    "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd
                )
    wait_for(
        lambda: (
            cluster.api.get(f"/apis/kopf.dev/v1/namespaces/{cluster.namespace}/kopfpeerings")
            is not None
        ),
        10,
        "the peering CRD",
    )
    cluster.api.request(
        "POST",
        f"/apis/kopf.dev/v1/namespaces/{cluster.namespace}/kopfpeerings",
        body={"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}},
    )
    return PEERING


@pytest.fixture(scope="module")
def replicas(
    cluster: Cluster,
    prometheus: PrometheusServer,
    peering: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Operator]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCALE_")}
    started: list[Operator] = []
    try:
        for i in range(2):
            port = free_port()
            log = tmp_path_factory.mktemp(f"replica{i}") / "operator.log"
            command = [
                sys.executable, "-m", "sloscale", "run",
                "--kubeconfig", str(cluster.kubeconfig),
                "--prometheus-url", prometheus.url,
                "--namespace", cluster.namespace,
                "--tick-interval", "1s",
                "--metrics-port", str(port),
                "--peering", peering,
            ]  # fmt: skip
            with log.open("wb") as sink:
                process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
            started.append(Operator(process, log, f"http://127.0.0.1:{port}"))
        for replica in started:
            wait_for(lambda r=replica: _healthy(r), 30, "a replica's /healthz", replica)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in started:
            try:
                replica.process.wait(20)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(5)


def controls(replica: Operator, namespace: str, service: str) -> bool:
    if replica.process.poll() is not None:
        return False
    pattern = (
        rf'sloscale_replicas_current\{{namespace="{re.escape(namespace)}",service="{service}"\}}'
    )
    return re.search(pattern, replica.scrape()) is not None


def test_one_replica_acts_and_the_other_takes_over(
    cluster: Cluster, pods: Pods, replicas: list[Operator]
) -> None:
    pods.start("shared", FAST)
    doc = yaml.safe_load((ROOT / "examples" / "chat-p99-ttft.yaml").read_text())
    doc["metadata"] = {"name": "shared"}
    cluster.apply(doc)

    active = wait_for(
        lambda: [r for r in replicas if controls(r, cluster.namespace, "shared")],
        30,
        "a replica to act",
        replicas[0],
    )
    assert len(active) == 1, "exactly one replica controls the service"
    (leader,) = active
    (standby,) = [r for r in replicas if r is not leader]
    assert cluster.get(cluster.deployment_path("shared")) is not None
    time.sleep(3)  # a few ticks later the standby still keeps its hands off
    assert not controls(standby, cluster.namespace, "shared")
    assert controls(leader, cluster.namespace, "shared")

    leader.process.send_signal(signal.SIGTERM)
    leader.process.wait(20)
    wait_for(
        lambda: controls(standby, cluster.namespace, "shared"),
        30,
        "the standby to take over",
        standby,
    )
