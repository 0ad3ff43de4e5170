"""The emulated vLLM metric families: vLLM's names, types, labels and buckets, served over HTTP."""

from __future__ import annotations

import math
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sloscale.sandbox.vllm_metrics import (
    ITL_BUCKETS,
    REQUEST_LATENCY_BUCKETS,
    TTFT_BUCKETS,
    V0_TPOT_BUCKETS,
    V0_TTFT_BUCKETS,
    MetricsExporter,
    VllmMetrics,
    one_two_five_buckets,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

V1_FAMILIES = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prefix_cache_queries": "counter",
    "vllm:prefix_cache_hits": "counter",
    "vllm:num_preemptions": "counter",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:request_success": "counter",
    "vllm:request_prompt_tokens": "histogram",
    "vllm:request_generation_tokens": "histogram",
    "vllm:iteration_tokens_total": "histogram",
    "vllm:request_max_num_generation_tokens": "histogram",
    "vllm:request_params_n": "histogram",
    "vllm:request_params_max_tokens": "histogram",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:request_time_per_output_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
    "vllm:request_inference_time_seconds": "histogram",
    "vllm:request_prefill_time_seconds": "histogram",
    "vllm:request_decode_time_seconds": "histogram",
}


def samples(metrics: VllmMetrics) -> Samples:
    body, _ = metrics.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def bucket_edges(metrics: VllmMetrics, family: str) -> tuple[float, ...]:
    body, _ = metrics.render()
    for f in text_string_to_metric_families(body.decode()):
        if f.name == family:
            return tuple(float(s.labels["le"]) for s in f.samples if s.name.endswith("_bucket"))
    raise AssertionError(f"{family} not exposed")


def test_v1_exposes_vllm_families_with_their_types_and_labels_from_the_start() -> None:
    metrics = VllmMetrics("llama-8b", engine=1)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name, kind in V1_FAMILIES.items():
        assert families[name].type == kind, name
        assert families[name].samples, f"{name} must exist before the first request"
        for sample in families[name].samples:
            assert sample.labels["model_name"] == "llama-8b" and sample.labels["engine"] == "1"
    reasons = {s.labels["finished_reason"] for s in families["vllm:request_success"].samples}
    assert reasons == {"stop", "length", "abort", "error"}
    assert "vllm:gpu_cache_usage_perc" not in families


def test_v1_and_v0_bucket_edges_are_vllms() -> None:
    v1, v0 = VllmMetrics("m"), VllmMetrics("m", v0_names=True)
    inf = (math.inf,)
    assert bucket_edges(v1, "vllm:time_to_first_token_seconds") == TTFT_BUCKETS + inf
    assert bucket_edges(v1, "vllm:inter_token_latency_seconds") == ITL_BUCKETS + inf
    assert bucket_edges(v1, "vllm:e2e_request_latency_seconds") == REQUEST_LATENCY_BUCKETS + inf
    assert bucket_edges(v0, "vllm:time_to_first_token_seconds") == V0_TTFT_BUCKETS + inf
    assert bucket_edges(v0, "vllm:time_per_output_token_seconds") == V0_TPOT_BUCKETS + inf
    assert TTFT_BUCKETS[-1] == 2560.0 and V0_TTFT_BUCKETS[-1] == 10.0
    assert (
        bucket_edges(VllmMetrics("m", max_model_len=2048), "vllm:request_prompt_tokens")[-2] == 2000
    )


def test_v0_uses_the_old_names_and_no_engine_label() -> None:
    found = samples(VllmMetrics("m", v0_names=True))
    names = {name for name, _ in found}
    assert "vllm:gpu_cache_usage_perc" in names and "vllm:kv_cache_usage_perc" not in names
    assert "vllm:time_per_output_token_seconds_count" in names
    assert "vllm:inter_token_latency_seconds_count" not in names
    assert all(
        dict(labels).keys() <= {"model_name", "finished_reason", "le"} for _, labels in found
    )


def test_a_whole_request_is_recorded_as_vllm_records_it() -> None:
    metrics = VllmMetrics("m")
    metrics.record_request(
        ttft_s=0.3, e2e_s=1.2, queue_s=0.1, prompt_tokens=100, generation_tokens=10, max_tokens=16
    )
    found = samples(metrics)
    labels = {"model_name": "m", "engine": "0"}
    assert value(found, "vllm:prompt_tokens_total", **labels) == 100
    assert value(found, "vllm:generation_tokens_total", **labels) == 10
    assert value(found, "vllm:request_success_total", finished_reason="stop", **labels) == 1
    assert value(found, "vllm:time_to_first_token_seconds_sum", **labels) == pytest.approx(0.3)
    # Nine gaps sharing the 0.9 s after the first token.
    assert value(found, "vllm:inter_token_latency_seconds_count", **labels) == 9
    assert value(found, "vllm:inter_token_latency_seconds_sum", **labels) == pytest.approx(0.9)
    assert value(
        found, "vllm:request_time_per_output_token_seconds_sum", **labels
    ) == pytest.approx(0.1)
    assert value(found, "vllm:request_prefill_time_seconds_sum", **labels) == pytest.approx(0.2)
    assert value(found, "vllm:request_decode_time_seconds_sum", **labels) == pytest.approx(0.9)
    assert value(found, "vllm:request_inference_time_seconds_sum", **labels) == pytest.approx(1.1)
    assert value(found, "vllm:request_queue_time_seconds_sum", **labels) == pytest.approx(0.1)
    assert value(found, "vllm:request_params_max_tokens_count", **labels) == 1


def test_explicit_token_gaps_are_observed_one_by_one() -> None:
    metrics = VllmMetrics("m")
    metrics.record_request(
        ttft_s=0.1, e2e_s=0.4, prompt_tokens=5, generation_tokens=3, itl_s=[0.05, 0.25]
    )
    found = samples(metrics)
    labels = {"model_name": "m", "engine": "0"}
    assert value(found, "vllm:inter_token_latency_seconds_bucket", le="0.05", **labels) == 1
    assert value(found, "vllm:inter_token_latency_seconds_bucket", le="0.3", **labels) == 2


def test_gauges_preemptions_and_cache_config() -> None:
    metrics = VllmMetrics("m")
    metrics.set_gauges(running=7, waiting=3, kv_usage=0.42)
    metrics.count_preemptions(2)
    metrics.set_cache_config(num_gpu_blocks=2000, block_size=16)
    found = samples(metrics)
    labels = {"model_name": "m", "engine": "0"}
    assert value(found, "vllm:num_requests_running", **labels) == 7
    assert value(found, "vllm:num_requests_waiting", **labels) == 3
    assert value(found, "vllm:kv_cache_usage_perc", **labels) == pytest.approx(0.42)
    assert value(found, "vllm:num_preemptions_total", **labels) == 2
    info = [dict(lbl) for name, lbl in found if name == "vllm:cache_config_info"]
    assert len(info) == 1
    assert (info[0]["num_gpu_blocks"], info[0]["block_size"], info[0]["engine"]) == (
        "2000",
        "16",
        "0",
    )


def test_an_unknown_finish_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="finished_reason"):
        VllmMetrics("m").observe_finished(
            e2e_s=1,
            queue_s=0,
            prefill_s=0,
            decode_s=1,
            prompt_tokens=1,
            generation_tokens=1,
            finished_reason="done",
        )


def test_each_instance_has_its_own_registry() -> None:
    a, b = VllmMetrics("m"), VllmMetrics("m")
    a.set_gauges(running=1, waiting=0, kv_usage=0)
    assert value(samples(b), "vllm:num_requests_running", model_name="m", engine="0") == 0


def test_one_two_five_buckets() -> None:
    assert one_two_five_buckets(100) == (1, 2, 5, 10, 20, 50, 100)
    assert one_two_five_buckets(16384)[-1] == 10000


def fetch(url: str, accept: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        text: str = response.read().decode()
        return text


def test_the_exporter_negotiates_like_prometheus_client_or_keeps_colons() -> None:
    metrics = VllmMetrics("m")
    openmetrics = "application/openmetrics-text; version=1.0.0"
    scrapes: list[int] = []
    with MetricsExporter(metrics.registry, before_scrape=lambda: scrapes.append(1)) as negotiating:
        body = fetch(f"http://{negotiating.address}/metrics", openmetrics)
        assert "\nvllm_num_requests_running{" in body  # the OpenMetrics spelling trap
    with MetricsExporter(metrics.registry, openmetrics=False) as text:
        body = fetch(f"http://{text.address}/metrics", openmetrics)
        assert "\nvllm:num_requests_running{" in body
    assert scrapes == [1]
    text.close()  # closing twice is harmless
    with pytest.raises(OSError):
        fetch(f"http://{text.address}/metrics", "text/plain")
