"""The operator's own metrics (`/metrics`) and liveness (`/healthz`) on `--metrics-port`.

One prefix (`sloscale_`), base units, and bounded labels: `namespace` and `service` take one value
per InferenceService (series are removed when the service goes away), `action` one of the
control law's five actions. Each metric's help text lists its labels' allowed values.

`/metrics?name[]=sloscale_tick_duration_seconds_count` serves only the series named (the official
client's convention), for a caller that polls one number without paying for every service's.

`/healthz` answers 200 while the tick loop is alive — it completed a tick within three tick
intervals (plus a start-up grace) — and 503 otherwise, so that Kubernetes restarts an operator
whose loop is stuck rather than one that is merely busy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sloscale.scaling.decision import Action, Decision
from sloscale.scaling.policy import Policy

_SERVICE = "namespace, service: the InferenceService"
_ACTIONS = ", ".join(a.value for a in Action)
SERVICE_LABELS = ("namespace", "service")


class Telemetry:
    """The metric families, in a registry of their own (so tests can run several operators)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tick_duration = Histogram(
            "sloscale_tick_duration_seconds",
            "Time one tick took: one metrics read for all services, then decide, actuate and write "
            "status for each. No labels.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.reconcile_errors = Counter(
            "sloscale_reconcile_errors_total",
            f"Service reconciles that failed on an unexpected error (the service holds). Labels: {_SERVICE}.",
            SERVICE_LABELS,
            registry=r,
        )
        self.decisions = Counter(
            "sloscale_decisions_total",
            f"Decisions made, by action (applied in Enforce mode, reported in Advisory). Labels: {_SERVICE}; "
            f"action: {_ACTIONS}.",
            (*SERVICE_LABELS, "action"),
            registry=r,
        )
        gauges = {
            "replicas_desired": "Replicas the last decision chose.",
            "replicas_current": "Replicas the workload is set to.",
            "replicas_ready": "Replicas ready to serve.",
            "batch_max_num_seqs": "Per-pod --max-num-seqs in the workload's pod template.",
            "objective_ratio": "The objective's latency percentile (for throughput objectives, its latency bound) "
            "over its target: above 1 misses.",
            "attainment_ratio": "Share of evaluation windows so far that met the target (0..1).",
            "error_budget_remaining_ratio": "Share of the error budget not yet spent (0..1).",
            "metrics_available": "1 when the last Prometheus read gave a usable snapshot, else 0.",
            "objective_met": "1 when the last evaluation window met the target, 0 when it missed.",
            "infeasible": "1 when the objective cannot be met within the replica bounds, else 0.",
            "scaling_limited": "1 when a bound or rate limit held the recommendation back, else 0.",
        }
        self.gauges = {
            name: Gauge(
                f"sloscale_{name}", f"{text} Labels: {_SERVICE}.", SERVICE_LABELS, registry=r
            )
            for name, text in gauges.items()
        }

    def record(
        self,
        namespace: str,
        service: str,
        decision: Decision,
        policy: Policy,
        *,
        current: int,
        ready: int,
    ) -> None:
        """One service's tick: the decision and where the workload stands."""
        labels = (namespace, service)
        self.decisions.labels(*labels, decision.action.value).inc()
        g = self.gauges
        g["replicas_desired"].labels(*labels).set(decision.replicas)
        g["replicas_current"].labels(*labels).set(current)
        g["replicas_ready"].labels(*labels).set(ready)
        if decision.max_num_seqs is not None:
            g["batch_max_num_seqs"].labels(*labels).set(decision.max_num_seqs)
        report = decision.objective
        if report.observed_s is not None:
            g["objective_ratio"].labels(*labels).set(
                report.observed_s / policy.objective.latency.target_s
            )
        if report.attainment is not None:
            g["attainment_ratio"].labels(*labels).set(report.attainment)
        if report.error_budget_remaining is not None:
            g["error_budget_remaining_ratio"].labels(*labels).set(report.error_budget_remaining)
        if report.met is not None:
            g["objective_met"].labels(*labels).set(1 if report.met else 0)
        g["metrics_available"].labels(*labels).set(1 if decision.metrics_available else 0)
        g["infeasible"].labels(*labels).set(1 if decision.infeasible else 0)
        g["scaling_limited"].labels(*labels).set(1 if decision.scaling_limited else 0)

    def forget_gauges(self, namespace: str, service: str) -> None:
        """Drop a service's readings while it is not evaluated (its counters keep counting)."""
        for gauge in self.gauges.values():
            with contextlib.suppress(KeyError):  # never set for this service
                gauge.remove(namespace, service)

    def forget(self, namespace: str, service: str) -> None:
        """Drop a deleted service's series, so label values stay bounded by the live services."""
        labels = (namespace, service)
        series: list[tuple[Gauge | Counter, tuple[str, ...]]] = [
            (g, labels) for g in self.gauges.values()
        ]
        series += [(self.decisions, (*labels, action.value)) for action in Action]
        series.append((self.reconcile_errors, labels))
        for family, values in series:
            with contextlib.suppress(KeyError):  # never set for this service
                family.remove(*values)


def make_app(telemetry: Telemetry, healthy: Callable[[], bool]) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        # `name[]=` keeps only those series, as the official client's exposition does. Rendering
        # a thousand services' series takes a while: it runs off the event loop kopf runs on.
        names = request.query.getall("name[]", [])
        registry = telemetry.registry.restricted_registry(names) if names else telemetry.registry
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="the tick loop has not completed a tick recently\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


class TelemetryServer:
    """Serves `make_app` on a TCP port (0: any free port; `port` tells which after `start`)."""

    def __init__(
        self, telemetry: Telemetry, healthy: Callable[[], bool], *, host: str = "0.0.0.0", port: int
    ) -> None:
        self._runner = web.AppRunner(make_app(telemetry, healthy), access_log=None)
        self._host = host
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port)
        await site.start()
        server = site._server
        if server is not None and self.port == 0:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        await self._runner.cleanup()
