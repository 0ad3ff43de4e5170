"""Advisory mode: the operator decides and reports, and touches nothing.

A team runs its own vLLM Deployment (`chat-prod`, one replica) and attaches an InferenceService
to it in Advisory mode, as `examples/advisory.yaml` does. Load beyond one replica arrives. The
operator must say what it would do — status.replicas.desired above current, a Recommendation
event, AbleToScale False for Advisory — while the Deployment keeps its spec (replicas, template,
generation) and its pod, and the users, whom nobody helps, see the objective missed.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import Cluster, burst_load, fresh_namespace, ready, replay_load, time_limit

from sloscale.resource import parse_spec
from sloscale.sandbox.scenario import quantile
from sloscale.workload import render_deployment, render_service

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

NAME, TARGET = "chat-shadow", "chat-prod"
TARGET_S = 2.5
RATES = [4.0] * 2  # requests/s for 20 s; one emulated A100 at batch 8 serves about 2.7


def shadow(cold_start: str) -> dict[str, Any]:
    return {
        "apiVersion": "sloscale.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {
            "mode": "Advisory",
            "scaleTargetRef": {"name": TARGET},
            "objective": {
                "type": "Latency",
                "latency": {
                    "metric": "TimeToFirstToken",
                    "percentile": "p99",
                    "target": "2500ms",
                    "window": "30s",
                },
            },
            "replicas": {"min": 1, "max": 4},
            "batching": {"mode": "Off"},
            "coldStart": cold_start,
        },
    }


def their_workload(namespace: str) -> list[dict[str, Any]]:
    """A vLLM Deployment and Service of the team's own (no owner), its pods labelled for the
    InferenceService so that Prometheus attributes their metrics to it."""
    spec = parse_spec(
        {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "engine": {"gpus": 1, "gpuProfile": "A100"},
            "objective": {
                "type": "Latency",
                "latency": {"metric": "TimeToFirstToken", "target": "1s"},
            },
            "replicas": {"min": 1, "max": 1},
        }
    )
    meta = {"name": NAME, "namespace": namespace, "uid": "none"}
    deployment = render_deployment(meta, spec, replicas=1, max_num_seqs=8)
    service = render_service(meta, spec)
    for doc in (deployment, service):
        del doc["metadata"]["ownerReferences"]
        doc["metadata"]["name"] = TARGET
    return [deployment, service]


@pytest.mark.timeout(time_limit(300))
def test_advisory_mode_recommends_and_changes_nothing(cluster: Cluster) -> None:
    with fresh_namespace(cluster, "e2e-advisory") as ns:
        cluster.apply(ns, *their_workload(ns))
        cluster.rollout(ns, TARGET)
        before = cluster.deployment(ns, TARGET)
        assert before is not None
        (pod,) = [p for p in cluster.pods(ns, NAME) if ready(p)]

        cluster.apply(ns, shadow(cluster.cold_start))
        cluster.wait_for(
            lambda: cluster.isvc(ns, NAME).get("status", {}).get("replicas"), 30, "a first status"
        )

        with (
            cluster.endpoint(ns, TARGET) as url,
            cluster.sampler(ns, NAME, deployment=TARGET) as sampler,
        ):
            trace = burst_load(RATES, cluster.seconds(10.0), start_s=2400.0)
            report = replay_load(url, trace, timeout_s=cluster.seconds(240))
            recommended = cluster.wait_for(
                lambda: (
                    (s := cluster.isvc(ns, NAME)["status"])["replicas"].get("desired", 1) > 1 and s
                ),
                30,
                "a recommendation above one replica",
            )
            samples = list(sampler.samples)

        # It recommends more replicas than run, says so in an event, and says it may not act.
        assert recommended["replicas"]["current"] == 1 < recommended["replicas"]["desired"] <= 4
        conditions = {c["type"]: c for c in recommended["conditions"]}
        assert (conditions["AbleToScale"]["status"], conditions["AbleToScale"]["reason"]) == (
            "False",
            "Advisory",
        )
        events = cluster.events(ns, NAME)
        advice = [e for e in events if e["reason"] == "Recommendation"]
        assert advice and any("replicas 1→" in e["message"] for e in advice), [
            e["message"] for e in events
        ]
        assert not {"ScaledUp", "ScaledDown", "BatchIncreased", "BatchDecreased"} & {
            e["reason"] for e in events
        }

        # Nothing moved: the Deployment's spec and generation, its one pod, the batch.
        after = cluster.deployment(ns, TARGET)
        assert after is not None
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"] == before["spec"]
        assert "ownerReferences" not in after["metadata"]
        assert [p["metadata"]["name"] for p in cluster.pods(ns, NAME)] == [pod["metadata"]["name"]]
        assert {s.deployment_replicas for s in samples if s.deployment_replicas is not None} == {1}
        assert {s.pods for s in samples if s.pods is not None} == {1}

        # Nobody acted, so the users paid: the client-side p99 TTFT is over target, and the
        # operator saw it too.
        summary = report.summary()
        assert summary["failed"] == 0, summary["failures"]
        p99 = quantile([r.ttft_s for r in report.records if r.ok and r.ttft_s is not None], 0.99)
        assert p99 is not None and p99 > TARGET_S
        assert any(s.met is False for s in samples), [s.observed for s in samples]
        assert "ObjectiveMissed" in {e["reason"] for e in events}
