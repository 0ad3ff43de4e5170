"""Watch-fed caches of Deployments and Pods, so that a tick reads memory instead of the API.

A tick over N services used to GET each Deployment and LIST each service's pods: 2·N calls every
tick, most of them answering "nothing changed". Serious controllers read from informers instead
(client-go, controller-runtime): one LIST and then one WATCH per kind and scope, the cache kept
current from the event stream. This module is that, small and on plain JSON dicts:

- `Informer` keeps one kind in one scope (a namespace, or all of them). It LISTs (in pages), then
  WATCHes from the list's resourceVersion with bookmarks; ADDED/MODIFIED/DELETED events update
  the cache in order. A watch that ends normally (the server's timeout) is re-opened from the last
  resourceVersion seen; a 410 Gone (that version is compacted away) or a broken connection leads
  to a fresh LIST, which replaces the cache whole so that deletions missed meanwhile disappear.
  It runs in a thread of its own (the API port is synchronous), and readers take a short lock.
- A LIST that keeps failing (or a watch that keeps breaking) is retried with a doubling, capped
  and jittered back-off, and the informer says so: once it has not been following the API for
  `stale_after_s`, it is no longer `fresh`, readers are told "not known" and go to the API
  instead of an arbitrarily old cache. The state is logged once per change (failing, stale,
  current again), not per retry, and `InformerCollector` exports it on the operator's /metrics.
- `WorkloadCache` holds the Deployment and Pod informers the reconciler needs, one pair per scope:
  cluster-wide when the operator watches every namespace, else one pair per watched namespace,
  started the first time a service in that namespace is read (namespace patterns need no
  special case) and stopped when the last service there goes. Until an informer has listed
  once, readers are told "not known" and read the API directly.
- Only what is the operator's is cached: both informers select, on the server, objects carrying
  the `sloscale.dev/service` label (rendered Deployments and their pods carry it; pods of an
  attached Deployment must carry it for their metrics to be attributed), so a cluster's other
  Deployments and pods never reach the operator. Deployments are kept trimmed to what the
  reconciler reads (identity, the template hash, replicas, selector, the containers' names and
  arguments, the rollout counts), pods to what the control loop reads (labels, creation and
  deletion times, the Ready condition, restart counts). What the cache does not hold — an
  attached Deployment without the label, one the operator is about to adopt — is read with a GET.

What the cache does not decide: freshness after the operator's own writes. The reconciler knows
which resourceVersion its own write superseded and reads the API directly while the cache still
shows it (`reconcile.py`), so a decision never sees its previous write undone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sloscale.kube import KubeApi
from sloscale.resource import SERVICE_LABEL

logger = logging.getLogger("sloscale.informers")

Obj = dict[str, Any]
Transform = Callable[[Obj], Obj]
PAGE_SIZE = 500
WATCH_TIMEOUT_S = 300  # the server ends a watch after about this long (jittered); it is re-opened
MIN_WATCH_S = 1.0  # a watch the server ends sooner is re-opened only after a back-off pause
READ_SLACK_S = 30.0  # a watch silent this much longer than its timeout is presumed dead
BACKOFF_S = (0.5, 30.0)  # after a failed LIST or a broken watch: doubling, capped, jittered
STALE_AFTER_S = 30.0  # not following the API this long: readers go to the API instead


def backoff(
    first_s: float, cap_s: float, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    """Pauses between retries: doubling from `first_s` up to `cap_s`, each drawn between half and
    all of that, so that informers (and operator replicas) cut off by one API outage do not all
    list again at the same moment."""
    delay = first_s
    while True:
        yield delay * (0.5 + 0.5 * rng())
        delay = min(delay * 2, cap_s)


class Gone(Exception):
    """The watch's resourceVersion is older than the server keeps: list again."""


class Informer:
    """One kind in one scope, listed once and then kept current by a watch, in its own thread.

    `path` is the collection, e.g. `/apis/apps/v1/deployments` (every namespace) or
    `/api/v1/namespaces/ns/pods`; `label_selector` restricts it on the server, on the LIST and
    the WATCH alike. Objects handed out are shared: callers must not change them.
    """

    def __init__(
        self,
        api: KubeApi,
        path: str,
        *,
        label_selector: str = "",
        transform: Transform | None = None,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        backoff_s: tuple[float, float] = BACKOFF_S,
        stale_after_s: float = STALE_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.path = path
        self.label_selector = label_selector
        self.transform = transform
        self.watch_timeout_s = watch_timeout_s
        self.backoff_s = backoff_s
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.resource_version = ""
        self.lists = 0  # LISTs made: the first, then one per relist
        self.expired = 0  # watches refused with 410 Gone
        self.failures = 0  # failed LISTs and broken watches, each followed by a back-off
        # Since when the informer has not been following the API (None: it is); set on the
        # first failure, cleared by the next successful LIST.
        self.failing_since: float | None = None
        self._stale_logged = False
        self._by_namespace: dict[str, dict[str, Obj]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"informer {path}", daemon=True)

    # -- reading --------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether the cache has been listed at least once (before that it knows nothing)."""
        return self._synced.is_set()

    @property
    def fresh(self) -> bool:
        """Listed, and following the API or failing for less than `stale_after_s`: a cache worth
        reading. A stale one keeps its objects (a recovery needs them no more than a start does)
        but readers are told to go to the API."""
        since = self.failing_since
        return self.synced and (since is None or self.clock() - since < self.stale_after_s)

    def failing_s(self) -> float:
        """How long the informer has not been following the API (0 while it is)."""
        since = self.failing_since
        return 0.0 if since is None else max(0.0, self.clock() - since)

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._by_namespace.get(namespace, {}).get(name)

    def select(self, namespace: str, match_labels: Mapping[str, str]) -> list[Obj]:
        """The objects in `namespace` whose labels include every one of `match_labels`."""
        with self._lock:
            objects = list(self._by_namespace.get(namespace, {}).values())
        wanted = match_labels.items()
        return [o for o in objects if wanted <= (o["metadata"].get("labels") or {}).items()]

    def __len__(self) -> int:
        with self._lock:
            return sum(len(names) for names in self._by_namespace.values())

    # -- running --------------------------------------------------------------------------------

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        # Shutting the watch's socket down wakes the read the thread is blocked in (closing the
        # response would wait for that read's lock instead).
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        pauses = backoff(*self.backoff_s)
        while not self._stopping.is_set():
            try:
                self._list()
                self._recovered()
                while not self._stopping.is_set():
                    opened = time.monotonic()
                    self._watch()  # returns when the server ends the watch: re-open from where it was
                    # Only a watch that lasted resets the back-off: one refused right after
                    # each LIST (say, no RBAC to watch) must not turn into a LIST every second,
                    # nor one the server ends at once into a watch request in a tight loop.
                    if time.monotonic() - opened >= MIN_WATCH_S:
                        pauses = backoff(*self.backoff_s)
                    elif self._stopping.wait(next(pauses)):
                        return
            except Gone:
                self.expired += 1
                logger.info(
                    "%s: resourceVersion %s expired; listing again",
                    self.path,
                    self.resource_version,
                )
                continue
            except Exception as exc:  # noqa: BLE001 - any failure: back off, then list again
                if self._stopping.is_set():
                    return
                self._failed(exc)
                if self._stopping.wait(next(pauses)):
                    return
                self._note_stale()

    def _failed(self, exc: Exception) -> None:
        """Count a failure; log only the first of a run of them (the state change)."""
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = self.clock()
            logger.warning(
                "%s: list/watch failed (%s); retrying with back-off, reads go to the API "
                "if it still fails after %gs",
                self.path,
                exc,
                self.stale_after_s,
            )
        else:
            logger.debug("%s: list/watch failed again: %s", self.path, exc)

    def _note_stale(self) -> None:
        if self.synced and not self.fresh and not self._stale_logged:
            self._stale_logged = True
            logger.warning(
                "%s: not following the API for %.0fs: the cache is stale, reads go to the API",
                self.path,
                self.failing_s(),
            )

    def _recovered(self) -> None:
        if self.failing_since is not None:
            # A cut watch listed again at once is routine; the end of a stale spell is not.
            logger.log(
                logging.WARNING if self._stale_logged else logging.INFO,
                "%s: listed again after %.0fs of failures; the cache is current",
                self.path,
                self.failing_s(),
            )
        self.failing_since, self._stale_logged = None, False

    def _list(self) -> None:
        """A full LIST in pages; the cache is replaced whole, so objects deleted meanwhile go."""
        objects: dict[str, dict[str, Obj]] = {}
        token = ""
        while True:
            query = [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
            if self.label_selector:
                query.append(("labelSelector", self.label_selector))
            page = self.api.request("GET", self.path, query=query)
            for item in page.get("items") or []:
                meta = item["metadata"]
                objects.setdefault(meta.get("namespace", ""), {})[meta["name"]] = self._keep(item)
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
        with self._lock:
            self._by_namespace = objects
            self.resource_version = str((page.get("metadata") or {}).get("resourceVersion", ""))
            self.lists += 1
        self._synced.set()

    def _watch(self) -> None:
        timeout = int(self.watch_timeout_s * random.uniform(1.0, 1.2))  # noqa: S311 - jitter only
        query = [
            ("watch", "true"),
            ("resourceVersion", self.resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout)),
        ]
        if self.label_selector:
            query.append(("labelSelector", self.label_selector))
        try:
            response = self.api.stream(
                "GET", self.path, query=query, read_timeout_s=timeout + READ_SLACK_S
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc.reason)) from exc
            raise
        self._response = response
        try:
            if self._stopping.is_set():  # stop() came before there was a socket to shut down
                return
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stopping.is_set():
                    return
                if line:
                    self._apply(json.loads(line))
        finally:
            self._response = None
            response.release_conn()

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", "410 Gone"))
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        meta = obj.get("metadata") or {}
        with self._lock:
            if kind in ("ADDED", "MODIFIED"):
                self._by_namespace.setdefault(meta.get("namespace", ""), {})[meta["name"]] = (
                    self._keep(obj)
                )
            elif kind == "DELETED":
                self._by_namespace.get(meta.get("namespace", ""), {}).pop(meta["name"], None)
            if meta.get("resourceVersion"):  # BOOKMARK events carry only this
                self.resource_version = str(meta["resourceVersion"])

    def _keep(self, obj: Obj) -> Obj:
        obj.get("metadata", {}).pop("managedFields", None)
        return self.transform(obj) if self.transform is not None else obj


def trim_deployment(deployment: Obj) -> Obj:
    """What the reconciler reads of a Deployment: identity, its labels and the operator's own
    annotations (the template hash), replicas, selector, the pod template's labels and its
    containers' names and arguments (the batch lever), and the rollout's counts."""
    meta = deployment.get("metadata") or {}
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    kept_meta = (
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "labels",
        "ownerReferences",
        "creationTimestamp",
        "deletionTimestamp",
    )
    trimmed_meta = {k: meta[k] for k in kept_meta if k in meta}
    ours = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("sloscale.dev/")
    }
    if ours:
        trimmed_meta["annotations"] = ours
    template = spec.get("template") or {}
    containers = [
        {k: c[k] for k in ("name", "command", "args") if k in c}
        for c in (template.get("spec") or {}).get("containers") or []
    ]
    kept_spec = {k: spec[k] for k in ("replicas", "selector", "paused") if k in spec}
    kept_spec["template"] = {
        "metadata": {"labels": (template.get("metadata") or {}).get("labels") or {}},
        "spec": {"containers": containers},
    }
    counts = (
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    )
    return {
        "metadata": trimmed_meta,
        "spec": kept_spec,
        "status": {k: status[k] for k in counts if k in status},
    }


DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def trim_pod(pod: Obj) -> Obj:
    """What the control loop reads of a pod: identity, labels, times, readiness, restarts and
    when a container last ended, why a container waits (CrashLoopBackOff), and the one
    annotation the operator writes (its deletion cost, so that an unchanged cost is not written
    again)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    kept_meta = (
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "labels",
        "creationTimestamp",
        "deletionTimestamp",
    )
    trimmed = {
        "metadata": {k: meta[k] for k in kept_meta if k in meta},
        "status": {
            "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "Ready"],
            "containerStatuses": [
                _trim_container(c) for c in status.get("containerStatuses") or []
            ],
        },
    }
    cost = (meta.get("annotations") or {}).get(DELETION_COST)
    if cost is not None:
        trimmed["metadata"]["annotations"] = {DELETION_COST: cost}
    return trimmed


def _trim_container(container: Obj) -> Obj:
    kept: Obj = {"name": container.get("name"), "restartCount": container.get("restartCount", 0)}
    waiting = ((container.get("state") or {}).get("waiting") or {}).get("reason")
    if waiting:
        kept["state"] = {"waiting": {"reason": waiting}}
    finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
    if finished:
        kept["lastState"] = {"terminated": {"finishedAt": finished}}
    return kept


class WorkloadCache:
    """Deployments and Pods, one informer of each per scope (all namespaces, or one namespace).

    Both select `sloscale.dev/service` on the server; `pods` answers only for a selector on
    that label (pods selected otherwise may lack it, and only the API knows them all)."""

    def __init__(self, api: KubeApi, *, all_namespaces: bool, **informer: Any) -> None:
        self.api = api
        self.all_namespaces = all_namespaces
        self._informer_args = informer
        self._scopes: dict[str, tuple[Informer, Informer]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _scope(self, namespace: str) -> tuple[Informer, Informer] | None:
        scope = "" if self.all_namespaces else namespace
        with self._lock:
            if self._closed:
                return None
            pair = self._scopes.get(scope)
            if pair is None:
                prefix = f"/namespaces/{scope}" if scope else ""
                args = {"label_selector": SERVICE_LABEL, **self._informer_args}
                pair = (
                    Informer(
                        self.api,
                        f"/apis/apps/v1{prefix}/deployments",
                        transform=trim_deployment,
                        **args,
                    ).start(),
                    Informer(self.api, f"/api/v1{prefix}/pods", transform=trim_pod, **args).start(),
                )
                self._scopes[scope] = pair
            return pair

    def deployment(self, namespace: str, name: str) -> Obj | None:
        """The cached Deployment; None when the cache cannot say (absent or not labelled, not
        listed yet, or stale)."""
        pair = self._scope(namespace)
        if pair is None or not pair[0].fresh:
            return None
        return pair[0].get(namespace, name)

    def pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[Obj] | None:
        """The cached pods matching the labels; None when the cache cannot say (a selector not
        on `sloscale.dev/service`, not listed yet, or stale)."""
        if SERVICE_LABEL not in match_labels:
            return None
        pair = self._scope(namespace)
        if pair is None or not pair[1].fresh:
            return None
        return pair[1].select(namespace, match_labels)

    def informers(self) -> list[Informer]:
        with self._lock:
            return [informer for pair in self._scopes.values() for informer in pair]

    def retain(self, namespaces: Collection[str]) -> list[Informer]:
        """Stop the per-namespace informers of every namespace not in `namespaces` (no service
        left there); returns them. Cluster-wide informers stay until `close`. It does not wait
        for their threads (it may run on the event loop): each ends on its own within moments."""
        if self.all_namespaces:
            return []
        with self._lock:
            gone = [scope for scope in self._scopes if scope not in namespaces]
            stopped = [informer for scope in gone for informer in self._scopes.pop(scope)]
        for informer in stopped:
            informer.stop(timeout_s=0)
        return stopped

    def close(self) -> None:
        with self._lock:
            self._closed = True
            informers = [informer for pair in self._scopes.values() for informer in pair]
        for informer in informers:
            informer.stop()

    def collector(self) -> InformerCollector:
        return InformerCollector(self)


class InformerCollector(Collector):
    """The caches' state on the operator's /metrics, read when scraped."""

    _LABELS = (
        "Labels: resource: deployments or pods; namespace: a watched namespace, or empty when "
        "the operator watches all of them."
    )

    def __init__(self, cache: WorkloadCache) -> None:
        self.cache = cache

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names known up front: `/metrics?name[]=…` (a restricted registry) finds them.
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fresh, failing, size = families = self._families()
        for informer in self.cache.informers():
            parts = informer.path.strip("/").split("/")
            namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else ""
            labels = (parts[-1], namespace)
            fresh.add_metric(labels, 1.0 if informer.fresh else 0.0)
            failing.add_metric(labels, informer.failing_s())
            size.add_metric(labels, float(len(informer)))
        yield from families

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ("resource", "namespace")
        return (
            GaugeMetricFamily(
                "sloscale_informer_fresh",
                "1 while the watch-fed cache is listed and following the API; 0 before its first "
                "list and once it has failed for longer than its staleness bound (reads go to the "
                f"API). {self._LABELS}",
                labels=labels,
            ),
            GaugeMetricFamily(
                "sloscale_informer_failing_seconds",
                "Seconds the cache's list or watch has been failing (0 while it follows the API). "
                f"{self._LABELS}",
                labels=labels,
            ),
            GaugeMetricFamily(
                "sloscale_informer_objects",
                f"Objects held in the cache. {self._LABELS}",
                labels=labels,
            ),
        )
