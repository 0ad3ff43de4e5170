"""vLLM's Prometheus metrics, reproduced family for family, for emulated pods and tests.

The operator reads vLLM only through these metrics, so whatever stands in for a vLLM pod must
expose them exactly as vLLM does: the same names (`vllm:` prefix, counters with `_total`), types,
help texts, labels (`model_name` and `engine` on V1; `model_name` only on V0) and histogram
buckets (vLLM's `vllm/v1/metrics/loggers.py` and `buckets.py`; V0's `vllm/engine/metrics.py`).
`VllmMetrics(v0_names=True)` exposes the V0 names and buckets instead (`gpu_cache_usage_perc`,
`time_per_output_token_seconds`, TTFT up to 10 s, e2e up to 60 s), so the operator's tolerance of
older engines can be tested.

Each instance owns its `CollectorRegistry` (never the process-global one), so one process can
host many emulated pods. Like vLLM, every labelled child is created up front: a fresh pod exports
all families at zero, which is what lets the operator tell "idle" from "not reporting".

`MetricsExporter` serves a registry on loopback with prometheus_client's own content negotiation,
including the trap that newer prometheus_client writes `vllm:` samples as `vllm_…` when the
scraper asks for OpenMetrics (see environment.md).

The bucket edges are exported as constants; the fleet simulator reuses them so that simulated and
emulated histograms have the same resolution as real ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder, make_wsgi_app

# V1 bucket edges (vllm/v1/metrics/buckets.py).
TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""`vllm:time_to_first_token_seconds`."""

ITL_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
"""`vllm:inter_token_latency_seconds` and `vllm:request_time_per_output_token_seconds`."""

REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
"""e2e latency and the request phases: queue, inference, prefill, decode. The first edge is
0.3 s, as a live vLLM 0.32 exports it (tests/vllm hold this to the real engine)."""

PARAMS_N_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20)

# V0 bucket edges (vllm/engine/metrics.py before the V1 engine).
V0_TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
V0_TPOT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
V0_REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
)  # fmt: skip
V0_ITERATION_TOKENS_BUCKETS: tuple[float, ...] = (
    1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8096,
)  # fmt: skip

FINISHED_REASONS: tuple[str, ...] = ("stop", "length", "abort", "error")
"""Values of `finished_reason` on `vllm:request_success_total` (vLLM's FinishReason)."""


def one_two_five_buckets(max_value: int) -> tuple[float, ...]:
    """vLLM's 1-2-5 series up to `max_value`: token-count histograms and tokens per step."""
    edges: list[float] = []
    magnitude = 1
    while magnitude <= max_value:
        edges.extend(m * magnitude for m in (1, 2, 5) if m * magnitude <= max_value)
        magnitude *= 10
    return tuple(edges)


class VllmMetrics:
    """The metric families of one vLLM server (one engine), in its own registry.

    Two ways to feed it. An emulated engine reports as vLLM does while a request runs:
    `count_tokens` per step, `observe_first_token` and `observe_inter_token` as tokens leave, and
    `observe_finished` at the end. A test or trace replay that only knows whole requests calls
    `record_request`, which does all of that at once.
    """

    def __init__(
        self,
        model_name: str,
        registry: CollectorRegistry | None = None,
        *,
        v0_names: bool = False,
        engine: int = 0,
        max_model_len: int = 4096,
        max_num_batched_tokens: int = 16384,
    ) -> None:
        self.model_name = model_name
        self.v0_names = v0_names
        self.registry = registry if registry is not None else CollectorRegistry()
        labelnames = ["model_name"] if v0_names else ["model_name", "engine"]
        self._labels: tuple[str, ...] = (model_name,) if v0_names else (model_name, str(engine))
        self._engine = str(engine)
        self._labelnames = labelnames
        token_buckets = one_two_five_buckets(max_model_len)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labelnames, registry=self.registry).labels(*self._labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labelnames, registry=self.registry).labels(*self._labels)

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            family = Histogram(name, doc, labelnames, registry=self.registry, buckets=buckets)
            return family.labels(*self._labels)

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        if v0_names:
            self.kv_usage = gauge(
                "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage."
            )
            # V0 also swapped to CPU; V1 removed both families. Exported at zero for fidelity.
            gauge("vllm:num_requests_swapped", "Number of requests swapped to CPU.")
            gauge("vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.")
        else:
            self.kv_usage = gauge(
                "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
            )
        self.prefix_cache_queries = counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
        )
        self.prefix_cache_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*labelnames, "finished_reason"],
            registry=self.registry,
        )
        self.request_success = {r: success.labels(*self._labels, r) for r in FINISHED_REASONS}

        self.request_prompt_tokens = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets
        )
        self.request_generation_tokens = histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            token_buckets,
        )
        self.iteration_tokens = histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            V0_ITERATION_TOKENS_BUCKETS
            if v0_names
            else one_two_five_buckets(max_num_batched_tokens),
        )
        self.max_num_generation_tokens = histogram(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            token_buckets,
        )
        self.params_n = histogram(
            "vllm:request_params_n", "Histogram of the n request parameter.", PARAMS_N_BUCKETS
        )
        self.params_max_tokens = histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            token_buckets,
        )

        latency = V0_REQUEST_LATENCY_BUCKETS if v0_names else REQUEST_LATENCY_BUCKETS
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            V0_TTFT_BUCKETS if v0_names else TTFT_BUCKETS,
        )
        if v0_names:
            self.itl = histogram(
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.",
                V0_TPOT_BUCKETS,
            )
            self.request_tpot: Histogram | None = None
        else:
            self.itl = histogram(
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                ITL_BUCKETS,
            )
            self.request_tpot = histogram(
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                ITL_BUCKETS,
            )
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            latency,
        )
        self.queue_time = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            latency,
        )
        self.inference_time = histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            latency,
        )
        self.prefill_time = histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            latency,
        )
        self.decode_time = histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            latency,
        )
        self._cache_config: Gauge | None = None

    # -- scheduler state -------------------------------------------------------------------------

    def set_gauges(self, *, running: int, waiting: int, kv_usage: float) -> None:
        """The gauges vLLM sets after every engine step; `kv_usage` is a fraction 0..1."""
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(kv_usage)

    def count_preemptions(self, n: int = 1) -> None:
        self.preemptions.inc(n)

    def count_prefix_cache(self, *, queries: int, hits: int) -> None:
        self.prefix_cache_queries.inc(queries)
        self.prefix_cache_hits.inc(hits)

    def set_cache_config(
        self,
        *,
        num_gpu_blocks: int,
        block_size: int = 16,
        gpu_memory_utilization: float = 0.9,
        cache_dtype: str = "auto",
        enable_prefix_caching: bool = True,
        num_cpu_blocks: int | None = None,
    ) -> None:
        """`vllm:cache_config_info`: an info gauge at 1 whose labels carry the KV cache shape.

        KV capacity in tokens is num_gpu_blocks × block_size. Set once, after the engine has
        sized its cache (vLLM exports it when the engine is initialised).
        """
        info = {
            "block_size": str(block_size),
            "cache_dtype": cache_dtype,
            "enable_prefix_caching": str(enable_prefix_caching),
            "gpu_memory_utilization": str(gpu_memory_utilization),
            "num_cpu_blocks": str(num_cpu_blocks),
            "num_gpu_blocks": str(num_gpu_blocks),
        }
        if not self.v0_names:
            info["engine"] = self._engine
        if self._cache_config is None:
            self._cache_config = Gauge(
                "vllm:cache_config_info",
                "Information of the LLMEngine CacheConfig",
                list(info),
                registry=self.registry,
            )
        self._cache_config.clear()
        self._cache_config.labels(**info).set(1)

    # -- per step and per token ------------------------------------------------------------------

    def count_tokens(self, *, prompt: int = 0, generation: int = 0) -> None:
        """Tokens an engine step processed: vLLM's token counters grow per step, not per request."""
        self.prompt_tokens.inc(prompt)
        self.generation_tokens.inc(generation)

    def record_step(self, num_tokens: int) -> None:
        """One engine step's batch, in tokens (`vllm:iteration_tokens_total`)."""
        self.iteration_tokens.observe(num_tokens)

    def observe_first_token(self, ttft_s: float) -> None:
        """Time to first token, from arrival at the frontend (queue and prefill included)."""
        self.ttft.observe(ttft_s)

    def observe_inter_token(self, latency_s: float, count: int = 1) -> None:
        """`count` gaps of `latency_s` between consecutive output tokens of one request."""
        for _ in range(count):
            self.itl.observe(latency_s)

    def observe_finished(
        self,
        *,
        e2e_s: float,
        queue_s: float,
        prefill_s: float,
        decode_s: float,
        prompt_tokens: int,
        generation_tokens: int,
        finished_reason: str = "stop",
        max_tokens: int | None = None,
        n: int = 1,
        inference_s: float | None = None,
    ) -> None:
        """What vLLM records when a request finishes (token counters excepted: see count_tokens).

        `inference_s` defaults to prefill + decode, as the RUNNING phase is their sum.
        """
        if finished_reason not in self.request_success:
            raise ValueError(
                f"finished_reason must be one of {FINISHED_REASONS}, not {finished_reason!r}"
            )
        self.request_success[finished_reason].inc()
        self.e2e.observe(e2e_s)
        self.queue_time.observe(queue_s)
        self.prefill_time.observe(prefill_s)
        self.decode_time.observe(decode_s)
        self.inference_time.observe(prefill_s + decode_s if inference_s is None else inference_s)
        self.request_prompt_tokens.observe(prompt_tokens)
        self.request_generation_tokens.observe(generation_tokens)
        self.params_n.observe(n)
        if max_tokens:
            self.params_max_tokens.observe(max_tokens)
            self.max_num_generation_tokens.observe(max_tokens)
        if self.request_tpot is not None:
            # vLLM's mean TPOT of a request: decode time over the tokens after the first.
            self.request_tpot.observe(
                decode_s / (generation_tokens - 1) if generation_tokens > 1 else 0.0
            )

    def record_request(
        self,
        *,
        ttft_s: float,
        e2e_s: float,
        prompt_tokens: int,
        generation_tokens: int,
        queue_s: float = 0.0,
        prefill_s: float | None = None,
        decode_s: float | None = None,
        itl_s: float | Sequence[float] | None = None,
        finished_reason: str = "stop",
        max_tokens: int | None = None,
    ) -> None:
        """One whole request, recorded as vLLM would have recorded it over its lifetime.

        `itl_s` is either every gap between output tokens or their mean (then observed once per
        gap, generation_tokens - 1 times). Missing pieces are derived the way vLLM defines them:
        prefill = TTFT - queue, decode = e2e - TTFT, mean ITL = decode / (generation_tokens - 1).
        """
        prefill = max(0.0, ttft_s - queue_s) if prefill_s is None else prefill_s
        decode = max(0.0, e2e_s - ttft_s) if decode_s is None else decode_s
        gaps = max(0, generation_tokens - 1)
        self.count_tokens(prompt=prompt_tokens, generation=generation_tokens)
        self.observe_first_token(ttft_s)
        if isinstance(itl_s, Sequence):
            for gap in itl_s:
                self.itl.observe(gap)
        elif gaps:
            self.observe_inter_token(decode / gaps if itl_s is None else itl_s, gaps)
        self.observe_finished(
            e2e_s=e2e_s,
            queue_s=queue_s,
            prefill_s=prefill,
            decode_s=decode,
            prompt_tokens=prompt_tokens,
            generation_tokens=generation_tokens,
            finished_reason=finished_reason,
            max_tokens=max_tokens,
        )

    # -- exposition ------------------------------------------------------------------------------

    def render(self, accept_header: str = "") -> tuple[bytes, str]:
        """The `/metrics` body and its content type for a scraper's Accept header.

        This is prometheus_client's negotiation: an OpenMetrics Accept gets `vllm_…` sample names.
        """
        encoder, content_type = choose_encoder(accept_header)
        return encoder(self.registry), content_type


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Scrapes every second would flood the test output."""


class MetricsExporter:
    """`GET /metrics` for one registry on a loopback port, in a background thread.

    `openmetrics=False` ignores the scraper's Accept header and always answers the classic text
    format, which keeps the `vllm:` spelling whatever prometheus_client version is installed.
    `before_scrape` runs before each scrape is rendered (a test uses it to bring paced counters up
    to date). A context manager; `close()` stops the server and may be called twice.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        openmetrics: bool = True,
        before_scrape: Callable[[], None] | None = None,
    ) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if before_scrape is not None:
                before_scrape()
            if not openmetrics:
                environ = {k: v for k, v in environ.items() if k != "HTTP_ACCEPT"}
            body: Iterable[bytes] = metrics_app(environ, start_response)
            return body

        self._server = make_server(
            host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.host = host
        self.port: int = self._server.server_port
        # A short poll interval lets close() return promptly.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=f"metrics-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def address(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsExporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
