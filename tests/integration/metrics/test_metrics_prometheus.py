"""PrometheusMetricsSource against a real Prometheus scraping vLLM-shaped exporters.

The exporters record requests at a steady pace (`PacedLoad`), so every rate the source reports
has a known true value; tolerances are generous because `rate()` extrapolates over a short window
scraped every second.

The fleet is one module-scoped set-up because a new Prometheus target takes 5–6 s to be scraped
for the first time: two Prometheus servers (one renaming `vllm_` back to `vllm:` as the sandbox
does, one storing names as exposed) scrape exporters for several services, started together so
their waits overlap. Everything is stopped at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from metrics_results import snapshot, unavailable
from prometheus_client import Gauge
from prometheus_client import Histogram as PromHistogram

from sloscale.metrics_source import PrometheusMetricsSource, ServiceKey
from sloscale.sandbox.prometheus import PrometheusServer, Target
from sloscale.sandbox.vllm_metrics import (
    ITL_BUCKETS,
    REQUEST_LATENCY_BUCKETS,
    TTFT_BUCKETS,
    V0_REQUEST_LATENCY_BUCKETS,
    V0_TPOT_BUCKETS,
    V0_TTFT_BUCKETS,
    MetricsExporter,
    VllmMetrics,
)
from sloscale.scaling.snapshot import Histogram, MetricsUnavailable, Unavailability

pytestmark = pytest.mark.prometheus

ALPHA: ServiceKey = ("team-a", "alpha")
BETA: ServiceKey = ("team-b", "beta")
IDLE: ServiceKey = ("team-a", "idle")
GAMMA: ServiceKey = ("team-b", "gamma")
UNDER: ServiceKey = ("team-c", "under")
REL = 0.3  # rate() over a 5 s window scraped every second
RATE_WINDOW_S = 5.0


@dataclass
class PacedLoad:
    """Finished requests at a steady rate, recorded lazily: each scrape first catches up to now.

    Counters then grow by `per_s` per second of wall time, exactly as a pod serving that load
    would report them, without a thread per exporter.
    """

    metrics: VllmMetrics
    per_s: float
    request: dict[str, Any]
    preempt_every: int = 0
    also: Callable[[], None] | None = None
    started: float = field(default_factory=time.monotonic)
    recorded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def catch_up(self) -> None:
        with self.lock:
            due = int((time.monotonic() - self.started) * self.per_s)
            for n in range(self.recorded, due):
                self.metrics.record_request(**self.request)
                if self.also is not None:
                    self.also()
                if self.preempt_every and n % self.preempt_every == 0:
                    self.metrics.count_preemptions()
            self.recorded = max(self.recorded, due)


# What each paced service records per request.
ALPHA_REQUEST = {
    "ttft_s": 0.3,
    "e2e_s": 1.2,
    "queue_s": 0.15,
    "prompt_tokens": 100,
    "generation_tokens": 40,
}
BETA_REQUEST = {
    "ttft_s": 1.5,
    "e2e_s": 7.0,
    "queue_s": 0.5,
    "prompt_tokens": 300,
    "generation_tokens": 50,
    "itl_s": 0.12,
}
ALPHA_PER_POD_S = 8.0
BETA_PER_S = 5.0


@dataclass
class Fleet:
    main: PrometheusServer  # renames vllm_ to vllm: (the sandbox's default)
    raw: PrometheusServer  # stores names as exposed
    exporters: dict[str, MetricsExporter]


def _exporter(
    stack: contextlib.ExitStack, metrics: VllmMetrics, load: PacedLoad | None = None, **kwargs: Any
) -> MetricsExporter:
    before: Callable[[], None] | None = load.catch_up if load is not None else None
    return stack.enter_context(MetricsExporter(metrics.registry, before_scrape=before, **kwargs))


@pytest.fixture(scope="module")
def fleet(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Services on two Prometheus servers, scraped every second, with a full rate window of data.

    main: team-a/alpha (2 pods; one exposes OpenMetrics `vllm_` names, the other also keeps the
    deprecated V0 duplicates as vLLM 0.9–0.10 did), team-b/beta (1 pod, V0 names and buckets),
    team-a/idle (1 pod, no traffic), team-b/gamma (1 pod, stopped by a test).
    raw: team-c/under (1 pod exposing `vllm_` names that nothing renames).
    """
    with contextlib.ExitStack() as stack:
        main = stack.enter_context(
            PrometheusServer(tmp_path_factory.mktemp("prom-main"), binary=prometheus_binary)
        )
        raw = stack.enter_context(
            PrometheusServer(
                tmp_path_factory.mktemp("prom-raw"),
                binary=prometheus_binary,
                normalize_vllm_names=False,
            )
        )
        exporters: dict[str, MetricsExporter] = {}

        alpha0 = VllmMetrics("llama")
        alpha0.set_gauges(running=3, waiting=2, kv_usage=0.4)
        exporters["alpha-0"] = _exporter(
            stack,
            alpha0,
            PacedLoad(alpha0, ALPHA_PER_POD_S, ALPHA_REQUEST, preempt_every=4),
            openmetrics=True,
        )

        alpha1 = VllmMetrics("llama")
        alpha1.set_gauges(running=4, waiting=1, kv_usage=0.7)
        duplicates = deprecated_duplicates(alpha1, ALPHA_REQUEST, kv_usage=0.95)
        load = PacedLoad(alpha1, ALPHA_PER_POD_S, ALPHA_REQUEST, preempt_every=4, also=duplicates)
        exporters["alpha-1"] = _exporter(stack, alpha1, load, openmetrics=False)

        beta = VllmMetrics("mistral", v0_names=True)
        beta.set_gauges(running=5, waiting=0, kv_usage=0.55)
        exporters["beta-0"] = _exporter(stack, beta, PacedLoad(beta, BETA_PER_S, BETA_REQUEST))

        exporters["idle-0"] = _exporter(stack, VllmMetrics("llama"))
        exporters["gamma-0"] = _exporter(stack, VllmMetrics("llama"))

        under = VllmMetrics("llama")
        under.set_gauges(running=2, waiting=0, kv_usage=0.1)
        exporters["under-0"] = _exporter(
            stack, under, PacedLoad(under, ALPHA_PER_POD_S, ALPHA_REQUEST), openmetrics=True
        )

        def pod(name: str, namespace: str, service: str) -> Target:
            return Target.pod(
                exporters[name].address, namespace=namespace, pod=name, service=service
            )

        main.set_targets(
            [
                pod("alpha-0", "team-a", "alpha"),
                pod("alpha-1", "team-a", "alpha"),
                pod("beta-0", "team-b", "beta"),
                pod("idle-0", "team-a", "idle"),
                pod("gamma-0", "team-b", "gamma"),
            ]
        )
        raw.set_targets([pod("under-0", "team-c", "under")])
        main.wait_for_up(5, timeout=30)
        raw.wait_for_up(1, timeout=30)
        # Let a whole rate window of samples accumulate, so rates are not extrapolated from two.
        time.sleep(RATE_WINDOW_S + 1)
        yield Fleet(main, raw, exporters)


def deprecated_duplicates(
    metrics: VllmMetrics, request: dict[str, Any], kv_usage: float
) -> Callable[[], None]:
    """The V0 names vLLM kept exporting beside the V1 ones for a release (0.9–0.10).

    The duplicate ITL histogram repeats each request's gaps; the duplicate KV gauge is given a
    different value than the V1 one, so a query preferring the wrong name shows.
    """
    labels = ("llama", "0")
    tpot = PromHistogram(
        "vllm:time_per_output_token_seconds",
        "Histogram of time per output token in seconds.",
        ["model_name", "engine"],
        registry=metrics.registry,
        buckets=ITL_BUCKETS,
    ).labels(*labels)
    Gauge(
        "vllm:gpu_cache_usage_perc",
        "GPU KV-cache usage.",
        ["model_name", "engine"],
        registry=metrics.registry,
    ).labels(*labels).set(kv_usage)
    gaps = request["generation_tokens"] - 1
    mean = (request["e2e_s"] - request["ttft_s"]) / gaps

    def record() -> None:
        for _ in range(gaps):
            tpot.observe(mean)

    return record


@pytest.fixture
def source(fleet: Fleet) -> Iterator[PrometheusMetricsSource]:
    with PrometheusMetricsSource(
        fleet.main.url, rate_window_s=RATE_WINDOW_S, stale_after_s=5
    ) as src:
        yield src


def assert_all_within(h: Histogram, lower: float, upper: float, total: float) -> None:
    """Every observation fell in the bucket (lower, upper], and there were `total` per second."""
    assert h.total == pytest.approx(total, rel=REL)
    assert h.fraction_within(lower) == pytest.approx(0.0, abs=0.05)
    assert h.fraction_within(upper) == pytest.approx(1.0)
    p99 = h.quantile(0.99)
    assert p99 is not None and lower < p99 <= upper


def test_a_two_pod_service_adds_up_what_its_pods_recorded(source: PrometheusMetricsSource) -> None:
    s = snapshot(source.fetch([ALPHA], time.time())[ALPHA])
    rps = 2 * ALPHA_PER_POD_S
    assert s.pods_reporting == 2
    assert s.window_s == RATE_WINDOW_S
    assert s.requests_per_s == pytest.approx(rps, rel=REL)
    assert s.prompt_tokens_per_s == pytest.approx(rps * ALPHA_REQUEST["prompt_tokens"], rel=REL)
    assert s.generation_tokens_per_s == pytest.approx(
        rps * ALPHA_REQUEST["generation_tokens"], rel=REL
    )
    assert s.preemptions_per_s == pytest.approx(rps / 4, rel=REL)
    assert (s.running, s.waiting) == (3 + 4, 2 + 1)
    # The highest pod's V1 gauge; the other pod's deprecated duplicate (0.95) must not win.
    assert s.kv_usage == pytest.approx(0.7)
    assert not s.zero_traffic
    # TTFT 0.3 s, gaps of 0.9 s / 39, e2e 1.2 s, queue 0.15 s, prefill 0.15 s, decode 0.9 s.
    assert_all_within(s.ttft, 0.25, 0.5, rps)
    assert_all_within(s.itl, 0.01, 0.025, rps * 39)  # counted once despite the duplicate family
    assert_all_within(s.e2e, 1.0, 1.5, rps)
    assert_all_within(s.queue_time, 0.0, 0.3, rps)  # vLLM's first request-phase edge is 0.3 s
    assert_all_within(s.prefill_time, 0.0, 0.3, rps)
    assert_all_within(s.decode_time, 0.8, 1.0, rps)
    # The sums the capacity fit pairs, through Prometheus: 0.9 s of gaps per request over 39
    # gaps (mean step 23 ms, the duplicate family again counted once), and the mix per finished
    # request from the per-request token histograms.
    assert s.itl_seconds_per_s == pytest.approx(rps * 0.9, rel=REL)
    assert s.itl_tokens_per_s == pytest.approx(rps * 39, rel=REL)
    assert s.finished_prompt_tokens_per_s == pytest.approx(
        rps * ALPHA_REQUEST["prompt_tokens"], rel=REL
    )
    assert s.finished_generation_tokens_per_s == pytest.approx(
        rps * ALPHA_REQUEST["generation_tokens"], rel=REL
    )


def test_bucket_edges_are_read_from_prometheus_for_each_engine_version(
    source: PrometheusMetricsSource,
) -> None:
    results = source.fetch([ALPHA, BETA], time.time())
    alpha, beta = snapshot(results[ALPHA]), snapshot(results[BETA])
    inf = (math.inf,)
    assert (alpha.ttft.bounds, alpha.itl.bounds, alpha.e2e.bounds) == (
        TTFT_BUCKETS + inf,
        ITL_BUCKETS + inf,
        REQUEST_LATENCY_BUCKETS + inf,
    )
    assert (beta.ttft.bounds, beta.itl.bounds, beta.e2e.bounds) == (
        V0_TTFT_BUCKETS + inf,
        V0_TPOT_BUCKETS + inf,
        V0_REQUEST_LATENCY_BUCKETS + inf,
    )


def test_v0_names_are_read_like_v1_ones(source: PrometheusMetricsSource) -> None:
    s = snapshot(source.fetch([BETA], time.time())[BETA])
    assert s.pods_reporting == 1
    assert s.requests_per_s == pytest.approx(BETA_PER_S, rel=REL)
    assert (s.running, s.waiting) == (5, 0)
    assert s.kv_usage == pytest.approx(0.55)  # from gpu_cache_usage_perc
    assert_all_within(s.ttft, 1.0, 2.5, BETA_PER_S)
    assert_all_within(s.itl, 0.1, 0.15, BETA_PER_S * (BETA_REQUEST["generation_tokens"] - 1))
    assert_all_within(s.e2e, 5.0, 10.0, BETA_PER_S)


def test_underscore_names_are_read_when_nothing_renames_them(fleet: Fleet) -> None:
    with urllib.request.urlopen(
        f"{fleet.raw.url}/api/v1/label/__name__/values", timeout=10
    ) as response:
        names = json.load(response)["data"]
    assert "vllm_num_requests_running" in names
    assert not [n for n in names if n.startswith("vllm:")]
    with PrometheusMetricsSource(fleet.raw.url, rate_window_s=RATE_WINDOW_S) as src:
        s = snapshot(src.fetch([UNDER], time.time())[UNDER])
    assert s.requests_per_s == pytest.approx(ALPHA_PER_POD_S, rel=REL)
    assert s.running == 2
    assert s.kv_usage == pytest.approx(0.1)
    assert_all_within(s.ttft, 0.25, 0.5, ALPHA_PER_POD_S)


def test_idle_pods_are_zero_traffic_and_an_unknown_service_is_no_data(
    source: PrometheusMetricsSource,
) -> None:
    results = source.fetch([IDLE, ("team-a", "nobody"), ("team-z", "alpha")], time.time())
    idle = snapshot(results[IDLE])
    assert idle.zero_traffic
    assert idle.pods_reporting == 1
    assert (
        idle.requests_per_s == 0
        and idle.ttft.empty
        and idle.ttft.bounds == TTFT_BUCKETS + (math.inf,)
    )
    unavailable(results[("team-a", "nobody")], Unavailability.NO_DATA)
    unavailable(results[("team-z", "alpha")], Unavailability.NO_DATA)


def test_the_number_of_queries_does_not_depend_on_the_number_of_services(
    source: PrometheusMetricsSource,
) -> None:
    before = source.queries_issued
    source.fetch([ALPHA], time.time())
    one = source.queries_issued - before
    many = [ALPHA, BETA, IDLE] + [(f"ns-{i}", f"svc-{i}") for i in range(47)]
    before = source.queries_issued
    results = source.fetch(many, time.time())
    assert source.queries_issued - before == one
    assert len(results) == 50
    snapshot(results[ALPHA]), snapshot(results[BETA]), snapshot(results[IDLE])
    assert all(isinstance(results[k], MetricsUnavailable) for k in many[3:])


def test_samples_older_than_the_limit_are_stale(source: PrometheusMetricsSource) -> None:
    # Evaluated a minute ahead, the newest sample of every pod is 60 s old: past the 5 s limit.
    later = time.time() + 60
    results = source.fetch([ALPHA, IDLE], later)
    for key in (ALPHA, IDLE):
        message = unavailable(results[key], Unavailability.STALE).message
        assert "stale after 5s" in message


def test_a_service_whose_pod_stopped_turns_stale_while_others_stay_fresh(
    fleet: Fleet, source: PrometheusMetricsSource
) -> None:
    snapshot(source.fetch([GAMMA], time.time())[GAMMA])
    fleet.exporters["gamma-0"].close()
    deadline = time.monotonic() + 20
    while True:
        results = source.fetch([GAMMA, ALPHA], time.time())
        if isinstance(results[GAMMA], MetricsUnavailable) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    unavailable(results[GAMMA], Unavailability.STALE)
    snapshot(results[ALPHA])


def test_a_prometheus_that_goes_down_fails_every_service(
    scratch_prometheus: PrometheusServer,
) -> None:
    services = [ALPHA, BETA]
    with PrometheusMetricsSource(scratch_prometheus.url, timeout_s=5, retries=0) as src:
        # Up, but nothing is scraped: the queries work and find nothing.
        assert all(
            unavailable(r, Unavailability.NO_DATA)
            for r in src.fetch(services, time.time()).values()
        )
        scratch_prometheus.stop()
        before = src.queries_issued
        results = src.fetch(services, time.time())
    assert src.queries_issued - before == 1  # gives up at the first failed query
    for result in results.values():
        assert "cannot connect" in unavailable(result, Unavailability.QUERY_FAILED).message


def test_prometheus_labels_each_target_as_the_operator_expects(fleet: Fleet) -> None:
    labels = {t["labels"]["pod"]: t["labels"] for t in fleet.main.active_targets()}
    assert labels["alpha-0"]["namespace"] == "team-a"
    assert labels["alpha-0"]["sloscale_service"] == "alpha"
    assert labels["beta-0"]["sloscale_service"] == "beta"
