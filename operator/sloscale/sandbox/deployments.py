"""What the Deployment and ReplicaSet controllers would do, as pure functions over API objects.

The sandbox has no kube-controller-manager, so the kubelet stand-in carries its Deployment logic:
given a Deployment and the pods it owns, `plan` says which pods to create and which to delete, and
`deployment_status` what the Deployment's status should read. Both follow the upstream
controllers' rules, simplified where the sandbox cannot tell the difference:

- pods are owned by the Deployment directly (no ReplicaSet objects); each carries the
  `pod-template-hash` of the template it was made from, so old and new pods are told apart;
- RollingUpdate honours `maxSurge` and `maxUnavailable` (integers or percentages, surge rounded
  up and unavailability down, as upstream): new pods are added while the total stays within
  replicas + surge, old pods removed only while the ready pods stay at or above replicas -
  maxUnavailable — with the operator's (surge 1, unavailable 0) capacity never drops during a
  batch change. Recreate removes every old pod first;
- victims of a scale-down are ranked like the ReplicaSet controller's `ActivePodsWithRanks`:
  unscheduled, then pending, then not ready, then lower `controller.kubernetes.io/pod-deletion-cost`,
  then more recently ready, then more restarts, then newer.

Terminating pods (with a deletionTimestamp) count neither as replicas nor as capacity, as
upstream: they are leaving.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

JSON = dict[str, Any]
TEMPLATE_HASH_LABEL = "pod-template-hash"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


def template_hash(deployment: JSON) -> str:
    """A short, stable hash of the pod template (the label that tells pod generations apart)."""
    template = deployment["spec"]["template"]
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def deleting(obj: JSON) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def condition(obj: JSON, kind: str) -> JSON | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def is_ready(pod: JSON) -> bool:
    ready = condition(pod, "Ready")
    return ready is not None and ready.get("status") == "True" and not deleting(pod)


def _timestamp(text: str | None) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0


def _deletion_cost(pod: JSON) -> int:
    raw = (pod["metadata"].get("annotations") or {}).get(DELETION_COST_ANNOTATION, "0")
    try:
        return int(raw)
    except ValueError:
        return 0  # upstream ignores an unparsable cost


def deletion_order(pods: list[JSON]) -> list[JSON]:
    """`pods` ordered by who goes first on a scale-down (see the module docstring)."""

    def rank(pod: JSON) -> tuple[Any, ...]:
        status = pod.get("status") or {}
        ready = is_ready(pod)
        ready_since = _timestamp((condition(pod, "Ready") or {}).get("lastTransitionTime")) if ready else 0.0
        restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
        phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", "Pending"), 0)
        return (
            bool(pod["spec"].get("nodeName")),
            phase,
            ready,
            _deletion_cost(pod),
            -ready_since,
            -restarts,
            -_timestamp(pod["metadata"].get("creationTimestamp")),
        )

    return sorted(pods, key=rank)


def _resolve(value: Any, replicas: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        share = replicas * float(value[:-1]) / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)


def surge_and_unavailable(deployment: JSON) -> tuple[int, int]:
    """maxSurge and maxUnavailable as pod counts (defaults 25% each, as upstream)."""
    spec = deployment["spec"]
    replicas = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = _resolve(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # upstream's rule, so that a rollout can always progress
    return surge, unavailable


@dataclass(frozen=True)
class Plan:
    create: int  # new pods from the current template
    delete: tuple[JSON, ...]  # pods to delete, in this order


def plan(deployment: JSON, pods: list[JSON]) -> Plan:
    """What to do next for `deployment`, given every pod it owns (terminating ones included).

    Called again after each change: a rollout proceeds one step per call as pods become ready.
    """
    replicas = int(deployment["spec"].get("replicas", 1))
    current = template_hash(deployment)
    active = [p for p in pods if not deleting(p)]
    new = [p for p in active if (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) == current]
    old = [p for p in active if p not in new]
    strategy = ((deployment["spec"].get("strategy") or {}).get("type")) or "RollingUpdate"

    if strategy == "Recreate":
        if old:
            return Plan(0, tuple(old))
        if any(deleting(p) for p in pods):
            return Plan(0, ())  # the old generation is still shutting down
        return _scale(new, replicas)
    if not old:
        return _scale(new, replicas)

    surge, unavailable = surge_and_unavailable(deployment)
    create = 0
    delete: list[JSON] = []
    room = replicas + surge - len(new) - len(old)
    if len(new) < replicas and room > 0:
        create = min(room, replicas - len(new))
    elif len(new) > replicas:
        delete += deletion_order(new)[: len(new) - replicas]
    # Old pods go while the ready ones stay at or above replicas - maxUnavailable; unready old
    # pods first, as they serve nothing.
    min_available = replicas - unavailable
    new_unavailable = sum(not is_ready(p) for p in new)
    max_scaled_down = len(new) + len(old) - min_available - new_unavailable
    if max_scaled_down > 0:
        unready_old = [p for p in old if not is_ready(p)]
        delete += unready_old[:max_scaled_down]
        available = sum(is_ready(p) for p in active)
        ready_old = deletion_order([p for p in old if is_ready(p)])
        delete += ready_old[: max(0, available - min_available)]
    return Plan(create, tuple(delete))


def _scale(pods: list[JSON], replicas: int) -> Plan:
    if len(pods) < replicas:
        return Plan(replicas - len(pods), ())
    return Plan(0, tuple(deletion_order(pods)[: len(pods) - replicas]))


def _condition(kind: str, ok: bool, reason: str, message: str, previous: JSON | None, now: str) -> JSON:
    status = "True" if ok else "False"
    unchanged = previous is not None and previous.get("status") == status
    same_reason = unchanged and previous is not None and previous.get("reason") == reason
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": previous.get("lastTransitionTime", now) if unchanged and previous else now,
        "lastUpdateTime": previous.get("lastUpdateTime", now) if same_reason and previous else now,
    }


def deployment_status(deployment: JSON, pods: list[JSON], now: str) -> JSON:
    """The Deployment's status as the controller would write it (`now`: RFC 3339)."""
    replicas = int(deployment["spec"].get("replicas", 1))
    current = template_hash(deployment)
    active = [p for p in pods if not deleting(p)]
    updated = [p for p in active if (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) == current]
    ready = sum(is_ready(p) for p in active)
    _, unavailable = surge_and_unavailable(deployment)
    name = f"{deployment['metadata']['name']}-{current}"
    complete = len(updated) == replicas and len(active) == replicas and ready >= replicas
    previous = deployment.get("status") or {}
    return {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": len(active),
        "updatedReplicas": len(updated),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": max(0, replicas - ready),
        "conditions": [
            _condition(
                "Available",
                ready >= replicas - unavailable,
                "MinimumReplicasAvailable" if ready >= replicas - unavailable else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if ready >= replicas - unavailable
                else "Deployment does not have minimum availability.",
                condition({"status": previous}, "Available"),
                now,
            ),
            _condition(
                "Progressing",
                True,
                "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                f'ReplicaSet "{name}" has successfully progressed.' if complete else f'ReplicaSet "{name}" is progressing.',
                condition({"status": previous}, "Progressing"),
                now,
            ),
        ],
    }
