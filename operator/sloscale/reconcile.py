"""One control tick for every InferenceService: snapshot → decide → actuate → status → events.

This is the only module that mixes I/O with decisions. Its shape follows from one rule: **the
metrics read is one fetch per tick for all services** (a fixed number of PromQL queries whatever
the number of services), so ticks are driven by a single fleet-level loop rather than by a timer
per resource:

1. kopf keeps one daemon per InferenceService alive while this operator instance controls it
   (`handlers.py`); the daemon registers the resource's live body here and unregisters it when
   the resource is deleted or when kopf pauses the operator for a peer with higher priority. The
   registry is therefore exactly the set of services this instance may act on.
2. Every tick interval, `Fleet.tick(now)` reads the metrics of all registered services with one
   `fetch`, then reconciles each service independently (a few at a time, each in a worker
   thread). One service's failure — an invalid spec, a missing target, an API error — is
   reported on that service and never reaches the others or the loop.
3. `ServiceReconciler.reconcile` runs one service: resolve the spec into a policy, read (and for
   owned workloads, render or repair) the workload, decide with the pure control law, move the
   levers unless the mode is Advisory, then write status and emit events on transitions.

Per service the reconciler keeps, in memory, the control law's `ControlState` and the status it
last wrote (events are computed against it, not against a possibly lagging watch). After a restart
both are rebuilt: the state from the workload and the status's `lastScaleTime` /
`lastBatchChangeTime`, the previous status from the resource itself.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sloscale.conditions import BLOCKING_REASONS, Reason, blocked_conditions
from sloscale.events import Event, EventReason, EventType, condition_events, lever_events
from sloscale.informers import WorkloadCache
from sloscale.kube import MERGE_PATCH, KubeApi, error_message
from sloscale.metrics_source import ServiceSnapshot
from sloscale.resource import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InferenceServiceSpec,
    InferenceServiceStatus,
    OperatorDefaults,
    SpecError,
    parse_spec,
    parse_status,
    resolve_policy,
)
from sloscale.scaling import Action, ControlState, Decision, Observation, decide
from sloscale.scaling.observe import effective_batch
from sloscale.scaling.policy import Policy
from sloscale.scaling.snapshot import (
    MetricsSnapshot,
    MetricsUnavailable,
    Unavailability,
    WorkloadObservation,
)
from sloscale.status import (
    Applied,
    blocked_status,
    build_status,
    needs_write,
    to_epoch,
    to_time,
)
from sloscale.telemetry import Telemetry
from sloscale.workload import (
    CONTAINER_NAME,
    WorkloadError,
    Workloads,
    cold_start_allowance,
    deletion_costs,
    observe,
    pod_trouble,
    selector_of,
)

logger = logging.getLogger("sloscale.reconcile")

ServiceKey = tuple[str, str]
MetricsResult = MetricsSnapshot | MetricsUnavailable
EVENT_MESSAGE_LIMIT = 1024  # the API server's bound on an event message
STATUS_REFRESH_S = 60.0  # a status whose readings alone changed is rewritten at most this often


class MetricsSource(Protocol):
    def fetch(
        self, services: Collection[ServiceKey], now: float
    ) -> dict[ServiceKey, MetricsResult]: ...


@dataclass
class Memory:
    """What the reconciler remembers of one service between ticks."""

    uid: str
    status: InferenceServiceStatus
    state: ControlState | None = None
    unwritten: InferenceServiceStatus | None = None  # the status of a tick whose write was refused
    written_at: float | None = None  # when this instance last wrote the status (None: not yet)


@dataclass(frozen=True)
class Outcome:
    """What one service's reconcile did: for logs and tests."""

    status: InferenceServiceStatus
    events: tuple[Event, ...]
    decided: bool


def _status_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"


class ServiceReconciler:
    """Reconciles one service at a time (synchronous: it runs in a worker thread)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        telemetry: Telemetry,
        defaults: OperatorDefaults | None = None,
        instance: str | None = None,
        cache: WorkloadCache | None = None,
        status_refresh_s: float = STATUS_REFRESH_S,
    ) -> None:
        self.api = api
        self.workloads = Workloads(api)
        self.telemetry = telemetry
        self.defaults = defaults or OperatorDefaults()
        self.instance = instance or socket.gethostname()
        self.cache = cache
        self.status_refresh_s = status_refresh_s
        self.memory: dict[ServiceKey, Memory] = {}
        # Deployment → the resourceVersions our own writes to it replaced: while the cache still
        # shows one of them it lags those writes, and the Deployment is read from the API.
        # Worker threads reconcile services side by side: both maps are kept under `_lock`.
        self.superseded: dict[tuple[str, str], set[str]] = {}
        self._targets: dict[ServiceKey, str] = {}  # service → the Deployment it reads
        self._lock = threading.Lock()

    # -- reads: the cache first, the API when the cache cannot be trusted -----------------------

    def read_deployment(
        self, namespace: str, name: str, *, service: str | None = None
    ) -> dict[str, Any] | None:
        """The Deployment from the cache, unless the cache does not have it (not listed yet,
        stale, or absent: confirmed by a GET) or still shows a version our own write has
        replaced. `service` is the InferenceService reading it (default: its namesake)."""
        cached = self.cache.deployment(namespace, name) if self.cache is not None else None
        with self._lock:
            self._targets[(namespace, service or name)] = name
            stale = self.superseded.get((namespace, name), set())
            if cached is not None and cached["metadata"].get("resourceVersion") not in stale:
                self.superseded.pop((namespace, name), None)  # the cache has caught up
                return cached
        return self.workloads.get_deployment(namespace, name)

    def read_pods(self, namespace: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        match: dict[str, str] = deployment["spec"].get("selector", {}).get("matchLabels") or {}
        cached = self.cache.pods(namespace, match) if self.cache is not None else None
        if cached is not None:
            return cached
        return self.workloads.list_pods(namespace, selector_of(deployment))

    def _wrote(self, deployment: dict[str, Any]) -> None:
        """Our write replaced this version of the Deployment (the one read this tick)."""
        meta = deployment["metadata"]
        if meta.get("resourceVersion"):
            with self._lock:
                versions = self.superseded.setdefault((meta["namespace"], meta["name"]), set())
                versions.add(meta["resourceVersion"])

    # -- the workload ---------------------------------------------------------------------------

    def ensure_workload(self, body: Mapping[str, Any]) -> list[Event]:
        """Render an owned workload or bring it in line with the spec; attached ones are only
        read. Spec and target problems are left for the tick to report."""
        try:
            spec = parse_spec(body["spec"])
            resolve_policy(spec, self.defaults)
            _, events = self._workload(body["metadata"], spec, check_service=True)
        except (SpecError, WorkloadError):
            return []
        return events

    def _workload(
        self, meta: Mapping[str, Any], spec: InferenceServiceSpec, *, check_service: bool = False
    ) -> tuple[dict[str, Any], list[Event]]:
        namespace, name = meta["namespace"], meta["name"]
        if spec.scale_target_ref is not None:
            target = spec.scale_target_ref.name
            found = self.read_deployment(namespace, target, service=name)
            if found is None:
                raise WorkloadError(
                    Reason.TARGET_NOT_FOUND,
                    f"Deployment {target} (spec.scaleTargetRef) does not exist in namespace {namespace}",
                )
            return found, []
        existing = self.read_deployment(namespace, name)
        ensured = self.workloads.ensure_owned(
            dict(meta), spec, existing, check_service=check_service
        )
        if ensured.action == "Updated" and existing is not None:
            self._wrote(existing)
        events = []
        if ensured.action == "Created":
            events.append(
                Event(
                    EventType.NORMAL,
                    EventReason.WORKLOAD_CREATED,
                    f"created Deployment and Service {name}",
                )
            )
        elif ensured.action == "Updated":
            events.append(
                Event(
                    EventType.NORMAL,
                    EventReason.WORKLOAD_UPDATED,
                    f"pod template of Deployment {name} updated to match the spec (rolling update)",
                )
            )
        return ensured.deployment, events

    # -- one tick -------------------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any], metrics: MetricsResult, now: float) -> Outcome:
        """One service's tick: read, decide, move the levers (Enforce), write status and events."""
        meta = body["metadata"]
        key: ServiceKey = (meta["namespace"], meta["name"])
        memory = self.memory.get(key)
        if memory is None or memory.uid != meta.get("uid"):  # first sight, or deleted and recreated
            memory = Memory(uid=meta.get("uid", ""), status=parse_status(body.get("status")))
            self.memory[key] = memory
        generation = meta.get("generation")
        events: list[Event] = []
        try:
            spec = parse_spec(body["spec"])
            policy = resolve_policy(spec, self.defaults)
            deployment, events = self._workload(meta, spec)
            container = spec.scale_target_ref.container if spec.scale_target_ref else CONTAINER_NAME
            pods = self.read_pods(key[0], deployment)
            seen = observe(deployment, pods, container)
        except SpecError as exc:
            return self._blocked(
                key, memory, Reason.INVALID_SPEC, f"spec: {exc}", generation, now, events
            )
        except WorkloadError as exc:
            return self._blocked(key, memory, exc.reason, exc.message, generation, now, events)

        if memory.state is None:  # after a restart, the status carries what must survive it
            memory.state = ControlState.initial(
                now,
                seen.replicas,
                seen.max_num_seqs,
                last_scale_time=to_epoch(memory.status.last_scale_time),
                last_batch_change_time=to_epoch(memory.status.last_batch_change_time),
            )
        decision, memory.state = decide(Observation(metrics, seen), policy, memory.state, now)
        _log_decision(key, decision)
        applied = seen_levers(seen)
        if not spec.advisory:
            applied = self._actuate(
                deployment,
                meta,
                spec,
                policy,
                seen,
                decision.replicas,
                decision.max_num_seqs,
                pods=pods,
                metrics=metrics,
            )

        status = build_status(
            memory.status,
            decision=decision,
            policy=policy,
            metrics=metrics,
            seen=seen,
            applied=applied,
            advisory=spec.advisory,
            generation=generation,
            now=now,
            # Ready names the pods that crash-loop or never become ready.
            trouble=pod_trouble(
                pods, now, cold_start_allowance(policy.cold_start_s, decision.cold_start_s)
            ),
        )
        status = _carry_unwritten(status, memory.status, memory.unwritten)
        previous = memory.status
        events += lever_events(
            # Advisory reports the decision; Enforce reports what was actually written.
            decision
            if spec.advisory
            else replace(decision, replicas=applied.replicas, max_num_seqs=applied.max_num_seqs),
            replicas_before=seen.replicas,
            batch_before=effective_batch(seen, policy),
            advisory=spec.advisory,
            recommended_before=(
                previous.replicas.desired if previous.replicas else None,
                previous.batch.desired if previous.batch else None,
            ),
        )
        transitions = condition_events(previous.conditions, status.conditions)
        self._write(key, body, memory, status, transitions, now, done=events)
        self.telemetry.record(*key, decision, policy, current=applied.replicas, ready=seen.ready)
        return Outcome(status, tuple(events + transitions), decided=True)

    def _actuate(
        self,
        deployment: dict[str, Any],
        meta: Mapping[str, Any],
        spec: InferenceServiceSpec,
        policy: Policy,
        seen: WorkloadObservation,
        replicas: int,
        batch: int | None,
        *,
        pods: list[dict[str, Any]],
        metrics: MetricsResult,
    ) -> Applied:
        """Move the levers the decision moved; a refused write is reported, never raised."""
        namespace = meta["namespace"]
        target = deployment["metadata"]["name"]
        applied = seen_levers(seen)
        try:
            if replicas < seen.replicas:
                self._rank_victims(namespace, meta["name"], pods, metrics)
            if replicas != seen.replicas:
                self._wrote(deployment)  # before the write: a timeout may still have applied it
                self.workloads.scale(namespace, target, replicas)
                applied = replace(applied, replicas=replicas)
            if batch_write_needed(policy, seen, batch):
                assert batch is not None
                self._wrote(deployment)
                self.workloads.set_batch(
                    deployment,
                    batch,
                    owned=(dict(meta), spec) if spec.owned else None,
                    container=spec.scale_target_ref.container if spec.scale_target_ref else None,
                )
                applied = replace(applied, max_num_seqs=batch)
        except Exception as exc:  # any refusal is reported on AbleToScale
            logger.warning(
                "%s/%s: cannot move the levers: %s", namespace, meta["name"], error_message(exc)
            )
            applied = replace(
                applied, scale_error=f"writing Deployment {target} failed: {error_message(exc)}"
            )
        return applied

    def _rank_victims(
        self, namespace: str, name: str, pods: list[dict[str, Any]], metrics: MetricsResult
    ) -> None:
        """Before a scale-down: each ready pod's requests in flight become its deletion cost, so
        the least-loaded pods are removed. An optimisation: a refused patch is logged, and the
        scale-down goes ahead in the controller's own order."""
        if not isinstance(metrics, ServiceSnapshot):
            return
        costs = deletion_costs(pods, metrics.in_flight_by_pod)
        for pod, cost in costs.items():
            try:
                self.workloads.set_deletion_cost(namespace, pod, cost)
            except Exception as exc:  # noqa: BLE001 - the scale-down does not depend on it
                logger.warning(
                    "%s/%s: cannot set the deletion cost of pod %s: %s",
                    namespace,
                    name,
                    pod,
                    error_message(exc),
                )
        if costs:
            logger.info("%s/%s: deletion costs (requests in flight) %s", namespace, name, costs)

    def _blocked(
        self,
        key: ServiceKey,
        memory: Memory,
        reason: Reason,
        message: str,
        generation: int | None,
        now: float,
        events: list[Event],
    ) -> Outcome:
        """A spec or target the operator cannot act on: conditions and an event say why, nothing moves."""
        assert reason in BLOCKING_REASONS
        self.telemetry.forget_gauges(*key)  # nothing was evaluated: no stale readings
        status = blocked_status(
            memory.status, blocked_conditions(reason, message), generation=generation, now=now
        )
        events = [*events, *condition_events(memory.status.conditions, status.conditions)]
        body = {"metadata": {"namespace": key[0], "name": key[1], "uid": memory.uid}}
        self._write(key, body, memory, status, events, now)
        return Outcome(status, tuple(events), decided=False)

    # -- writes ---------------------------------------------------------------------------------

    def _write(
        self,
        key: ServiceKey,
        body: Mapping[str, Any],
        memory: Memory,
        status: InferenceServiceStatus,
        events: list[Event],
        now: float,
        done: list[Event] | None = None,
    ) -> None:
        """Write the status, then post `events` (its transitions). `done` (workload and lever
        changes already made) is posted even when the status write is refused: the next tick
        would not see those changes happen again, while it does recompute the transitions."""
        try:
            since_s = None if memory.written_at is None else now - memory.written_at
            if needs_write(
                status, memory.status, since_write_s=since_s, refresh_s=self.status_refresh_s
            ):
                self.api.request(
                    "PATCH",
                    _status_path(*key),
                    body={"status": status.to_patch()},
                    content_type=MERGE_PATCH,
                )
                memory.status, memory.written_at = status, now
            memory.unwritten = None
        except Exception:
            memory.unwritten = status
            raise
        finally:
            for event in done or []:
                self.post_event(body, event)
        for event in events:
            self.post_event(body, event)

    def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        """A core/v1 Event about the InferenceService; a refused event is logged, not retried."""
        meta = body["metadata"]
        stamp = to_time(time.time()).isoformat().replace("+00:00", "Z")
        manifest = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": event.type.value,
            "reason": event.reason.value,
            "message": event.message[:EVENT_MESSAGE_LIMIT],
            "source": {"component": "sloscale"},
            "reportingComponent": "sloscale.dev/operator",
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.api.request(
                "POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=manifest
            )
        except Exception as exc:  # events are best effort; status holds the record
            logger.warning("cannot post event %s: %s", event.reason.value, error_message(exc))

    def forget(self, key: ServiceKey) -> None:
        """Drop what is remembered of a service: its memory, its telemetry, and the versions
        of its Deployment that our writes replaced (unless another service reads it too)."""
        self.memory.pop(key, None)
        self.telemetry.forget(*key)
        with self._lock:
            target = (key[0], self._targets.pop(key, key[1]))
            if target not in ((ns, name) for (ns, _), name in self._targets.items()):
                self.superseded.pop(target, None)


def _carry_unwritten(
    status: InferenceServiceStatus,
    written: InferenceServiceStatus,
    unwritten: InferenceServiceStatus | None,
) -> InferenceServiceStatus:
    """`status` with what the last refused status write recorded and this tick did not change:
    the levers moved then, and the next tick does not see them move again, so the last decision
    and its times (the batch cooldown survives restarts through them) would otherwise be lost."""
    if unwritten is None:
        return status
    update = {}
    for name in ("last_decision", "last_scale_time", "last_batch_change_time"):
        lost, before = getattr(unwritten, name), getattr(written, name)
        if lost != before and getattr(status, name) == before:
            update[name] = lost
    return status.model_copy(update=update) if update else status


def _copy_body(body: Mapping[str, Any], *, with_status: bool) -> dict[str, Any]:
    """What a tick reads of kopf's live body: metadata and spec (and the status if asked)."""
    keep = ("metadata", "spec", "status") if with_status else ("metadata", "spec")
    return {k: copy.deepcopy(body[k]) for k in keep if k in body}


def _log_decision(key: ServiceKey, decision: Decision) -> None:
    level = logging.DEBUG if decision.action is Action.HOLD else logging.INFO
    logger.log(
        level, "%s/%s: %s %s: %s", *key, decision.action.value, decision.reason, decision.message
    )
    if logger.isEnabledFor(logging.DEBUG):
        stages = "; ".join(f"{s.stage} {s.reason}: {s.message}" for s in decision.stages)
        logger.debug("%s/%s stages: %s", *key, stages)


def batch_write_needed(policy: Policy, seen: WorkloadObservation, batch: int | None) -> bool:
    """Whether the decided batch means a pod-template change. A template without the flag runs
    vLLM's default, which the control law also assumes, so deciding that value is no change; a
    value outside the spec's bounds is never written."""
    if not policy.batching.enabled or batch is None:
        return False
    current = effective_batch(seen, policy)
    within = policy.batching.min_seqs <= batch <= policy.batching.max_seqs
    if batch != current and not within:
        logger.warning(
            "not writing --max-num-seqs=%d: outside [%d, %d]",
            batch,
            policy.batching.min_seqs,
            policy.batching.max_seqs,
        )
    return batch != current and within


def seen_levers(seen: WorkloadObservation) -> Applied:
    return Applied(replicas=seen.replicas, max_num_seqs=seen.max_num_seqs)


@dataclass
class Fleet:
    """The services this operator instance controls, and the loop that ticks them all at once."""

    reconciler: ServiceReconciler
    metrics: MetricsSource
    telemetry: Telemetry
    tick_interval_s: float
    clock: Callable[[], float] = time.time
    concurrency: int = 4  # services reconciled side by side, each batch in a worker thread
    batch_size: int = 16  # services per worker-thread hop: one hop each cost a sixth of a tick
    bodies: dict[ServiceKey, Mapping[str, Any]] = field(default_factory=dict)
    last_tick_end: float | None = None
    started_at: float = field(default_factory=time.monotonic)

    def register(self, body: Mapping[str, Any]) -> None:
        """Control this service from the next tick on (`body` is kopf's live view of it)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if key not in self.bodies:  # (re)gained: start from the live status, not an old memory
            self.reconciler.forget(key)
        self.bodies[key] = body

    def unregister(self, namespace: str, name: str) -> None:
        self.bodies.pop((namespace, name), None)
        self.reconciler.forget((namespace, name))
        self._release_caches()

    def _release_caches(self) -> None:
        """Stop the watch-fed caches of namespaces where no service is left."""
        if self.reconciler.cache is not None:
            self.reconciler.cache.retain({namespace for namespace, _ in self.bodies})

    async def ensure_workload(self, body: Mapping[str, Any]) -> None:
        """Render or check one workload right away (create/update/resume), outside the tick."""
        snapshot = copy.deepcopy(dict(body))
        events = await asyncio.to_thread(self.reconciler.ensure_workload, snapshot)
        for event in events:
            await asyncio.to_thread(self.reconciler.post_event, snapshot, event)

    async def tick(self, now: float) -> dict[ServiceKey, Outcome | BaseException]:
        """One fetch for every service, then each service on its own, in batches: `concurrency`
        worker threads each take the next `batch_size` services, one hop per batch."""
        started = time.monotonic()
        keys = list(self.bodies)
        results: dict[ServiceKey, Outcome | BaseException] = {}
        if keys:
            try:
                fetched = await asyncio.to_thread(self.metrics.fetch, keys, now)
            except Exception as exc:  # a source that breaks its contract still means "no data"
                logger.exception("the metrics read failed")
                failed = MetricsUnavailable(
                    Unavailability.QUERY_FAILED, f"reading metrics failed: {exc}"
                )
                fetched = dict.fromkeys(keys, failed)
            missing = MetricsUnavailable(
                Unavailability.NO_DATA, "the metrics source returned nothing"
            )
            pending = collections.deque(keys)
            # Batches no larger than an even share: a handful of services still spread over
            # every worker, so one slow API call holds up few others.
            size = max(1, min(self.batch_size, math.ceil(len(keys) / self.concurrency)))

            def reconcile(batch: list[tuple[ServiceKey, dict[str, Any]]]) -> None:
                for key, body in batch:
                    if key not in self.bodies:  # let go since its batch was taken
                        continue
                    try:
                        results[key] = self.reconciler.reconcile(
                            body, fetched.get(key, missing), now
                        )
                    except Exception as exc:  # one service's failure stays its own
                        logger.exception("%s/%s: reconcile failed", *key)
                        self.telemetry.reconcile_errors.labels(*key).inc()
                        results[key] = exc

            async def worker() -> None:
                while pending:
                    # The copies are taken on the loop thread, when their batch's turn comes:
                    # kopf updates live bodies meanwhile, a service deleted or handed to a peer
                    # during the tick is left alone, and the spec read is the newest. The status
                    # is read only on first sight of a service (after that, memory holds it).
                    batch: list[tuple[ServiceKey, dict[str, Any]]] = []
                    while pending and len(batch) < size:
                        key = pending.popleft()
                        live = self.bodies.get(key)
                        if live is not None:
                            first = key not in self.reconciler.memory
                            batch.append((key, _copy_body(live, with_status=first)))
                    if batch:
                        await asyncio.to_thread(reconcile, batch)
                        for key, _ in batch:
                            if key not in self.bodies:  # let go while it was being reconciled:
                                self.reconciler.forget(key)  # drop what that brought back

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
            self._release_caches()  # any a service let go mid-tick had started again
        self.telemetry.tick_duration.observe(time.monotonic() - started)
        self.last_tick_end = time.monotonic()
        return results

    async def run(self) -> None:
        """Tick every `tick_interval_s` until cancelled; a tick that overruns skips the missed slots."""
        next_at = time.monotonic()
        while True:
            try:
                await self.tick(self.clock())
            except Exception:  # the loop outlives any single tick
                logger.exception("tick failed")
            next_at += self.tick_interval_s
            now = time.monotonic()
            if next_at < now:
                next_at = now + self.tick_interval_s - (now - next_at) % self.tick_interval_s
            await asyncio.sleep(next_at - now)

    def healthy(self, grace_s: float = 60.0) -> bool:
        """True while ticks complete: within three intervals, after a start-up grace."""
        now = time.monotonic()
        if self.last_tick_end is None:
            return now - self.started_at < grace_s + 3 * self.tick_interval_s
        return now - self.last_tick_end < 3 * self.tick_interval_s + grace_s / 4
