"""`sloscale run`: start the operator.

Every flag has an environment variable (the Helm chart sets those), and the flags only fill a
`RunConfig`; the clients are built from it in the one composition root, kopf's startup handler
(`handlers.py`). kopf itself runs programmatically: standalone unless `--peering` names a peering
object (then each replica draws a random priority and only the highest acts; see
`peering_priority`), cluster-wide unless `--namespace` lists namespaces. SIGTERM and SIGINT stop
it gracefully (the tick loop is cancelled, the telemetry server closed).

Heavy imports (kopf, the Kubernetes client) happen inside the command, so that `sloscale --help`
stays fast.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from typing import Annotated

import typer

from sloscale.resource import SpecError, parse_duration

DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring:9090"


@dataclass(frozen=True)
class RunConfig:
    namespaces: tuple[str, ...]  # empty: all namespaces
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    prometheus_bearer_token_file: str | None = None
    prometheus_ca_file: str | None = None
    prometheus_insecure_skip_verify: bool = False
    tick_interval_s: float = 15.0
    rate_window_s: float = 60.0
    status_refresh_s: float = 60.0
    metrics_port: int = 8080
    peering: str | None = None  # None: standalone
    log_level: str = "info"
    kubeconfig: str | None = None  # None: in-cluster service account


def split_namespaces(values: list[str] | None) -> tuple[str, ...]:
    """`--namespace a --namespace b`, or `SLOSCALE_NAMESPACES=a,b`: both spellings, deduplicated."""
    seen: list[str] = []
    for value in values or []:
        for part in value.split(","):
            if part.strip() and part.strip() not in seen:
                seen.append(part.strip())
    return tuple(seen)


def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            envvar="SLOSCALE_NAMESPACES",
            help="Namespace to watch (repeatable; the env var takes a comma-separated list). None: all.",
        ),
    ] = None,
    prometheus_url: Annotated[
        str,
        typer.Option(envvar="SLOSCALE_PROMETHEUS_URL", help="Prometheus holding the vLLM metrics."),
    ] = DEFAULT_PROMETHEUS_URL,
    prometheus_bearer_token_file: Annotated[
        str | None,
        typer.Option(
            envvar="SLOSCALE_PROMETHEUS_BEARER_TOKEN_FILE",
            help="Bearer token for Prometheus, re-read each tick.",
        ),
    ] = None,
    prometheus_ca_file: Annotated[
        str | None,
        typer.Option(
            envvar="SLOSCALE_PROMETHEUS_CA_FILE", help="CA bundle to verify Prometheus' TLS with."
        ),
    ] = None,
    prometheus_insecure_skip_verify: Annotated[
        bool,
        typer.Option(
            "--prometheus-insecure-skip-verify",
            envvar="SLOSCALE_PROMETHEUS_INSECURE_SKIP_VERIFY",
            help="Do not verify Prometheus' TLS certificate.",
        ),
    ] = False,
    tick_interval: Annotated[
        str,
        typer.Option(
            envvar="SLOSCALE_TICK_INTERVAL", help="How often every service is reconciled, e.g. 15s."
        ),
    ] = "15s",
    rate_window: Annotated[
        str,
        typer.Option(
            envvar="SLOSCALE_RATE_WINDOW",
            help="The range of rate() over vLLM's counters and histograms, e.g. 1m: at least four "
            "of Prometheus' scrape intervals. Shorter reacts sooner and reads noisier percentiles.",
        ),
    ] = "1m",
    status_refresh: Annotated[
        str,
        typer.Option(
            envvar="SLOSCALE_STATUS_REFRESH",
            help="A status that changed only in its snapshot's time is rewritten this often, e.g. 1m "
            "(any other change is written at once).",
        ),
    ] = "1m",
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="SLOSCALE_METRICS_PORT", help="Port of the operator's own /metrics and /healthz."
        ),
    ] = 8080,
    peering: Annotated[
        str | None,
        typer.Option(
            envvar="SLOSCALE_PEERING",
            help="kopf peering object for several replicas, one active. Unset: standalone.",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option(envvar="SLOSCALE_LOG_LEVEL", help="debug, info, warning or error.")
    ] = "info",
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            envvar="KUBECONFIG", help="Kubeconfig file. Unset: the pod's service account."
        ),
    ] = None,
) -> None:
    """Run the operator: hold every InferenceService's objective with replicas and batch size."""
    interval = duration_flag(tick_interval, "--tick-interval", positive=True)
    window = duration_flag(rate_window, "--rate-window", positive=True)
    refresh = duration_flag(status_refresh, "--status-refresh")
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter(f"{log_level!r} is not a log level", param_hint="--log-level")
    if kubeconfig is None and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise typer.BadParameter(
            "not running in a cluster: pass --kubeconfig (or set KUBECONFIG)",
            param_hint="--kubeconfig",
        )
    missing = [
        path for path in (kubeconfig or "").split(os.pathsep) if path and not os.path.isfile(path)
    ]
    if missing:
        raise typer.BadParameter(f"no such file: {', '.join(missing)}", param_hint="--kubeconfig")
    config = RunConfig(
        namespaces=split_namespaces(namespace),
        prometheus_url=prometheus_url,
        prometheus_bearer_token_file=prometheus_bearer_token_file,
        prometheus_ca_file=prometheus_ca_file,
        prometheus_insecure_skip_verify=prometheus_insecure_skip_verify,
        tick_interval_s=interval,
        rate_window_s=window,
        status_refresh_s=refresh,
        metrics_port=metrics_port,
        peering=peering,
        log_level=log_level,
        kubeconfig=kubeconfig,
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_operator(config)


def duration_flag(value: str, flag: str, *, positive: bool = False) -> float:
    """A flag's duration in seconds, or the usage error that names the flag."""
    try:
        seconds = parse_duration(value)
    except SpecError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from exc
    if positive and seconds <= 0:
        raise typer.BadParameter("must be positive", param_hint=flag)
    return seconds


def run_operator(config: RunConfig) -> None:
    """Run kopf with the operator's handlers until SIGTERM/SIGINT."""
    import kopf

    from sloscale.handlers import registry

    kopf.run(
        registry=registry,
        memo=kopf.Memo(config=config),
        standalone=config.peering is None,
        peering_name=config.peering,
        priority=peering_priority() if config.peering else None,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
    )


def peering_priority() -> int:
    """A priority of this replica's own. kopf pauses every operator that sees a peer of higher *or
    equal* priority, so replicas of one Deployment (same flags) need distinct ones: with random
    priorities exactly one is active, and when it stops the next highest takes over."""
    return random.SystemRandom().randrange(1, 2**31)
