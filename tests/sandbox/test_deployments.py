"""The sandbox's Deployment controller logic: scaling, rollouts, victim ranking and status."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from sloscale.sandbox.deployments import (
    DELETION_COST_ANNOTATION,
    TEMPLATE_HASH_LABEL,
    deletion_order,
    deployment_status,
    plan,
    surge_and_unavailable,
    template_hash,
)

JSON = dict[str, Any]
NOW = "2026-01-01T00:10:00Z"
_names = itertools.count()


def deployment(replicas: int, args: list[str], strategy: JSON | None = None, generation: int = 1) -> JSON:
    spec: JSON = {
        "replicas": replicas,
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "vllm", "args": args}]}},
    }
    if strategy is not None:
        spec["strategy"] = strategy
    return {"metadata": {"name": "x", "namespace": "default", "uid": "u", "generation": generation}, "spec": spec}


def pod(
    of: JSON,
    *,
    ready: bool = True,
    created: str = "2026-01-01T00:00:00Z",
    ready_since: str = "2026-01-01T00:01:00Z",
    cost: int | None = None,
    terminating: bool = False,
    phase: str = "Running",
) -> JSON:
    meta: JSON = {
        "name": f"x-{next(_names)}",
        "labels": {TEMPLATE_HASH_LABEL: template_hash(of)},
        "creationTimestamp": created,
        "annotations": {} if cost is None else {DELETION_COST_ANNOTATION: str(cost)},
    }
    if terminating:
        meta["deletionTimestamp"] = NOW
    return {
        "metadata": meta,
        "spec": {"nodeName": "n"},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_since}],
        },
    }


def test_missing_replicas_are_created_and_extra_ones_deleted() -> None:
    d = deployment(3, ["--max-num-seqs=8"])
    assert plan(d, [pod(d)]).create == 2
    pods = [pod(d) for _ in range(5)]
    step = plan(d, pods)
    assert step.create == 0 and len(step.delete) == 2


def test_terminating_pods_are_neither_replicas_nor_capacity() -> None:
    d = deployment(2, ["--max-num-seqs=8"])
    step = plan(d, [pod(d), pod(d, terminating=True)])
    assert step.create == 1 and not step.delete
    status = deployment_status(d, [pod(d), pod(d, terminating=True)], NOW)
    assert status["replicas"] == 1 and status["readyReplicas"] == 1


def test_victims_are_unready_first_then_cheapest_then_most_recently_ready_then_newest() -> None:
    d = deployment(1, [])
    pending = pod(d, ready=False, phase="Pending")
    unready = pod(d, ready=False)
    costly = pod(d, cost=100)
    cheap_old = pod(d, cost=-5, ready_since="2026-01-01T00:01:00Z")
    cheap_recent = pod(d, cost=-5, ready_since="2026-01-01T00:05:00Z")
    plain_old = pod(d, created="2026-01-01T00:00:00Z")
    plain_new = pod(d, created="2026-01-01T00:00:30Z")
    order = deletion_order([costly, plain_old, cheap_old, plain_new, unready, cheap_recent, pending])
    assert order == [pending, unready, cheap_recent, cheap_old, plain_new, plain_old, costly]


def test_an_unparsable_deletion_cost_counts_as_zero() -> None:
    d = deployment(1, [])
    bad, negative = pod(d), pod(d, cost=-1)
    bad["metadata"]["annotations"][DELETION_COST_ANNOTATION] = "lots"
    assert deletion_order([bad, negative]) == [negative, bad]


@pytest.mark.parametrize(
    ("strategy", "replicas", "expected"),
    [
        (None, 4, (1, 1)),  # 25% / 25%
        ({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, 3, (1, 0)),
        ({"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "50%"}}, 3, (2, 1)),  # surge up, unavailable down
        ({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}, 3, (0, 1)),  # both 0: one may go
    ],
)
def test_surge_and_unavailability_resolve_like_upstream(strategy: JSON | None, replicas: int, expected: tuple[int, int]) -> None:
    assert surge_and_unavailable(deployment(replicas, [], strategy)) == expected


def roll(d: JSON, pods: list[JSON]) -> tuple[list[JSON], list[tuple[int, int]]]:
    """Apply plans until the rollout settles; new pods become ready one pass after creation.
    Returns the final pods and (ready, total) after every pass."""
    seen: list[tuple[int, int]] = []
    for _ in range(50):
        for p in pods:  # what was created on the previous pass has loaded by now
            p["status"]["conditions"][0]["status"] = "True"
        step = plan(d, pods)
        if not step.create and not step.delete:
            return pods, seen
        pods = [p for p in pods if p not in step.delete] + [pod(d, ready=False) for _ in range(step.create)]
        ready = sum(p["status"]["conditions"][0]["status"] == "True" for p in pods)
        seen.append((ready, len(pods)))
    raise AssertionError("the rollout did not settle")


def test_a_template_change_rolls_one_pod_at_a_time_without_losing_ready_capacity() -> None:
    old = deployment(4, ["--max-num-seqs=64"], {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    new = deployment(4, ["--max-num-seqs=16"], {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, generation=2)
    final, seen = roll(new, [pod(old) for _ in range(4)])
    assert all(p["metadata"]["labels"][TEMPLATE_HASH_LABEL] == template_hash(new) for p in final)
    assert len(final) == 4
    assert all(ready >= 4 for ready, _ in seen)  # maxUnavailable 0: never below the replicas
    assert max(total for _, total in seen) == 5  # maxSurge 1: one extra pod at most
    assert len(seen) >= 4  # pod by pod


def test_a_rollout_with_unavailability_allowed_goes_faster_but_stays_within_it() -> None:
    strategy = {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 2}}
    old, new = deployment(4, ["a"], strategy), deployment(4, ["b"], strategy)
    final, seen = roll(new, [pod(old) for _ in range(4)])
    assert len(final) == 4 and all(p["metadata"]["labels"][TEMPLATE_HASH_LABEL] == template_hash(new) for p in final)
    assert all(total <= 4 for _, total in seen)
    assert all(ready >= 2 for ready, _ in seen)


def test_recreate_removes_the_old_generation_before_creating_the_new() -> None:
    old = deployment(2, ["a"], {"type": "Recreate"})
    new = deployment(2, ["b"], {"type": "Recreate"})
    olds = [pod(old), pod(old)]
    assert plan(new, olds).delete == tuple(olds) and plan(new, olds).create == 0
    still_going = [pod(old, terminating=True)]
    assert plan(new, still_going).create == 0
    assert plan(new, []).create == 2


def test_status_reports_progress_then_completion_keeping_transition_times() -> None:
    d = deployment(2, ["b"], {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, generation=3)
    old = deployment(2, ["a"])
    rolling = deployment_status(d, [pod(old), pod(old), pod(d, ready=False)], "2026-01-01T00:00:01Z")
    assert rolling["observedGeneration"] == 3
    assert (rolling["replicas"], rolling["updatedReplicas"], rolling["readyReplicas"]) == (3, 1, 2)
    progressing = {c["type"]: c for c in rolling["conditions"]}
    assert progressing["Available"]["status"] == "True"
    assert progressing["Progressing"]["reason"] == "ReplicaSetUpdated"
    d["status"] = rolling
    done = deployment_status(d, [pod(d), pod(d)], "2026-01-01T00:00:09Z")
    conditions = {c["type"]: c for c in done["conditions"]}
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conditions["Available"]["lastTransitionTime"] == "2026-01-01T00:00:01Z"  # unchanged status
    assert done["unavailableReplicas"] == 0


def test_status_says_when_minimum_availability_is_lost() -> None:
    d = deployment(3, ["a"], {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    status = deployment_status(d, [pod(d), pod(d, ready=False)], NOW)
    available = next(c for c in status["conditions"] if c["type"] == "Available")
    assert available["status"] == "False" and available["reason"] == "MinimumReplicasUnavailable"
    assert status["unavailableReplicas"] == 2
