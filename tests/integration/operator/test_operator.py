"""The operator end to end: `sloscale run` against the Kubernetes API and a real Prometheus.

Each scenario applies InferenceServices of its own and watches what an SRE would watch: the
rendered workload, the scale subresource, the pod template, status, conditions and events, and
the operator's own /metrics.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from traffic import FAST, SLOW_FIRST_TOKENS, Load

from conftest import Cluster, Operator, Pods, wait_for

ROOT = Path(__file__).parents[3]
KUBECTL = Path(sys.executable).parent / "kubectl"


def example(name: str, rename: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    doc["metadata"] = {"name": rename}
    return doc


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((body or {}).get("status") or {}).get("conditions", []):
        if c["type"] == kind:
            return dict(c)
    return {}


def reasons(cluster: Cluster, name: str) -> list[str]:
    return [e["reason"] for e in cluster.events(name)]


def test_owned_service_is_rendered_and_scaled_up_on_slow_first_tokens(
    cluster: Cluster, pods: Pods, operator: Operator
) -> None:
    pods.start("chat", SLOW_FIRST_TOKENS)
    created = cluster.apply(example("chat-p99-ttft.yaml", "chat"))
    uid = created["metadata"]["uid"]

    deployment = wait_for(
        lambda: cluster.get(cluster.deployment_path("chat")), 20, "the Deployment", operator
    )
    service = wait_for(
        lambda: cluster.get(f"/api/v1/namespaces/{cluster.namespace}/services/chat"),
        10,
        "the Service",
        operator,
    )
    for owned in (deployment, service):
        (ref,) = owned["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "InferenceService",
            "chat",
            uid,
            True,
        )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--max-num-seqs=64" in container["args"]
    assert "--model=meta-llama/Llama-3.1-8B-Instruct" in container["args"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}

    # The exporter reports p99 TTFT ≈ 1.8 s against 1 s and 37 queued: replicas go up through /scale.
    scaled = wait_for(
        lambda: (
            (d := cluster.get(cluster.deployment_path("chat"))) and d["spec"]["replicas"] > 1 and d
        ),
        40,
        "a scale-up",
        operator,
    )
    body = wait_for(
        lambda: (
            (b := cluster.get(cluster.isvc_path("chat")))
            and (b.get("status") or {}).get("lastDecision")
            and b
        ),
        10,
        "the decision in status",
        operator,
    )
    status = body["status"]
    assert status["observedGeneration"] == 1
    assert status["replicas"]["desired"] >= scaled["spec"]["replicas"] > 1
    assert status["objective"]["name"] == "p99 TTFT" and status["objective"]["target"] == "1s"
    assert status["observed"]["queue"] == 37
    assert status["observed"]["value"].endswith("s")
    assert status["lastDecision"]["action"] == "ScaleUp"
    assert re.search(r"p99 TTFT [\d.]+s > 1s", status["lastDecision"]["reason"])
    assert status["lastScaleTime"]
    assert condition(body, "MetricsAvailable")["status"] == "True"
    assert condition(body, "AbleToScale")["reason"] == "Enforcing"
    assert condition(body, "Ready")["status"] == "True"
    assert condition(body, "ObjectiveMet")["status"] in ("False", "Unknown")

    scaled_up = wait_for(
        lambda: [e for e in cluster.events("chat") if e["reason"] == "ScaledUp"],
        10,
        "a ScaledUp event",
        operator,
    )
    assert re.match(r"replicas 1→\d+: p99 TTFT [\d.]+s > 1s; queue 37", scaled_up[0]["message"])
    assert "WorkloadCreated" in reasons(cluster, "chat")

    # Events on transitions only: more ticks of the same situation repeat none of them.
    decided = _decisions(operator, cluster, "chat")
    wait_for(
        lambda: _decisions(operator, cluster, "chat") >= decided + 3,
        15,
        "three more ticks",
        operator,
    )
    seen = reasons(cluster, "chat")
    for once in ("WorkloadCreated", "MetricsUnavailable", "MetricsRestored", "ObjectiveMissed"):
        assert seen.count(once) <= 1, seen

    # `kubectl get infsvc` answers an SRE's first questions from the printer columns.
    table = subprocess.run(
        [
            str(KUBECTL),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            cluster.namespace,
            "get",
            "infsvc",
            "chat",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    header, row = table.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "OBJECTIVE",
        "TARGET",
        "OBSERVED",
        "REPLICAS",
        "DESIRED",
        "BATCH",
        "MET",
        "AGE",
    ]
    assert re.match(
        r"chat\s+p99 TTFT\s+1s\s+[\d.]+s\s+\d+\s+\d+\s+64\s+(False|Unknown)\s+\d+s", row
    ), row

    text = operator.scrape()
    labels = f'namespace="{cluster.namespace}",service="chat"'
    assert re.search(rf"sloscale_replicas_desired\{{{labels}\}} [2-9]", text)
    assert re.search(rf'sloscale_decisions_total\{{action="ScaleUp",{labels}\}} [1-9]', text)
    assert f"sloscale_metrics_available{{{labels}}} 1.0" in text
    assert "sloscale_tick_duration_seconds_count" in text


def _decisions(operator: Operator, cluster: Cluster, name: str) -> int:
    """Ticks that decided for the service so far: its `sloscale_decisions_total`, every action.
    (Its status is rewritten on every change but not on every tick.)"""
    labels = f'namespace="{cluster.namespace}",service="{name}"'
    pattern = rf"^sloscale_decisions_total\{{action=\"\w+\",{re.escape(labels)}\}} (\S+)$"
    return int(sum(float(v) for v in re.findall(pattern, operator.scrape(), re.M)))


def test_throughput_objective_grows_the_batch_in_the_pod_template(
    cluster: Cluster, pods: Pods, operator: Operator
) -> None:
    pods.start(
        "summarise",
        Load(requests_per_s=10, ttft_s=0.3, itl_s=0.03, generation_tokens=200, running=16),
    )
    cluster.apply(example("batch-throughput.yaml", "summarise"))

    def batch() -> int | None:
        d = cluster.get(cluster.deployment_path("summarise"))
        if d is None:
            return None
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        (flag,) = [a for a in args if a.startswith("--max-num-seqs=")]
        return int(flag.split("=")[1])

    wait_for(lambda: batch() == 128, 20, "the Deployment at the initial batch", operator)
    grown = wait_for(lambda: (b := batch()) and b > 128 and b, 40, "a larger batch", operator)
    assert grown <= 512  # batching.maxMaxNumSeqs
    body = wait_for(
        lambda: (
            (b := cluster.get(cluster.isvc_path("summarise")))
            and b["status"].get("lastBatchChangeTime")
            and b
        ),
        10,
        "lastBatchChangeTime",
        operator,
    )
    assert body["status"]["batch"]["current"] == grown
    assert body["status"]["objective"]["name"] == "tokens/s"
    assert body["status"]["observed"]["value"].endswith("tok/s")
    event = wait_for(
        lambda: [e for e in cluster.events("summarise") if e["reason"] == "BatchIncreased"],
        10,
        "BatchIncreased",
    )
    assert f"→{grown}" in event[0]["message"]
    assert "rolling update" in event[0]["message"] or "batch 128→" in event[0]["message"]


def _attach_target(cluster: Cluster, name: str, replicas: int) -> dict[str, Any]:
    """A vLLM Deployment its owners run themselves, for the operator to attach to."""
    return cluster.api.request(
        "POST",
        cluster.deployment_path(),
        body={
            "metadata": {"name": name, "namespace": cluster.namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "vllm",
                                "image": "vllm/vllm-openai:v0.11.0",
                                "args": ["--max-num-seqs", "64"],
                            }
                        ]
                    },
                },
            },
        },
    )


def test_advisory_mode_reports_and_changes_nothing(
    cluster: Cluster, pods: Pods, operator: Operator
) -> None:
    target = _attach_target(cluster, "chat-prod", replicas=2)
    pods.start(
        "chat-shadow", Load(ttft_s=40.0, queue_s=38.0, requests_per_s=5, running=40, waiting=50)
    )
    shadow = example("advisory.yaml", "chat-shadow")
    shadow["spec"]["scaleTargetRef"]["name"] = "chat-prod"
    cluster.apply(shadow)

    body = wait_for(
        lambda: (
            (b := cluster.get(cluster.isvc_path("chat-shadow")))
            and (b.get("status") or {}).get("replicas", {}).get("desired", 0) > 2
            and b
        ),
        40,
        "a recommendation to scale up",
        operator,
    )
    assert body["status"]["replicas"]["current"] == 2
    assert body["status"]["lastDecision"]["action"] == "ScaleUp"
    able = condition(body, "AbleToScale")
    assert (able["status"], able["reason"]) == ("False", "Advisory")
    recommendation = wait_for(
        lambda: [e for e in cluster.events("chat-shadow") if e["reason"] == "Recommendation"],
        10,
        "a Recommendation",
    )
    assert recommendation[0]["message"].startswith("Advisory, not applied: replicas 2→")
    after = cluster.get(cluster.deployment_path("chat-prod"))
    assert after is not None
    assert after["spec"] == target["spec"]
    assert after["metadata"]["generation"] == target["metadata"]["generation"]
    assert not [
        e for e in cluster.events("chat-shadow") if e["reason"] in ("ScaledUp", "ScaledDown")
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["replicas"].update(min=5, max=2), "replicas.min must be less than or equal to replicas.max"),
        (lambda s: s.update(scaleTargetRef={"name": "x"}), "set exactly one of spec.model"),
        (lambda s: s["engine"].update(args=["--max-num-seqs=8"]), "--max-num-seqs is set by the operator"),
        (lambda s: s["objective"].update(throughput={"latencyBound": {"metric": "EndToEndLatency", "target": "9s"}}),
         "objective must set exactly the member named by objective.type"),
        (lambda s: s["objective"]["latency"].update(target="1.5s"), "spec.objective.latency.target"),
        (lambda s: s["batching"].update(minMaxNumSeqs=300), "batching bounds must be ordered"),
    ],
)  # fmt: skip
def test_invalid_resources_are_rejected_by_the_api_with_their_message(
    cluster: Cluster, mutate: Any, message: str
) -> None:
    doc = example("chat-p99-ttft.yaml", "rejected")
    mutate(doc["spec"])
    with pytest.raises(ApiException) as err:
        cluster.apply(doc)
    assert err.value.status == 422
    assert message in (err.value.body or "")


def test_kubectl_shows_the_rejection(cluster: Cluster, tmp_path: Path) -> None:
    doc = example("chat-p99-ttft.yaml", "rejected-by-kubectl")
    doc["metadata"]["namespace"] = cluster.namespace
    doc["spec"]["replicas"] = {"min": 3, "max": 1}
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "replicas.min must be less than or equal to replicas.max" in done.stderr


def test_a_semantically_invalid_service_gets_a_condition_while_others_keep_going(
    cluster: Cluster, pods: Pods, operator: Operator
) -> None:
    pods.start("steady", FAST)
    cluster.apply(example("chat-p99-ttft.yaml", "steady"))
    broken = example("chat-p99-ttft.yaml", "broken")
    broken["spec"]["engine"]["args"] = [
        "--port",
        "9000",
    ]  # the schema allows it; the operator cannot
    cluster.apply(broken)
    orphan = example("attach-existing.yaml", "orphan")
    orphan["spec"]["scaleTargetRef"]["name"] = "no-such-deployment"
    cluster.apply(orphan)

    body = wait_for(
        lambda: (
            (b := cluster.get(cluster.isvc_path("broken")))
            and condition(b, "Ready").get("reason") == "InvalidSpec"
            and b
        ),
        20,
        "InvalidSpec on the broken service",
        operator,
    )
    ready = condition(body, "Ready")
    assert ready["status"] == "False"
    assert (
        "engine.args sets --port, which the operator derives from spec.engine.port"
        in ready["message"]
    )
    assert condition(body, "AbleToScale")["status"] == "False"
    invalid = wait_for(
        lambda: [e for e in cluster.events("broken") if e["reason"] == "InvalidSpec"],
        10,
        "the event",
    )
    assert invalid[0]["type"] == "Warning" and "--port" in invalid[0]["message"]
    assert cluster.get(cluster.deployment_path("broken")) is None

    missing = wait_for(
        lambda: (
            (b := cluster.get(cluster.isvc_path("orphan")))
            and condition(b, "Ready").get("reason") == "TargetNotFound"
            and b
        ),
        20,
        "TargetNotFound on the orphan",
        operator,
    )
    assert "Deployment no-such-deployment" in condition(missing, "Ready")["message"]
    assert "TargetNotFound" in reasons(cluster, "orphan")

    # The healthy service beside them is reconciled tick after tick.
    wait_for(
        lambda: (
            (b := cluster.get(cluster.isvc_path("steady")))
            and (b.get("status") or {}).get("observed")
            and b
        ),
        20,
        "a snapshot of the steady service",
        operator,
    )
    decided = _decisions(operator, cluster, "steady")
    wait_for(
        lambda: _decisions(operator, cluster, "steady") >= decided + 2,
        15,
        "the steady service to keep ticking",
        operator,
    )
    steady = cluster.get(cluster.isvc_path("steady"))
    assert condition(steady, "Ready")["status"] == "True"
    assert condition(steady, "MetricsAvailable")["status"] == "True"

    # Fixing the spec clears the condition on the next ticks.
    cluster.api.request(
        "PATCH",
        cluster.isvc_path("broken"),
        body={"spec": {"engine": {"args": []}}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        lambda: cluster.get(cluster.deployment_path("broken")),
        20,
        "the fixed service's Deployment",
        operator,
    )
    healed = wait_for(
        lambda: (
            (b := cluster.get(cluster.isvc_path("broken")))
            and condition(b, "Ready").get("reason") != "InvalidSpec"
            and b
        ),
        20,
        "the InvalidSpec condition to clear",
        operator,
    )
    assert healed["status"]["observedGeneration"] == body["metadata"]["generation"] + 1


def test_deleting_a_service_releases_it_and_its_workload(
    cluster: Cluster, pods: Pods, operator: Operator
) -> None:
    pods.start("short-lived", FAST)
    cluster.apply(example("chat-p99-ttft.yaml", "short-lived"))
    wait_for(
        lambda: cluster.get(cluster.deployment_path("short-lived")), 20, "the Deployment", operator
    )
    labels = f'namespace="{cluster.namespace}",service="short-lived"'
    wait_for(
        lambda: f"sloscale_replicas_current{{{labels}}}" in operator.scrape(),
        20,
        "its metrics",
        operator,
    )

    cluster.api.request("DELETE", cluster.isvc_path("short-lived"))
    wait_for(
        lambda: cluster.get(cluster.isvc_path("short-lived")) is None,
        20,
        "the finalizer to be released",
        operator,
    )
    if cluster.emulated:  # a real cluster's garbage collector takes its own time
        wait_for(
            lambda: cluster.get(cluster.deployment_path("short-lived")) is None,
            10,
            "the Deployment to go",
        )
    wait_for(
        lambda: f"sloscale_replicas_current{{{labels}}}" not in operator.scrape(),
        10,
        "its series to go",
        operator,
    )
