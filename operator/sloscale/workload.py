"""The vLLM workload: render it, read it, and move its two levers.

An InferenceService either owns its workload (`spec.model`: a Deployment and a Service named after
it, with owner references so that deleting the InferenceService deletes them) or attaches to an
existing Deployment (`spec.scaleTargetRef` plus the container whose `--max-num-seqs` it may set).
Either way the levers move the same way:

- replicas through the Deployment's `scale` subresource only (least privilege, and it composes
  with anything else that reads `spec.replicas`);
- the batch by rewriting `--max-num-seqs` in the pod template: vLLM cannot change it at runtime,
  so a batch change is a rolling update, which the rendered strategy (maxUnavailable 0,
  maxSurge 1) performs without ever dropping the capacity in service.

The rendered Deployment carries a hash of the pod template it was rendered from; the reconciler
re-renders from the spec and patches only when the hash differs, so a spec change (image, args,
resources) reaches the pods and an unchanged spec costs nothing. Replicas are never part of a
rendered patch: they belong to the scale subresource.

Two readings of the pods serve the operator's edge rather than the control law, both pure:

- `deletion_costs`: before a scale-down, each ready pod's requests in flight become its
  `controller.kubernetes.io/pod-deletion-cost`, so the ReplicaSet controller removes the
  least-loaded pods first (among ready pods it deletes lower costs first) and fewer requests have
  to drain. Only pods whose annotation differs are patched.
- `pod_trouble`: the pods that crash-loop (not ready, and restarted repeatedly or waiting in
  `CrashLoopBackOff`) or have not become ready within the cold-start allowance, for the `Ready`
  condition to name.

Rendering and reading (`observe`) are pure; `Workloads` does the API calls, synchronously (the
reconciler runs them in a thread) through the official client, on plain JSON dicts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from sloscale.conditions import PodTrouble, Reason
from sloscale.kube import JSON_PATCH, MERGE_PATCH, KubeApi
from sloscale.resource import (
    GROUP,
    KIND,
    SERVICE_LABEL,
    VERSION,
    InferenceServiceSpec,
    arg_value,
    parse_duration,
)
from sloscale.scaling.snapshot import WorkloadObservation

TEMPLATE_HASH_ANNOTATION = "sloscale.dev/template-hash"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
COLD_START_ALLOWANCE = 2.0  # a pod not ready this many cold starts after it was created is stuck
BATCH_FLAG = "--max-num-seqs"
CONTAINER_NAME = "vllm"
STARTUP_PERIOD_S = 10
TERMINATION_GRACE_S = 120  # in-flight generations drain before SIGKILL
PRESTOP_SLEEP_S = 10  # endpoints and load balancers drop the pod before vLLM sees SIGTERM
# vLLM aborts every running request on SIGTERM unless `--shutdown-timeout` (v0.18+) gives it time
# to finish them; the drain gets what the grace period leaves after the preStop sleep, less a
# margin for the process to exit before SIGKILL.
DRAIN_FLAG = "--shutdown-timeout"
DRAIN_S = TERMINATION_GRACE_S - PRESTOP_SLEEP_S - 10
DRAIN_SINCE = (0, 18)
# vLLM's own server image (`vllm/vllm-openai`, also from a mirror) with a release tag or `latest`.
_SERVER_IMAGE = re.compile(r"(?:^|/)vllm-openai:(?:latest|v?(\d+)\.(\d+)(?:\.\d+)?)$")


class WorkloadError(Exception):
    """The spec names a workload the operator cannot act on; `message` says how to fix it."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- render ----------------------------------------------------------------------------------


def owner_reference(metadata: dict[str, Any]) -> dict[str, Any]:
    """Makes the InferenceService the controller of what it owns (garbage-collected with it)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "sloscale",
        SERVICE_LABEL: name,
    }


def drains_on_sigterm(image: str) -> bool:
    """Whether the image is known to take `--shutdown-timeout`: vLLM's server image tagged v0.18
    or later, or `latest`. Any other image (a digest, a custom build) gets no flag — an older vLLM
    would refuse it and never start — and `spec.engine.args` can set it."""
    tag = _SERVER_IMAGE.search(image)
    if tag is None:
        return False
    return tag[1] is None or (int(tag[1]), int(tag[2])) >= DRAIN_SINCE


def vllm_args(name: str, spec: InferenceServiceSpec, max_num_seqs: int) -> list[str]:
    """The server's arguments: the managed ones first, then `spec.engine.args` as written."""
    engine = spec.engine_or_default
    drain = (
        [f"{DRAIN_FLAG}={DRAIN_S}"]
        if drains_on_sigterm(engine.image)
        and arg_value(engine.args, DRAIN_FLAG) is None
        and DRAIN_FLAG not in engine.args
        else []
    )
    return [
        f"--model={spec.model}",
        f"--served-model-name={name}",  # the model_name label on every vLLM metric
        "--host=0.0.0.0",
        f"--port={engine.port}",
        f"{BATCH_FLAG}={max_num_seqs}",
        f"--tensor-parallel-size={max(1, engine.gpus)}",
        *drain,
        *engine.args,
    ]


def _resources(spec: InferenceServiceSpec) -> dict[str, Any]:
    engine = spec.engine_or_default
    requests = dict(engine.resources.get("requests") or {})
    limits = dict(engine.resources.get("limits") or {})
    if engine.gpus > 0:  # GPUs are requested and limited alike: they cannot be overcommitted
        requests["nvidia.com/gpu"] = str(engine.gpus)
        limits["nvidia.com/gpu"] = str(engine.gpus)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def render_pod_template(name: str, spec: InferenceServiceSpec, max_num_seqs: int) -> dict[str, Any]:
    engine = spec.engine_or_default
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": engine.image,
        "args": vllm_args(name, spec, max_num_seqs),
        "ports": [{"name": "http", "containerPort": engine.port}],
        "resources": _resources(spec),
        # The model load takes minutes: the startup probe gives it the whole budget; liveness and
        # readiness start only after it passes, and liveness tolerates a long prefill step.
        "startupProbe": {
            **probe,
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": max(
                1, math.ceil(parse_duration(engine.startup_timeout) / STARTUP_PERIOD_S)
            ),
        },
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_S)]}}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if engine.env:
        container["env"] = [
            env.model_dump(mode="json", by_alias=True, exclude_none=True) for env in engine.env
        ]
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "containers": [container],
        # PyTorch workers exchange tensors through shared memory; the runtime's 64 MiB is too small.
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    if engine.gpus > 0:
        pod_spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    pod_labels = labels(name)
    del pod_labels["app.kubernetes.io/managed-by"]
    return {
        "metadata": {
            "labels": pod_labels,
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(engine.port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod_spec,
    }


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def render_deployment(
    metadata: dict[str, Any], spec: InferenceServiceSpec, *, replicas: int, max_num_seqs: int
) -> dict[str, Any]:
    """The owned Deployment for an InferenceService (`metadata` is the InferenceService's)."""
    name = metadata["name"]
    template = render_pod_template(name, spec, max_num_seqs)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": metadata["namespace"],
            "labels": labels(name),
            "annotations": {TEMPLATE_HASH_ANNOTATION: template_hash(template)},
            "ownerReferences": [owner_reference(metadata)],
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {SERVICE_LABEL: name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": template,
        },
    }


def render_service(metadata: dict[str, Any], spec: InferenceServiceSpec) -> dict[str, Any]:
    name = metadata["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": metadata["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "sloscale", SERVICE_LABEL: name},
            "ownerReferences": [owner_reference(metadata)],
        },
        "spec": {
            "selector": {SERVICE_LABEL: name},
            "ports": [{"name": "http", "port": spec.engine_or_default.port, "targetPort": "http"}],
        },
    }


def initial_replicas(spec: InferenceServiceSpec) -> int:
    """A new workload starts with one replica (so it can be measured), within the bounds."""
    return min(max(spec.replicas.min, 1), spec.replicas.max)


# --- read ------------------------------------------------------------------------------------


def batch_from_args(args: list[str]) -> int | None:
    value = arg_value(args, BATCH_FLAG)
    return int(value) if value is not None and value.isdigit() else None


def with_batch(args: list[str], value: int) -> list[str]:
    """`args` with `--max-num-seqs` set to `value`, in whichever spelling it had (or appended)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == BATCH_FLAG and i + 1 < len(out):
            out[i + 1] = str(value)
            return out
        if arg.startswith(BATCH_FLAG + "="):
            out[i] = f"{BATCH_FLAG}={value}"
            return out
    return [*out, f"{BATCH_FLAG}={value}"]


def find_container(deployment: dict[str, Any], name: str | None) -> tuple[int, dict[str, Any]]:
    """The container whose batch the operator manages: by name, or the first one."""
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"].get("containers", [])
    for index, container in enumerate(containers):
        if name is None or container.get("name") == name:
            return index, container
    known = ", ".join(c.get("name", "?") for c in containers) or "none"
    raise WorkloadError(
        Reason.CONTAINER_NOT_FOUND,
        f"Deployment {deployment['metadata']['name']} has no container {name!r} (containers: {known}); "
        "fix spec.scaleTargetRef.container",
    )


def container_batch(container: dict[str, Any]) -> int | None:
    """`--max-num-seqs` from the container's args, or from its command when args are empty."""
    found = batch_from_args(list(container.get("args") or []))
    return found if found is not None else batch_from_args(list(container.get("command") or []))


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def pod_start_durations(pods: list[dict[str, Any]]) -> tuple[float, ...]:
    """Creation → Ready of pods that became ready once and never restarted: the cold start."""
    durations: list[float] = []
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        if any(c.get("restartCount", 0) > 0 for c in status.get("containerStatuses") or []):
            continue
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        created = _time(pod["metadata"].get("creationTimestamp"))
        became = (
            _time(ready.get("lastTransitionTime"))
            if ready and ready.get("status") == "True"
            else None
        )
        if created and became and became >= created:
            durations.append((became - created).total_seconds())
    return tuple(durations)


def rollout_in_progress(deployment: dict[str, Any]) -> bool:
    """True while the Deployment controller has not yet replaced every pod of an older template."""
    spec, status = deployment["spec"], deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    if status.get("observedGeneration", -1) < deployment["metadata"].get("generation", 0):
        return True
    updated = status.get("updatedReplicas", 0)
    return bool(updated < wanted or status.get("replicas", 0) > updated)


def observe(
    deployment: dict[str, Any], pods: list[dict[str, Any]], container: str | None
) -> WorkloadObservation:
    """The workload as the control law sees it. Replicas requested but not ready are coming
    capacity (`starting`), whether their pods exist yet or not."""
    replicas = int(deployment["spec"].get("replicas", 1))
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    _, managed = find_container(deployment, container)
    return WorkloadObservation(
        replicas=replicas,
        ready=ready,
        starting=max(0, replicas - ready),
        max_num_seqs=container_batch(managed),
        rollout_in_progress=rollout_in_progress(deployment),
        pod_start_durations_s=pod_start_durations(pods),
    )


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def deletion_costs(
    pods: list[dict[str, Any]], in_flight_by_pod: Mapping[str, float]
) -> dict[str, int]:
    """Pod name → the deletion cost to write: its requests in flight (running + waiting, rounded),
    for the ready pods whose annotation does not already say so. Pods that are not ready go first
    anyway. A ready pod with no reading (not scraped yet, or its scrape failed: a busy pod may
    answer slowly) costs as much as the busiest one read: unknown load is not taken for idle.
    Without any reading nothing is written."""
    ready = [p for p in pods if not p["metadata"].get("deletionTimestamp") and _pod_ready(p)]
    loads = {
        p["metadata"]["name"]: round(in_flight_by_pod[p["metadata"]["name"]])
        for p in ready
        if p["metadata"]["name"] in in_flight_by_pod
    }
    if not loads:
        return {}
    busiest = max(loads.values())
    costs: dict[str, int] = {}
    for pod in ready:
        meta = pod["metadata"]
        cost = loads.get(meta["name"], busiest)
        if (meta.get("annotations") or {}).get(DELETION_COST_ANNOTATION) != str(cost):
            costs[meta["name"]] = cost
    return costs


def cold_start_allowance(declared_s: float, measured_s: float | None) -> float:
    """How long a pod may take to become ready before it is reported: twice the cold start in use
    (the spec's `coldStart`, or the measured one when that is longer)."""
    return COLD_START_ALLOWANCE * max(declared_s, measured_s or 0.0)


def pod_trouble(pods: list[dict[str, Any]], now: float, allowance_s: float) -> PodTrouble:
    """The pods that crash-loop or have not become ready within `allowance_s`, each named once
    (crash-looping first). Terminating pods are leaving and not counted."""
    crashing: list[tuple[str, int]] = []
    stuck: list[tuple[str, float]] = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp") or _pod_ready(pod):
            continue
        containers = status.get("containerStatuses") or []
        restarts = sum(int(c.get("restartCount") or 0) for c in containers)
        backoff = any(
            ((c.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
            for c in containers
        )
        # Not ready since it was created, or since it last turned unready.
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        marks = (_time(meta.get("creationTimestamp")), _time(ready.get("lastTransitionTime")))
        since = max((t.timestamp() for t in marks if t is not None), default=None)
        # A container that ended during this unready spell (one whose kubelet does not say when
        # counts), so that the pod stays named between its back-offs while it runs again.
        # restartCount is for the pod's life: old restarts of a pod that served for days do not
        # make a readiness blip a crash loop.
        ended = [_last_exit(c) for c in containers if int(c.get("restartCount") or 0)]
        looping = any(t is None or since is None or t.timestamp() >= since for t in ended)
        if backoff or looping:
            crashing.append((meta["name"], restarts))
            continue
        if since is not None and now - since > allowance_s:
            stuck.append((meta["name"], now - since))
    return PodTrouble(tuple(sorted(crashing)), tuple(sorted(stuck)), allowance_s)


def _last_exit(container: dict[str, Any]) -> datetime | None:
    return _time(((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))


def selector_of(deployment: dict[str, Any]) -> str:
    match: dict[str, str] = deployment["spec"].get("selector", {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(match.items()))


# --- API calls -------------------------------------------------------------------------------


def deployment_path(namespace: str, name: str = "") -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments" + (f"/{name}" if name else "")


@dataclass(frozen=True)
class Ensured:
    """The Deployment after `ensure_owned`, and what had to be done to it ("" when nothing)."""

    deployment: dict[str, Any]
    action: str  # "Created", "Updated" or ""


class Workloads:
    """Reads and writes Deployments, Services and Pods (synchronous)."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._api.get(deployment_path(namespace, name))

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        if not selector:
            return []
        listing = self._api.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", query=[("labelSelector", selector)]
        )
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        self._api.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{pod}",
            body={"metadata": {"annotations": {DELETION_COST_ANNOTATION: str(cost)}}},
            content_type=MERGE_PATCH,
        )

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self._api.request(
            "PATCH",
            deployment_path(namespace, name) + "/scale",
            body={"spec": {"replicas": replicas}},
            content_type=MERGE_PATCH,
        )

    def ensure_owned(
        self,
        metadata: dict[str, Any],
        spec: InferenceServiceSpec,
        existing: dict[str, Any] | None,
        *,
        check_service: bool = False,
    ) -> Ensured:
        """Create the Deployment and Service, or bring the pod template in line with the spec.
        The live batch is kept (it is the operator's lever, not the spec's). The Service is
        written with a new or changed Deployment, or when asked (`check_service`): a tick that
        finds nothing to change costs no write."""
        namespace = metadata["namespace"]
        if existing is None or check_service:
            self._ensure_service(metadata, spec)
        if existing is None:
            body = render_deployment(
                metadata,
                spec,
                replicas=initial_replicas(spec),
                max_num_seqs=spec.batching.initial_max_num_seqs,
            )
            try:
                return Ensured(
                    self._api.request("POST", deployment_path(namespace), body=body), "Created"
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
            # Created meanwhile (a handler and a tick raced): bring that one in line instead.
            existing = self.get_deployment(namespace, metadata["name"])
            if existing is None:
                raise RuntimeError(
                    f"Deployment {metadata['name']} was created and deleted meanwhile"
                )
        _, container = find_container(existing, CONTAINER_NAME)
        batch = container_batch(container) or spec.batching.initial_max_num_seqs
        ensured = self._apply_template(existing, metadata, spec, batch)
        if ensured.action and not check_service:
            self._ensure_service(metadata, spec)  # the port may have changed with the spec
        return ensured

    def _apply_template(
        self,
        existing: dict[str, Any],
        metadata: dict[str, Any],
        spec: InferenceServiceSpec,
        batch: int,
    ) -> Ensured:
        template = render_pod_template(metadata["name"], spec, batch)
        digest = template_hash(template)
        annotations = existing["metadata"].get("annotations") or {}
        if annotations.get(TEMPLATE_HASH_ANNOTATION) == digest:
            return Ensured(existing, "")
        # A merge patch replaces the containers list whole: the template is entirely ours.
        patch = {
            "metadata": {"annotations": {TEMPLATE_HASH_ANNOTATION: digest}},
            "spec": {"template": template},
        }
        path = deployment_path(metadata["namespace"], metadata["name"])
        return Ensured(
            self._api.request("PATCH", path, body=patch, content_type=MERGE_PATCH), "Updated"
        )

    def _ensure_service(self, metadata: dict[str, Any], spec: InferenceServiceSpec) -> None:
        body = render_service(metadata, spec)
        services = f"/api/v1/namespaces/{metadata['namespace']}/services"
        try:
            self._api.request("POST", services, body=body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            patch = {"spec": {"ports": body["spec"]["ports"], "selector": body["spec"]["selector"]}}
            self._api.request(
                "PATCH", f"{services}/{metadata['name']}", body=patch, content_type=MERGE_PATCH
            )

    def set_batch(
        self,
        deployment: dict[str, Any],
        value: int,
        *,
        owned: tuple[dict[str, Any], InferenceServiceSpec] | None = None,
        container: str | None = None,
    ) -> None:
        """Rewrite `--max-num-seqs` (a rolling update). Owned workloads are re-rendered whole, so the
        template hash stays true; attached ones get a JSON patch of the one container's args, guarded
        by a `test` of its name so that a concurrent edit of the containers fails instead of
        misfiring."""
        if owned is not None:
            metadata, spec = owned
            self._apply_template(deployment, metadata, spec, value)
            return
        index, target = find_container(deployment, container)
        base = f"/spec/template/spec/containers/{index}"
        field, args = "args", list(target.get("args") or [])
        if (
            batch_from_args(args) is None
            and batch_from_args(list(target.get("command") or [])) is not None
        ):
            field, args = "command", list(target["command"])
        patch = [
            {"op": "test", "path": f"{base}/name", "value": target.get("name")},
            {"op": "add", "path": f"{base}/{field}", "value": with_batch(args, value)},
        ]
        meta = deployment["metadata"]
        self._api.request(
            "PATCH",
            deployment_path(meta["namespace"], meta["name"]),
            body=patch,
            content_type=JSON_PATCH,
        )
