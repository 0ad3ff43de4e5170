"""Pods that will not serve by themselves: which ones `Ready` names, in which words, and the event.

Pure functions over pods shaped as the API (and the trimmed pod cache) returns them: a pod that
is not ready after repeated restarts or waits in `CrashLoopBackOff` is crash-looping; one that has
not become ready within twice the cold start is stuck; ready, starting and terminating pods are
neither. `Ready` then says so with the counts and names, keeps its transition time while it stays
False, and a Warning event is posted once per new reason, not every tick.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_status import enforce

from sloscale.conditions import (
    ConditionType,
    ConditionUpdate,
    PodTrouble,
    Reason,
    set_conditions,
    workload_ready,
)
from sloscale.events import Event, EventReason, EventType, condition_events
from sloscale.informers import trim_pod
from sloscale.status import to_time
from sloscale.workload import cold_start_allowance, pod_trouble

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
NOW = T0.timestamp()


def stamp(seconds_ago: float) -> str:
    return (T0 - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def pod(
    name: str,
    *,
    age_s: float,
    ready: bool = False,
    restarts: int = 0,
    waiting: str | None = None,
    unready_for_s: float | None = None,
    deleting: bool = False,
    last_exit_s: float | None = None,
) -> dict[str, Any]:
    """A pod created `age_s` ago; its Ready condition last changed `unready_for_s` ago (default:
    at creation); its container last ended `last_exit_s` ago (default: not said)."""
    container: dict[str, Any] = {"name": "vllm", "restartCount": restarts, "ready": ready}
    if last_exit_s is not None:
        container["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": stamp(last_exit_s)}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting, "message": "back-off 40s"}}
    since = age_s if unready_for_s is None else unready_for_s
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "creationTimestamp": stamp(age_s)}
    if deleting:
        meta["deletionTimestamp"] = stamp(0)
    return {
        "metadata": meta,
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(age_s)},
                {"type": "Ready", "status": str(ready), "lastTransitionTime": stamp(since)},
            ],
            "containerStatuses": [container],
        },
    }


def test_a_pod_restarted_during_its_unready_spell_or_in_back_off_is_crash_looping() -> None:
    pods = [
        pod("restarted-twice", age_s=5, restarts=2),
        pod("backing-off", age_s=5, restarts=1, waiting="CrashLoopBackOff"),
        pod("restarted-once", age_s=5, restarts=1),  # running again between back-offs
        pod("restarted-before-this-spell", age_s=500, restarts=1, unready_for_s=5, last_exit_s=50),
        pod("ready-after-restarts", age_s=500, ready=True, restarts=7),
    ]
    trouble = pod_trouble(pods, NOW, allowance_s=60)
    assert trouble.crash_looping == (
        ("backing-off", 1),
        ("restarted-once", 1),
        ("restarted-twice", 2),
    )
    assert trouble.not_ready == ()


def test_old_restarts_of_a_pod_that_served_do_not_make_a_readiness_blip_a_crash_loop() -> None:
    pods = [
        pod("week-old", age_s=604_800, restarts=2, unready_for_s=5, last_exit_s=600_000),
        pod("crashed-just-now", age_s=300, restarts=2, last_exit_s=20),
    ]
    trouble = pod_trouble(pods, NOW, allowance_s=60)
    assert trouble.crash_looping == (("crashed-just-now", 2),)
    assert trouble.not_ready == ()  # the week-old pod turned unready 5 s ago: within allowance


def test_a_pod_not_ready_past_the_allowance_is_stuck_and_one_within_it_is_starting() -> None:
    pods = [
        pod("stuck", age_s=61),
        pod("starting", age_s=59),
        pod("turned-unready-long-ago", age_s=900, unready_for_s=120),
        pod("turned-unready-just-now", age_s=900, unready_for_s=3),
        pod("leaving", age_s=900, deleting=True),
        pod("serving", age_s=900, ready=True),
    ]
    trouble = pod_trouble(pods, NOW, allowance_s=60)
    assert trouble.crash_looping == ()
    assert trouble.not_ready == (("stuck", 61.0), ("turned-unready-long-ago", 120.0))
    assert not pod_trouble(pods[1:2] + pods[3:], NOW, allowance_s=60)


@pytest.mark.parametrize(
    ("declared", "measured", "allowance"), [(120, None, 240), (120, 300, 600), (120, 30, 240)]
)
def test_the_allowance_is_twice_the_longer_of_the_declared_and_measured_cold_start(
    declared: float, measured: float | None, allowance: float
) -> None:
    assert cold_start_allowance(declared, measured) == allowance


def test_the_pod_cache_keeps_what_the_trouble_and_the_deletion_cost_read() -> None:
    raw = pod("chat-1", age_s=5, restarts=3, waiting="CrashLoopBackOff", last_exit_s=2)
    raw["metadata"]["annotations"] = {
        "controller.kubernetes.io/pod-deletion-cost": "4",
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
    }
    trimmed = trim_pod(raw)
    assert trimmed["metadata"]["annotations"] == {"controller.kubernetes.io/pod-deletion-cost": "4"}
    assert trimmed["status"]["containerStatuses"] == [
        {
            "name": "vllm",
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"finishedAt": stamp(2)}},
        }
    ]
    assert pod_trouble([trimmed], NOW, 60) == pod_trouble([raw], NOW, 60)


def test_ready_names_crash_looping_pods_before_stuck_ones_with_counts() -> None:
    trouble = PodTrouble(
        crash_looping=(("chat-a", 3),),
        not_ready=(("chat-b", 310.4), ("chat-c", 242.0)),
        allowance_s=240,
    )
    update = workload_ready(ready=1, replicas=4, trouble=trouble)
    assert update == ConditionUpdate(
        ConditionType.READY,
        "False",
        Reason.PODS_CRASH_LOOPING,
        "1/4 replicas ready; 1 pod crash-looping: chat-a (3 restarts); "
        "2 pods not ready after the 4m cold-start allowance: chat-b (5m11s), chat-c (4m2s)",
    )
    stuck = workload_ready(
        ready=0, replicas=1, trouble=PodTrouble(not_ready=(("x", 9),), allowance_s=4)
    )
    assert (stuck.status, stuck.reason) == ("False", Reason.PODS_NOT_READY)
    assert (
        stuck.message
        == "0/1 replicas ready; 1 pod not ready after the 4s cold-start allowance: x (9s)"
    )


def test_many_pods_are_counted_and_only_the_first_named() -> None:
    trouble = PodTrouble(crash_looping=tuple((f"p{i}", 2) for i in range(8)))
    message = workload_ready(ready=0, replicas=8, trouble=trouble).message
    assert message.startswith("0/8 replicas ready; 8 pods crash-looping: p0 (2 restarts), ")
    assert message.endswith("p4 (2 restarts) and 3 more")


def test_without_trouble_ready_counts_replicas_as_before() -> None:
    assert workload_ready(ready=2, replicas=2, trouble=PodTrouble()) == ConditionUpdate(
        ConditionType.READY, "True", Reason.SERVING, "2/2 replicas ready"
    )
    assert (
        workload_ready(ready=0, replicas=1, trouble=PodTrouble()).reason
        == Reason.WORKLOAD_NOT_READY
    )
    assert workload_ready(ready=0, replicas=0, trouble=PodTrouble()).reason == Reason.SCALED_TO_ZERO


def test_ready_keeps_its_transition_time_while_pods_stay_in_trouble() -> None:
    # Ready comes out of the same status build as the other conditions, trouble and all.
    first = enforce(now=NOW, trouble=PodTrouble(not_ready=(("b", 9),), allowance_s=4))
    again = {
        c.type: c
        for c in enforce(
            first,
            now=NOW + 30,
            trouble=PodTrouble(not_ready=(("b", 39),), allowance_s=4),
        ).conditions
    }
    # Still False since the first tick, not flipped back and forth, with this tick's numbers.
    assert again["Ready"].status == "False" and again["Ready"].reason == Reason.PODS_NOT_READY
    assert again["Ready"].last_transition_time == to_time(NOW)
    assert again["Ready"].message.endswith("b (39s)")
    assert list(again)[0] == "Ready"  # first, as every condition list is ordered
    served = {c.type: c for c in enforce(first, now=NOW + 60).conditions}["Ready"]
    assert served.status == "True" and served.last_transition_time == to_time(NOW + 60)


def test_a_warning_names_the_pods_once_per_new_reason() -> None:
    serving = set_conditions([], [workload_ready(ready=1, replicas=1)], T0, 1)
    stuck_update = workload_ready(
        ready=1, replicas=2, trouble=PodTrouble(not_ready=(("b", 9),), allowance_s=4)
    )
    stuck = set_conditions(serving, [stuck_update], T0, 1)
    assert condition_events(serving, stuck) == [
        Event(EventType.WARNING, EventReason.PODS_NOT_READY, stuck_update.message)
    ]
    # The same pods, older: new numbers in the status, no new event.
    older = set_conditions(
        stuck,
        [
            workload_ready(
                ready=1, replicas=2, trouble=PodTrouble(not_ready=(("b", 20),), allowance_s=4)
            )
        ],
        T0,
        1,
    )
    assert condition_events(stuck, older) == []
    # It starts crash-looping: a new reason, a new warning.
    looping_update = workload_ready(
        ready=1, replicas=2, trouble=PodTrouble(crash_looping=(("b", 2),))
    )
    looping = set_conditions(older, [looping_update], T0, 1)
    assert condition_events(older, looping) == [
        Event(EventType.WARNING, EventReason.PODS_CRASH_LOOPING, looping_update.message)
    ]
    # Back to serving: the status says so; no warning.
    assert (
        condition_events(
            looping, set_conditions(looping, [workload_ready(ready=2, replicas=2)], T0, 1)
        )
        == []
    )
