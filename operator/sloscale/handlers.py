"""The kopf handlers: thin, and one composition root.

- `startup` is the only place that builds things: the Kubernetes API port, the watch-fed cache of
  Deployments and Pods, the Prometheus metrics source, the operator's telemetry server and the
  fleet with its tick loop, all from the
  `RunConfig` that `sloscale run` puts into kopf's memo. `cleanup` takes them down again.
- `login` hands kopf the credentials the API port loaded, so kopf and the reconciler talk to the
  cluster as one identity (and never through the `KUBECONFIG` captured at import).
- `render` (create / update of the spec / resume) renders or repairs an owned workload at once,
  instead of waiting for the next tick.
- `control` is a daemon per InferenceService whose only job is membership: while it runs, the
  fleet's tick loop controls that service. kopf stops it when the resource is deleted (its
  finalizer holds the deletion until then) and when the operator pauses for a peer, so ticks act
  exactly on the services this instance owns. Why a fleet loop and not a timer per resource:
  see `reconcile.py` (one metrics read per tick for all services).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from sloscale.informers import WorkloadCache
from sloscale.kube import KubeApi
from sloscale.metrics_source import PrometheusMetricsSource
from sloscale.reconcile import Fleet, ServiceReconciler
from sloscale.resource import GROUP, PLURAL, VERSION
from sloscale.run import RunConfig
from sloscale.telemetry import Telemetry, TelemetryServer

registry = kopf.OperatorRegistry()
logger = logging.getLogger("sloscale.operator")


@kopf.on.startup(registry=registry)
async def startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    config: RunConfig = memo["config"]
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.enabled = False  # events are the operator's own, on transitions only
    api = KubeApi.connect(config.kubeconfig)
    metrics = PrometheusMetricsSource(
        config.prometheus_url,
        rate_window_s=config.rate_window_s,
        bearer_token_file=config.prometheus_bearer_token_file,
        ca_file=config.prometheus_ca_file,
        verify_tls=not config.prometheus_insecure_skip_verify,
    )
    telemetry = Telemetry()
    cache = WorkloadCache(api, all_namespaces=not config.namespaces)
    telemetry.registry.register(cache.collector())  # whether the caches follow the API
    reconciler = ServiceReconciler(
        api, telemetry=telemetry, cache=cache, status_refresh_s=config.status_refresh_s
    )
    fleet = Fleet(reconciler, metrics, telemetry, config.tick_interval_s)
    server = TelemetryServer(telemetry, fleet.healthy, port=config.metrics_port)
    await server.start()
    logger.info(
        "serving /metrics and /healthz on port %d; ticking every %gs against %s",
        server.port,
        config.tick_interval_s,
        config.prometheus_url,
    )
    memo["api"], memo["metrics"], memo["fleet"], memo["server"] = api, metrics, fleet, server
    memo["cache"] = cache
    memo["loop"] = asyncio.create_task(fleet.run(), name="sloscale tick loop")


@kopf.on.cleanup(registry=registry)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    loop: asyncio.Task[None] | None = memo.get("loop")
    if loop is not None:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    if "server" in memo:
        await memo["server"].stop()
    if "cache" in memo:
        await asyncio.to_thread(memo["cache"].close)
    if "metrics" in memo:
        memo["metrics"].close()
    if "api" in memo:
        memo["api"].close()


@kopf.on.login(registry=registry)
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    api: KubeApi = memo["api"]
    return kopf.ConnectionInfo(**api.connection_info())


@kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
@kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
async def render(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    fleet: Fleet = memo["fleet"]
    await fleet.ensure_workload(body)


@kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=30.0)
async def control(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    fleet: Fleet = memo["fleet"]
    meta = body["metadata"]
    fleet.register(body)
    try:
        await stopped.wait()
    finally:
        fleet.unregister(meta["namespace"], meta["name"])
