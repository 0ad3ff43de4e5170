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
- `WorkloadCache` holds the Deployment and Pod informers the reconciler needs, one pair per scope:
  cluster-wide when the operator watches every namespace, else one pair per watched namespace,
  started the first time a service in that namespace is read (namespace patterns need no
  special case). Until an informer has listed once, readers are told "not known" and read the
  API directly.
- Pods are cached trimmed to what the control loop reads (labels, creation and deletion times,
  the Ready condition, restart counts): a cluster-wide pod cache then costs little memory.

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
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from sloscale.kube import KubeApi

logger = logging.getLogger("sloscale.informers")

Obj = dict[str, Any]
Transform = Callable[[Obj], Obj]
PAGE_SIZE = 500
WATCH_TIMEOUT_S = 300  # the server ends a watch after about this long (jittered); it is re-opened
READ_SLACK_S = 30.0  # a watch silent this much longer than its timeout is presumed dead
BACKOFF_S = (0.5, 10.0)  # after a failed LIST or a broken watch: doubling, capped


class Gone(Exception):
    """The watch's resourceVersion is older than the server keeps: list again."""


class Informer:
    """One kind in one scope, listed once and then kept current by a watch, in its own thread.

    `path` is the collection, e.g. `/apis/apps/v1/deployments` (every namespace) or
    `/api/v1/namespaces/ns/pods`. Objects handed out are shared: callers must not change them.
    """

    def __init__(
        self,
        api: KubeApi,
        path: str,
        *,
        transform: Transform | None = None,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        backoff_s: tuple[float, float] = BACKOFF_S,
    ) -> None:
        self.api = api
        self.path = path
        self.transform = transform
        self.watch_timeout_s = watch_timeout_s
        self.backoff_s = backoff_s
        self.resource_version = ""
        self.lists = 0  # LISTs made: the first, then one per relist
        self.expired = 0  # watches refused with 410 Gone
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
        delay = self.backoff_s[0]
        while not self._stopping.is_set():
            try:
                self._list()
                delay = self.backoff_s[0]
                while not self._stopping.is_set():
                    self._watch()  # returns when the server ends the watch: re-open from where it was
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
                logger.warning(
                    "%s: watch failed (%s); listing again in %.1fs", self.path, exc, delay
                )
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, self.backoff_s[1])

    def _list(self) -> None:
        """A full LIST in pages; the cache is replaced whole, so objects deleted meanwhile go."""
        objects: dict[str, dict[str, Obj]] = {}
        token = ""
        while True:
            query = [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
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


def trim_pod(pod: Obj) -> Obj:
    """What the control loop reads of a pod: identity, labels, times, readiness, restarts."""
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
    return {
        "metadata": {k: meta[k] for k in kept_meta if k in meta},
        "status": {
            "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "Ready"],
            "containerStatuses": [
                {"name": c.get("name"), "restartCount": c.get("restartCount", 0)}
                for c in status.get("containerStatuses") or []
            ],
        },
    }


class WorkloadCache:
    """Deployments and Pods, one informer of each per scope (all namespaces, or one namespace)."""

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
                pair = (
                    Informer(
                        self.api, f"/apis/apps/v1{prefix}/deployments", **self._informer_args
                    ).start(),
                    Informer(
                        self.api, f"/api/v1{prefix}/pods", transform=trim_pod, **self._informer_args
                    ).start(),
                )
                self._scopes[scope] = pair
            return pair

    def deployment(self, namespace: str, name: str) -> Obj | None:
        """The cached Deployment; None when it is not cached (absent, or not listed yet)."""
        pair = self._scope(namespace)
        if pair is None or not pair[0].synced:
            return None
        return pair[0].get(namespace, name)

    def pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[Obj] | None:
        """The cached pods matching the labels; None until the pod cache has listed once."""
        pair = self._scope(namespace)
        if pair is None or not pair[1].synced or not match_labels:
            return None
        return pair[1].select(namespace, match_labels)

    def informers(self) -> list[Informer]:
        with self._lock:
            return [informer for pair in self._scopes.values() for informer in pair]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            informers = [informer for pair in self._scopes.values() for informer in pair]
        for informer in informers:
            informer.stop()
