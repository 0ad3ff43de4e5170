"""The sandbox's node: a kubelet, a Deployment controller and Service plumbing in one process.

There is no kube-controller-manager and no kubelet on the machines the sandbox runs on, so this
stand-in does their jobs for Deployments of vLLM, talking to the API emulator only through its HTTP
API (`KubeClient`, built from a kubeconfig), as the real components would:

- **Deployment controller** (`deployments.plan`): creates and deletes Pods so each Deployment has
  its replicas from its current template, rolling updates within maxSurge/maxUnavailable, victims
  ranked by readiness and `controller.kubernetes.io/pod-deletion-cost`; writes the Deployment's
  status (replicas, updatedReplicas, readyReplicas, availableReplicas, observedGeneration,
  Available and Progressing conditions).
- **kubelet**: runs every Pod bound to its node as an emulated vLLM process
  (`python -m sloscale.sandbox.vllm_emulator` with the container's `args` unchanged, then
  `--host <pod IP>` and the sandbox's `--speedup`, `--startup-delay` (the cold start) and
  `--shutdown-grace`) — or, when the sandbox runs real engines (`KubeletConfig.real_engine`) and
  the container's image is vLLM's OpenAI server, as the real vLLM CPU engine with the container's
  args (`real_vllm.PodEngine`: the model mapped to the local tiny one), in a process group of its
  own, SIGTERM to its main process and the rest of the group killed once it exits, as a container
  runtime does; gives each pod its own loopback IP so every pod listens on the port its
  template names; probes readiness with the container's HTTP readiness probe; restarts a process
  that dies (restartCount); writes the Pod's phase, IP, conditions and container status.
- **graceful deletion**: the API emulator deletes a Pod at once unless it has finalizers, so the
  stand-in puts its own finalizer on the pods it creates. A deleted Pod then stays (with a
  deletionTimestamp): it leaves its Services' routers at once, gets SIGTERM `ENDPOINT_DRAIN_S`
  later (what a preStop sleep buys on a cluster), stops admitting and drains its requests; the
  finalizer comes off when the process has exited, or after SIGKILL at
  `terminationGracePeriodSeconds`.
- **Services**: an Endpoints object per Service with a selector (ready pods as addresses, others
  as notReadyAddresses) and a `Router` per Service on a loopback port that spreads requests over
  the ready pods (see `router`).
- **Prometheus targets**: every running pod with the `sloscale.dev/service` label becomes a
  file_sd target labelled namespace, pod and sloscale_service, through the callback given (the
  sandbox passes `PrometheusServer.set_targets`).

The loop is level-triggered: watches on Deployments, Pods and Services only wake it; each pass
re-reads the three collections and converges towards them, so a missed or repeated event does no
harm. Probes run every `probe_period_s` real seconds while pods start, and at `idle_period_s`
otherwise.

Not modelled: ReplicaSet objects (pods belong to the Deployment directly; `kubectl rollout
status` works), preStop hooks (the routers drop a terminating pod at once instead), more than
one container per pod (the first is run), and scheduling (pods are created bound to this node).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from sloscale.resource import SERVICE_LABEL
from sloscale.sandbox import deployments
from sloscale.sandbox.deployments import TEMPLATE_HASH_LABEL, deleting, is_ready
from sloscale.sandbox.kube_client import ApiError, KubeClient
from sloscale.sandbox.prometheus import Target
from sloscale.sandbox.real_vllm import PodEngine, is_vllm_server_image
from sloscale.sandbox.router import Router

JSON = dict[str, Any]
NODE_NAME = "sandbox-node"
FINALIZER = "sandbox.sloscale.dev/drain"
DEFAULT_PORT = 8000  # vLLM's
ENDPOINT_DRAIN_S = 0.2  # between leaving the routers and SIGTERM: requests already routed connect
MAX_BACKOFF_S = 30.0  # between restarts of a crashing container, as the kubelet's CrashLoopBackOff
log = logging.getLogger("sloscale.sandbox.kubelet")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _die_with_parent() -> None:
    """In the child before exec: be killed if the stand-in dies, so no pod outlives the sandbox."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _pod_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


def _deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def _key(obj: JSON) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class IpAllocator:
    """Loopback addresses for pods, one each, so every pod binds the port its template names.

    127.0.0.0/8 is all loopback on Linux. A random /16 inside it keeps concurrent sandboxes apart;
    an address is used only if the pod's port is free on it.
    """

    def __init__(self) -> None:
        self._prefix = f"127.{random.randint(64, 250)}"
        self._next = 0
        self._used: set[str] = set()

    def allocate(self, port: int) -> str:
        for _ in range(65_000):
            self._next = self._next % 65_000 + 1
            ip = f"{self._prefix}.{self._next // 250}.{self._next % 250 + 1}"
            if ip in self._used:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((ip, port))
                except OSError:
                    continue
            self._used.add(ip)
            return ip
        raise RuntimeError("no free loopback address for a pod")

    def release(self, ip: str) -> None:
        self._used.discard(ip)


@dataclass
class PodProcess:
    """A pod's container as the kubelet runs it."""

    namespace: str
    name: str
    ip: str
    port: int
    health_path: str | None
    grace_s: float
    argv: list[str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    started_at: str = ""
    restarts: int = 0
    ready: bool = False
    ready_since: str = ""  # when Ready last changed (the condition's lastTransitionTime)
    failure_threshold: int = 3  # the readiness probe's failureThreshold
    probe_failures: int = 0  # consecutive failed probes while ready
    deleting_since: float | None = None  # monotonic time its deletion was seen
    terminate_at: float | None = None  # monotonic time SIGTERM was sent
    last_exit: int | None = None
    last_exit_at: str | None = None  # RFC 3339, as the kubelet's lastState.terminated.finishedAt
    restart_at: float | None = None  # monotonic time of the next restart after a crash
    last_status: JSON = field(default_factory=dict)  # what was last written to the API
    engine: str = "emulated"  # or "vllm": the real engine, in a process group of its own
    env: dict[str, str] | None = None  # None: the kubelet's own

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def own_group(self) -> bool:
        # vLLM runs its engine core and worker as children: the pod is their whole group.
        return self.engine == "vllm"

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env=self.env,
                start_new_session=self.own_group,
                preexec_fn=_die_with_parent,
            )
        self.started_at = now_rfc3339()
        self.set_unready()
        self.probe_failures = 0

    def set_unready(self) -> None:
        """Ready goes False; its transition time moves only if it was True (as the kubelet's)."""
        if self.ready:
            self.ready_since = now_rfc3339()
        self.ready = False

    def terminate(self) -> None:
        """SIGTERM to the main process only, as the kubelet does: it drains, then stops its own."""
        if self.terminate_at is None and self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
        self.terminate_at = self.terminate_at or time.monotonic()
        self.set_unready()

    def kill(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.kill()
        self.reap()

    def reap(self) -> None:
        """Once the main process is gone, nothing else of the pod may run (the runtime tears the
        container down): SIGKILL to what is left of its group."""
        if self.own_group and self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def probe(self, session: aiohttp.ClientSession) -> bool:
        """The readiness probe: HTTP 2xx/3xx on the probe path (no probe: ready once running)."""
        if not self.alive:
            return False
        if self.health_path is None:
            return True
        try:
            async with session.get(f"http://{self.ip}:{self.port}{self.health_path}") as resp:
                return 200 <= resp.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False


@dataclass(frozen=True)
class KubeletConfig:
    kubeconfig: Path
    workdir: Path  # pod logs go under workdir/pods
    speedup: float = 1.0  # passed to every pod (model seconds per real second)
    cold_start_s: float = 20.0  # model seconds from process start to ready (the model load)
    gpu_profile: str = "H100"  # the emulated GPU (`vllm_emulator --gpu-profile`)
    probe_period_s: float = 0.25
    idle_period_s: float = 1.0
    stop_grace_s: float = 10.0  # when the sandbox stops: drain budget for all pods together
    # Run pods of vLLM's server image as the real CPU engine (None: every pod is emulated).
    real_engine: PodEngine | None = None


class Kubelet:
    """Runs the control loops of the module docstring until `stop()`."""

    def __init__(
        self,
        config: KubeletConfig,
        on_targets: Callable[[list[Target]], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.on_targets = on_targets
        self.on_change = on_change
        self.pods: dict[str, PodProcess] = {}  # by pod uid
        self.routers: dict[str, Router] = {}  # by "namespace/service"
        self._ips = IpAllocator()
        self._orphans: list[PodProcess] = []  # deleted without a drain; stopping on their own
        self._wake = asyncio.Event()
        self._targets: list[Target] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: KubeClient | None = None
        self._probe_session: aiohttp.ClientSession | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        (self.config.workdir / "pods").mkdir(parents=True, exist_ok=True)
        self._client = KubeClient.from_kubeconfig(self.config.kubeconfig)
        self._probe_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        for path in ("/apis/apps/v1/deployments", "/api/v1/pods", "/api/v1/services"):
            self._tasks.append(asyncio.create_task(self._watch(path)))
        self._tasks.append(asyncio.create_task(self._loop()))

    async def stop(self) -> None:
        """Stop the loops, drain every pod within `stop_grace_s`, kill what is left."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        every = [*self.pods.values(), *self._orphans]
        for pod in every:
            pod.terminate()
        deadline = time.monotonic() + self.config.stop_grace_s
        for pod in every:
            if pod.process is not None:
                try:
                    await asyncio.wait_for(pod.process.wait(), max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    pod.kill()
                    await pod.process.wait()
                pod.reap()
        for router in self.routers.values():
            await router.stop()
        if self._probe_session is not None:
            await self._probe_session.close()
        if self._client is not None:
            await self._client.close()

    @property
    def api(self) -> KubeClient:
        assert self._client is not None, "start() first"
        return self._client

    async def _watch(self, path: str) -> None:
        async for _event in self.api.watch(path):
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                busy = await self.sync()
            except (ApiError, aiohttp.ClientError, TimeoutError) as err:
                log.warning("sync failed, retrying: %s", err)
                busy = True
            except Exception:  # noqa: BLE001 - a controller outlives one bad pass
                log.exception("sync failed, retrying")
                busy = True
            period = self.config.probe_period_s if busy else self.config.idle_period_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), period)

    # -- one pass --------------------------------------------------------------------------------

    async def sync(self) -> bool:
        """One pass over everything; True while something is in motion (start, drain, rollout)."""
        deployment_list = await self.api.list("/apis/apps/v1/deployments")
        pods = await self.api.list("/api/v1/pods")
        busy = False
        for deployment in deployment_list:
            if not deleting(deployment):
                busy |= await self._sync_deployment(deployment, pods)
        busy |= await self._sync_pods(pods)
        services = await self.api.list("/api/v1/services")
        pods = await self.api.list("/api/v1/pods")  # with the statuses just written
        await self._sync_services(services, pods)
        self._sync_targets(pods)
        if self.on_change is not None:
            self.on_change()
        return busy

    async def _sync_deployment(self, deployment: JSON, pods: list[JSON]) -> bool:
        uid = deployment["metadata"]["uid"]
        owned = [
            p
            for p in pods
            if any(o.get("uid") == uid and o.get("controller") for o in p["metadata"].get("ownerReferences") or [])
        ]
        step = deployments.plan(deployment, owned)
        for _ in range(step.create):
            await self._create_pod(deployment)
        for victim in step.delete:
            log.info("deleting pod %s", _key(victim))
            await self.api.delete(_pod_path(victim["metadata"]["namespace"], victim["metadata"]["name"]))
        status = deployments.deployment_status(deployment, owned, now_rfc3339())
        if status != deployment.get("status"):
            ns, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
            await self.api.merge_patch(_deployment_path(ns, name) + "/status", {"status": status})
        rolling = status["updatedReplicas"] != status["replicas"] or status["readyReplicas"] != status["replicas"]
        return bool(step.create or step.delete or rolling or any(deleting(p) for p in owned))

    async def _create_pod(self, deployment: JSON) -> None:
        meta, template = deployment["metadata"], deployment["spec"]["template"]
        digest = deployments.template_hash(deployment)
        template_meta = template.get("metadata") or {}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-{digest}-",
                "namespace": meta["namespace"],
                "labels": {**(template_meta.get("labels") or {}), TEMPLATE_HASH_LABEL: digest},
                "annotations": dict(template_meta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
                "finalizers": [FINALIZER],
            },
            "spec": {**template["spec"], "nodeName": NODE_NAME},
        }
        created = await self.api.create(_pod_path(meta["namespace"]), pod)
        log.info("created pod %s", _key(created))

    # -- the kubelet -----------------------------------------------------------------------------

    def _process_for(self, pod: JSON) -> PodProcess:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        args = [str(a) for a in container.get("args") or []]
        port = _listen_port(container)
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        health_path = str(probe.get("path", "/")) if probe else None
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        ip = self._ips.allocate(port)
        log_path = self.config.workdir / "pods" / f"{meta['namespace']}.{meta['name']}.log"
        real = self.config.real_engine
        if real is not None and is_vllm_server_image(str(container.get("image", ""))):
            literal_env = {
                str(e["name"]): str(e["value"]) for e in container.get("env") or [] if "value" in e
            }
            proc = PodProcess(
                meta["namespace"], meta["name"], ip, port, health_path, grace,
                real.argv(args, ip), log_path, engine="vllm",
                env=real.env(self.config.workdir / "vllm-cache", literal_env),
            )  # fmt: skip
        else:
            argv = [
                sys.executable, "-m", "sloscale.sandbox.vllm_emulator", *args,
                "--host", ip,
                "--speedup", f"{self.config.speedup:g}",
                "--startup-delay", f"{self.config.cold_start_s:g}",
                "--gpu-profile", self.config.gpu_profile,
                "--shutdown-grace", f"{max(0.0, grace - 1):g}",
            ]  # fmt: skip
            proc = PodProcess(meta["namespace"], meta["name"], ip, port, health_path, grace, argv, log_path)
        proc.failure_threshold = max(1, int((container.get("readinessProbe") or {}).get("failureThreshold", 3)))
        return proc

    async def _sync_pods(self, pods: list[JSON]) -> bool:
        assert self._probe_session is not None
        busy = False
        seen: set[str] = set()
        mine = [p for p in pods if p["spec"].get("nodeName") == NODE_NAME]
        for pod in mine:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            proc = self.pods.get(uid)
            if deleting(pod):
                busy = True
                await self._sync_terminating(pod, proc)
                continue
            if proc is None:
                proc = self.pods[uid] = self._process_for(pod)
                await proc.start()
                log.info("started pod %s at %s:%d", _key(pod), proc.ip, proc.port)
            elif not proc.alive and not self._stopping:
                busy = True
                assert proc.process is not None
                if proc.restart_at is None:
                    proc.reap()
                    proc.last_exit = proc.process.returncode
                    proc.last_exit_at = now_rfc3339()
                    proc.restart_at = time.monotonic() + min(MAX_BACKOFF_S, 2.0**proc.restarts)
                    log.warning("pod %s exited with %s; restarting", _key(pod), proc.last_exit)
                if time.monotonic() >= proc.restart_at:
                    proc.restarts += 1
                    proc.restart_at = None
                    await proc.start()
        live = [p["metadata"]["uid"] for p in mine if not deleting(p) and p["metadata"]["uid"] in self.pods]
        probes = {uid: self.pods[uid].probe(self._probe_session) for uid in live}
        results = dict(zip(probes, await asyncio.gather(*probes.values()), strict=True))
        for pod in mine:
            uid = pod["metadata"]["uid"]
            proc = self.pods.get(uid)
            if proc is None or deleting(pod):
                continue
            ready = results.get(uid, False)
            # As the kubelet: a ready pod turns unready after failureThreshold failed probes in a
            # row (a busy machine may miss one), at once if its process is gone.
            proc.probe_failures = 0 if ready else proc.probe_failures + 1
            if proc.ready and not ready and proc.alive and proc.probe_failures < proc.failure_threshold:
                ready = True
            if ready != proc.ready:
                proc.ready = ready
                proc.ready_since = now_rfc3339()
                log.info("pod %s %s", _key(pod), "ready" if ready else "not ready")
            busy |= not ready
            await self._write_pod_status(pod, proc)
        for uid in [u for u in self.pods if u not in seen]:
            # Gone from the API without passing through the drain (forced deletion): stop it.
            proc = self.pods.pop(uid)
            proc.terminate()
            self._ips.release(proc.ip)
            self._orphans.append(proc)
        return busy

    async def _sync_terminating(self, pod: JSON, proc: PodProcess | None) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if proc is not None and proc.alive:
            if proc.deleting_since is None:
                # Out of the Service first, as endpoints would propagate before a preStop hook ends;
                # SIGTERM follows on a later pass, once no new request can be on its way to it.
                log.info("draining pod %s", _key(pod))
                proc.deleting_since = time.monotonic()
                proc.set_unready()
                for key, router in self.routers.items():
                    if key.startswith(ns + "/"):
                        router.drop(name)
                await self._write_pod_status(pod, proc)
            elif proc.terminate_at is None:
                if time.monotonic() - proc.deleting_since >= ENDPOINT_DRAIN_S:
                    proc.terminate()
            elif time.monotonic() - proc.terminate_at > proc.grace_s:
                log.warning("pod %s did not drain in %gs; killing it", _key(pod), proc.grace_s)
                proc.kill()
            return
        if proc is not None:
            proc.reap()
            self.pods.pop(pod["metadata"]["uid"], None)
            self._ips.release(proc.ip)
        finalizers = [f for f in pod["metadata"].get("finalizers") or [] if f != FINALIZER]
        if FINALIZER in (pod["metadata"].get("finalizers") or []):
            with contextlib.suppress(ApiError):  # already gone
                await self.api.merge_patch(_pod_path(ns, name), {"metadata": {"finalizers": finalizers or None}})
            log.info("pod %s stopped", _key(pod))

    async def _write_pod_status(self, pod: JSON, proc: PodProcess) -> None:
        created = pod["metadata"].get("creationTimestamp") or proc.started_at
        ready = "True" if proc.ready and proc.deleting_since is None else "False"
        since = proc.ready_since or created  # never ready: unready since the pod was created
        container = pod["spec"]["containers"][0]
        state: JSON = {"running": {"startedAt": proc.started_at}}
        if proc.restart_at is not None:  # exited, waiting out the back-off as the kubelet does
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off restarting failed container {container['name']}"}}
        container_status: JSON = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "containerID": f"sandbox://{proc.process.pid if proc.process else 0}",
            "ready": ready == "True",
            "started": proc.alive,
            "restartCount": proc.restarts,
            "state": state,
        }
        if proc.last_exit is not None:
            terminated = {"exitCode": proc.last_exit, "reason": "Error", "finishedAt": proc.last_exit_at}
            container_status["lastState"] = {"terminated": terminated}
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": proc.ip,
            "podIPs": [{"ip": proc.ip}],
            "startTime": created,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": created},
                {"type": "Initialized", "status": "True", "lastTransitionTime": created},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": since},
                {"type": "Ready", "status": ready, "lastTransitionTime": since},
            ],
            "containerStatuses": [container_status],
        }
        if status != proc.last_status:
            await self.api.merge_patch(
                _pod_path(proc.namespace, proc.name) + "/status", {"status": status}
            )
            proc.last_status = status

    # -- services and targets --------------------------------------------------------------------

    async def _sync_services(self, services: list[JSON], pods: list[JSON]) -> None:
        wanted: set[str] = set()
        for service in services:
            selector = service["spec"].get("selector") or {}
            if not selector or deleting(service):
                continue
            key = _key(service)
            wanted.add(key)
            ns = service["metadata"]["namespace"]
            members = [
                p
                for p in pods
                if p["metadata"].get("namespace") == ns
                and _selects(selector, p["metadata"].get("labels") or {})
                and (p.get("status") or {}).get("podIP")
            ]
            ports = service["spec"].get("ports") or []
            await self._write_endpoints(service, members, ports)
            router = self.routers.get(key)
            if router is None:
                router = self.routers[key] = Router(key)
                await router.start()
                log.info("service %s routed at %s", key, router.url)
            first = ports[0] if ports else {}
            router.set_backends(
                {
                    p["metadata"]["name"]: f"{p['status']['podIP']}:{_target_port(first, p)}"
                    for p in members
                    if is_ready(p)
                }
            )
        for key in [k for k in self.routers if k not in wanted]:
            await self.routers.pop(key).stop()

    async def _write_endpoints(self, service: JSON, members: list[JSON], ports: list[JSON]) -> None:
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]

        def address(pod: JSON) -> JSON:
            return {
                "ip": pod["status"]["podIP"],
                "nodeName": NODE_NAME,
                "targetRef": {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
            }

        ready = [address(p) for p in members if is_ready(p)]
        unready = [address(p) for p in members if not is_ready(p)]
        subset: JSON = {}
        if ready:
            subset["addresses"] = ready
        if unready:
            subset["notReadyAddresses"] = unready
        if subset:
            subset["ports"] = [
                {"name": p.get("name", ""), "port": _target_port(p, members[0]), "protocol": p.get("protocol", "TCP")}
                for p in ports
            ]
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(service["metadata"].get("labels") or {}),
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Service", "name": name, "uid": service["metadata"]["uid"]}
                ],
            },
            "subsets": [subset] if subset else [],
        }
        path = f"/api/v1/namespaces/{ns}/endpoints"
        try:
            current = await self.api.request("GET", f"{path}/{name}")
        except ApiError as err:
            if err.status != 404:
                raise
            await self.api.create(path, body)
            return
        if (current.get("subsets") or []) != body["subsets"]:
            await self.api.merge_patch(f"{path}/{name}", {"subsets": body["subsets"]})

    def _sync_targets(self, pods: list[JSON]) -> None:
        targets: list[Target] = []
        for pod in pods:
            proc = self.pods.get(pod["metadata"]["uid"])
            service = (pod["metadata"].get("labels") or {}).get(SERVICE_LABEL)
            if proc is None or not proc.alive or not service:
                continue
            annotations = pod["metadata"].get("annotations") or {}
            port = int(annotations.get("prometheus.io/port", proc.port))
            targets.append(
                Target.pod(f"{proc.ip}:{port}", namespace=proc.namespace, pod=proc.name, service=service)
            )
        targets.sort(key=lambda t: t.address)
        if targets != self._targets and self.on_targets is not None:
            self.on_targets(targets)
        self._targets = targets

    # -- what the sandbox records ----------------------------------------------------------------

    def snapshot(self) -> JSON:
        """Process ids, addresses and router URLs, for the sandbox's state file."""
        return {
            "pods": {
                f"{p.namespace}/{p.name}": {
                    "pid": p.process.pid if p.process else None,
                    "address": f"{p.ip}:{p.port}",
                    "engine": p.engine,
                }
                for p in self.pods.values()
            },
            "services": {key: router.url for key, router in self.routers.items()},
        }


def _listen_port(container: JSON) -> int:
    """The port the emulated server will bind: its `--port` argument, else the container's first
    port, else vLLM's default."""
    args = [str(a) for a in container.get("args") or []]
    for i, arg in enumerate(args):
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
        if arg == "--port" and i + 1 < len(args):
            return int(args[i + 1])
    ports = container.get("ports") or []
    return int(ports[0]["containerPort"]) if ports else DEFAULT_PORT


def _target_port(service_port: JSON, pod: JSON) -> int:
    """A Service port's targetPort on `pod`: a number, or a container port's name."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return int(service_port.get("port", 80))
