"""A throughput objective on one replica grows the batch: the pod template changes and pods roll.

An offline summarisation service may use one replica and must sustain 1000 output tokens/s with
its p99 end-to-end latency under 40 s. At `--max-num-seqs` 8 one (emulated) A100 delivers at most
about 700 tokens/s on the conversation trace's mix, so the only way to the target is a larger
batch: the operator rewrites `--max-num-seqs` in the pod template, the Deployment rolls its pod,
and the load — about 1500 tokens/s offered — keeps flowing through the drain of the old pod.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from e2e_support import (
    Cluster,
    batch_arg,
    burst_load,
    container_args,
    fresh_namespace,
    ready,
    replay_load,
    time_limit,
)

from sloscale.engine.steady import steady_state
from sloscale.sandbox.loadgen import RequestRecord
from sloscale.scaling.policy import A100

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

NAME = "summarise"
TOKENS_PER_S = 1000
INITIAL_BATCH = 8
RATES = [6.0] * 4  # requests/s for 40 s
LATE_S = 20.0  # by then the batch has grown


def summarise(cold_start: str) -> dict[str, Any]:
    return {
        "apiVersion": "sloscale.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "engine": {"gpus": 1, "gpuProfile": "A100"},
            "objective": {
                "type": "Throughput",
                "throughput": {
                    "tokensPerSecond": TOKENS_PER_S,
                    "latencyBound": {
                        "metric": "EndToEndLatency",
                        "percentile": "p99",
                        "target": "40s",
                        "window": "30s",
                    },
                },
            },
            "replicas": {"min": 1, "max": 1},
            "batching": {
                "minMaxNumSeqs": 4,
                "initialMaxNumSeqs": INITIAL_BATCH,
                "maxMaxNumSeqs": 64,
                "cooldown": "10s",
            },
            "coldStart": cold_start,
        },
    }


def tokens_streamed(records: list[RequestRecord], lo: float, hi: float) -> float:
    """Output tokens the clients received between `lo` and `hi` (seconds into the replay), each
    request's tokens spread evenly from its first token to its last."""
    total = 0.0
    for r in records:
        if not r.ok or r.sent_s is None or r.ttft_s is None or r.e2e_s is None:
            continue
        first, last = r.sent_s + r.ttft_s, r.sent_s + r.e2e_s
        if last <= first:
            total += r.output_tokens if lo <= first < hi else 0
            continue
        overlap = max(0.0, min(hi, last) - max(lo, first))
        total += r.output_tokens * overlap / (last - first)
    return total


@pytest.mark.timeout(time_limit(300))
def test_a_throughput_objective_grows_the_batch_and_the_pods_roll(cluster: Cluster) -> None:
    with fresh_namespace(cluster, "e2e-throughput") as ns:
        cluster.apply(ns, summarise(cluster.cold_start))
        cluster.wait_for(lambda: cluster.deployment(ns, NAME), 30, "the Deployment")
        cluster.rollout(ns, NAME)
        (first,) = [p for p in cluster.pods(ns, NAME) if ready(p)]
        assert batch_arg(first["spec"]["containers"][0]["args"]) == INITIAL_BATCH

        window = cluster.seconds(10.0)
        trace = burst_load(RATES, window)
        if cluster.emulated:  # the premise, from the engine model the emulated pods run
            mix = float(np.mean(trace.input_tokens)), float(np.mean(trace.output_tokens))
            offered = float(np.sum(trace.output_tokens)) / (len(RATES) * window)
            assert steady_state(A100, INITIAL_BATCH, *mix).tokens_per_s < TOKENS_PER_S < offered

        with cluster.endpoint(ns, NAME) as url, cluster.sampler(ns, NAME) as sampler:
            report = replay_load(url, trace, timeout_s=cluster.seconds(240))
            # The last batch change rolls out: one pod, ready, from the current template.
            cluster.rollout(ns, NAME)
            samples = list(sampler.samples)

        summary = report.summary()
        assert summary["failed"] == 0, summary["failures"]  # the rolls drained, nothing was cut

        deployment = cluster.deployment(ns, NAME)
        assert deployment is not None
        batch = batch_arg(container_args(deployment))
        assert batch is not None and batch > INITIAL_BATCH
        assert all(s.deployment_replicas == 1 for s in samples if s.deployment_replicas is not None)
        pods = [p for p in cluster.pods(ns, NAME) if not p["metadata"].get("deletionTimestamp")]
        assert len(pods) == 1 and ready(pods[0])
        assert (
            pods[0]["metadata"]["name"] != first["metadata"]["name"]
        )  # rolled, not restarted in place
        assert batch_arg(pods[0]["spec"]["containers"][0]["args"]) == batch

        isvc = cluster.isvc(ns, NAME)
        status = isvc["status"]
        assert status["batch"]["current"] == status["batch"]["desired"] == batch
        assert status["lastBatchChangeTime"]
        assert status["replicas"]["current"] == 1
        grown = [e for e in cluster.events(ns, NAME) if e["reason"] == "BatchIncreased"]
        assert grown and all(
            "max-num-seqs" in e["message"] or "batch" in e["message"] for e in grown
        )
        assert any(f"→{batch}" in e["message"] for e in grown), [e["message"] for e in grown]

        # What the users got once the batch had grown: the tokens/s asked for, within the bound.
        late = [r for r in report.records if r.ok and r.scheduled_s >= LATE_S]
        assert late and max(r.e2e_s or 0.0 for r in late) <= 40.0
        served = tokens_streamed(report.records, LATE_S, len(RATES) * 10.0) / (
            len(RATES) * 10.0 - LATE_S
        )
        assert served >= TOKENS_PER_S, f"{served:.0f} tokens/s"
        print(
            f"\nbatch {INITIAL_BATCH}→{batch}; served {served:.0f} tokens/s after {LATE_S:g}s; {summary['client']}"
        )
