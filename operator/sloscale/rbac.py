"""What the operator may do on the Kubernetes API: the one list the Helm chart's RBAC must match.

The chart's ClusterRole and Roles are written by hand so that each rule carries a comment an SRE
can read in the rendered manifest; this module is the machine-readable copy of the same rules.
The chart tests render the chart and fail when the two differ in either direction, so a new API
call in the operator cannot ship without its permission, and a permission nobody uses cannot
linger. Nothing here uses a wildcard: every group, resource and verb is named.

Scopes:

- `Scope.CLUSTER` rules are cluster-scoped resources (CRDs, namespaces, cluster peerings) and
  always go into the ClusterRole.
- `Scope.WATCHED` rules are namespaced resources in the namespaces the operator watches: a
  ClusterRole when it watches all namespaces, one Role per namespace when it watches a list.

Peering (two replicas, one active, through kopf's `KopfPeering` objects) adds the rules marked
`Peering.CLUSTER` when watching all namespaces and `Peering.NAMESPACED` when watching a list;
kopf uses `ClusterKopfPeering` in the first mode and a `KopfPeering` per namespace in the second.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scope(enum.Enum):
    CLUSTER = "Cluster"
    WATCHED = "Watched"


class Peering(enum.Enum):
    ALWAYS = "Always"  # needed with or without peering
    CLUSTER = "Cluster"  # only with peering while watching all namespaces
    NAMESPACED = "Namespaced"  # only with peering while watching a list of namespaces


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule, with why the operator needs it."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    scope: Scope
    why: str
    peering: Peering = Peering.ALWAYS


_READ = ("get", "list", "watch")

RULES: tuple[Rule, ...] = (
    Rule(
        "sloscale.dev",
        ("inferenceservices",),
        (*_READ, "patch", "update"),
        Scope.WATCHED,
        "Our resource: watch every InferenceService and record kopf's progress annotations.",
    ),
    Rule(
        "sloscale.dev",
        ("inferenceservices/status",),
        ("get", "patch", "update"),
        Scope.WATCHED,
        "Write what was observed and decided: status, conditions, last decision.",
    ),
    Rule(
        "sloscale.dev",
        ("inferenceservices/finalizers",),
        ("update",),
        Scope.WATCHED,
        "Set owner references with blockOwnerDeletion on the Deployment and Service it renders.",
    ),
    Rule(
        "apps",
        ("deployments",),
        (*_READ, "create", "patch", "update"),
        Scope.WATCHED,
        "Render the vLLM Deployment for spec.model and set --max-num-seqs in its pod template; never delete (owner references garbage-collect it).",
    ),
    Rule(
        "apps",
        ("deployments/scale",),
        ("get", "patch", "update"),
        Scope.WATCHED,
        "Move the replica lever through the scale subresource, as the HPA does.",
    ),
    Rule(
        "",
        ("services",),
        (*_READ, "create", "patch", "update"),
        Scope.WATCHED,
        "Render the Service in front of the vLLM Deployment for spec.model.",
    ),
    Rule(
        "",
        ("pods",),
        (*_READ, "patch"),
        Scope.WATCHED,
        "Read readiness, restarts and creation-to-ready times of vLLM pods (the measured cold start); patch only their controller.kubernetes.io/pod-deletion-cost annotation before a scale-down, so the least-loaded pods go first. Never delete.",
    ),
    Rule(
        "",
        ("events",),
        ("create", "patch"),
        Scope.WATCHED,
        "Explain decisions and transitions as core/v1 Events (kopf posts these).",
    ),
    Rule(
        "events.k8s.io",
        ("events",),
        ("create", "patch"),
        Scope.WATCHED,
        "The same Events through the events.k8s.io API.",
    ),
    Rule(
        "apiextensions.k8s.io",
        ("customresourcedefinitions",),
        _READ,
        Scope.CLUSTER,
        "kopf scans CRDs to find the InferenceService and peering resources as they appear.",
    ),
    Rule(
        "",
        ("namespaces",),
        ("list", "watch"),
        Scope.CLUSTER,
        "kopf follows namespaces as they are created and deleted to start and stop its watches.",
    ),
    Rule(
        "kopf.dev",
        ("clusterkopfpeerings",),
        (*_READ, "patch"),
        Scope.CLUSTER,
        "Peering: see the other replica and keep this one's heartbeat (one active at a time).",
        Peering.CLUSTER,
    ),
    Rule(
        "kopf.dev",
        ("kopfpeerings",),
        (*_READ, "patch"),
        Scope.WATCHED,
        "Peering per watched namespace: see the other replica and keep this one's heartbeat.",
        Peering.NAMESPACED,
    ),
)


def rules_for(*, all_namespaces: bool, peering: bool) -> tuple[Rule, ...]:
    """The rules an installation needs, given its watch scope and whether peering is on."""
    wanted = {Peering.ALWAYS}
    if peering:
        wanted.add(Peering.CLUSTER if all_namespaces else Peering.NAMESPACED)
    return tuple(rule for rule in RULES if rule.peering in wanted)
