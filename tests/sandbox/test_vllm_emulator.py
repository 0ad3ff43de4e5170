"""The emulated vLLM pod over real HTTP, as a real process: API shapes, metrics, batching, drain."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sloscale.engine import resolve_profile
from sloscale.sandbox import vllm_metrics
from sloscale.sandbox.vllm_emulator import parse_args

Start = Callable[..., Any]  # the `emulator` fixture: starts a pod, returns it (url, proc, stop)
Pod = Any
ROOT = Path(__file__).resolve().parents[2]


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> list[Any]:
    """The decoded `data:` events of a streamed answer, `[DONE]` included as a string."""
    events: list[Any] = []
    async with session.post(url, json={**body, "stream": True}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def scrape(session: aiohttp.ClientSession, pod: Pod, accept: str = "text/plain") -> dict[str, Any]:
    async with session.get(pod.url + "/metrics", headers={"Accept": accept}) as resp:
        assert resp.status == 200
        return {f.name: f for f in text_string_to_metric_families(await resp.text())}


def value(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    family = families[name]
    return sum(
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    )


# -- the command line ------------------------------------------------------------------------


def test_vllm_arguments_are_read_and_unknown_ones_ignored_without_eating_the_model() -> None:
    config = parse_args(["--dtype", "bfloat16", "meta/llama", "--max-num-seqs=8", "--enforce-eager", "--port", "9"])
    assert config.model == "meta/llama"
    assert config.served_model_name == "meta/llama"
    assert config.engine.max_num_seqs == 8
    assert config.port == 9
    assert config.ignored_args == ("--dtype", "bfloat16", "--enforce-eager")


@pytest.mark.parametrize(
    ("args", "grace_s"),
    [
        ([], 30.0),  # no vLLM drain flag: the kubelet's grace period alone bounds the drain
        (["--shutdown-grace=119"], 119.0),
        (["--shutdown-grace=119", "--shutdown-timeout=100"], 100.0),
        (["--shutdown-grace=20", "--shutdown-timeout=100"], 20.0),  # SIGKILL comes first
        (["--shutdown-timeout=0"], 0.0),  # vLLM's default: running requests are aborted
    ],
)
def test_the_drain_honours_vllms_shutdown_timeout_within_the_grace_period(args: list[str], grace_s: float) -> None:
    assert parse_args(["m", *args]).shutdown_grace_s == grace_s


def test_vllm_defaults_follow_the_gpu_profile() -> None:
    h100 = parse_args(["--model", "m"]).engine
    a100 = parse_args(["--model", "m", "--gpu-profile", "A100"]).engine
    assert (h100.max_num_seqs, h100.max_num_batched_tokens) == (1024, resolve_profile("H100").max_num_batched_tokens)
    assert (a100.max_num_seqs, a100.max_num_batched_tokens) == (256, resolve_profile("A100").max_num_batched_tokens)


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "m", "--max-num-seqs", "64", "--max-num-batched-tokens", "32"],  # vLLM refuses too
        ["--model", "m", "--num-gpu-blocks-override", "4", "--max-model-len", "1024"],  # cache < one request
        ["--model", "m", "--speedup", "0"],
        ["--max-num-seqs", "8"],  # no model
    ],
)
def test_invalid_arguments_exit_with_a_usage_error(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(args)
    assert exc.value.code == 2


def test_the_documented_workload_arguments_run_unchanged() -> None:
    docs = list(yaml.safe_load_all((ROOT / "workloads" / "deployment.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    config = parse_args(container["args"])
    assert config.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert config.served_model_name == deployment["metadata"]["name"]
    assert config.port == container["ports"][0]["containerPort"]
    assert config.engine.max_num_seqs == 64
    assert config.ignored_args  # --gpu-memory-utilization etc. are accepted, not modelled


# -- the API ---------------------------------------------------------------------------------


async def test_completion_answers_exactly_max_tokens_with_vllm_shapes(emulator: Start) -> None:
    pod = emulator("--model", "org/m", "--served-model-name", "chat", "--speedup", "20")
    async with aiohttp.ClientSession() as s:
        status, body = await post(s, pod.url + "/v1/completions", {"model": "chat", "prompt": "one two three", "max_tokens": 7})
        assert status == 200
        assert body["object"] == "text_completion" and body["model"] == "chat"
        assert body["choices"][0]["finish_reason"] == "length"
        assert len(body["choices"][0]["text"].split()) == 7
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}

        status, body = await post(
            s, pod.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "a b"}], "max_tokens": 4}
        )
        assert status == 200
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["completion_tokens"] == 4 and body["usage"]["prompt_tokens"] == 2

        async with s.get(pod.url + "/v1/models") as resp:
            models = await resp.json()
        assert [m["id"] for m in models["data"]] == ["chat"]
        assert models["data"][0]["root"] == "org/m"


async def test_streams_deliver_every_token_then_usage_and_done(emulator: Start) -> None:
    pod = emulator("--model", "m", "--speedup", "20")
    async with aiohttp.ClientSession() as s:
        events = await stream(
            s,
            pod.url + "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x y z"}], "max_tokens": 25, "stream_options": {"include_usage": True}},
        )
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert len(text.split()) == 25
        finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finals[-1] == "length" and set(finals[:-1]) == {None}
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 25

        events = await stream(
            s,
            pod.url + "/v1/completions",
            {"prompt": [1, 2, 3, 4], "max_tokens": 10, "stream_options": {"include_usage": True, "continuous_usage_stats": True}},
        )
        counts = [e["usage"]["completion_tokens"] for e in events[:-1] if e["choices"]]
        assert counts == sorted(counts) and counts[-1] == 10
        assert all(e["usage"]["prompt_tokens"] == 4 for e in events[:-1])


@pytest.mark.parametrize(
    ("path", "body", "status", "kind"),
    [
        ("/v1/completions", {"model": "other", "prompt": "hi"}, 404, "NotFoundError"),
        ("/v1/completions", {"prompt": {"bad": 1}}, 400, "BadRequestError"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400, "BadRequestError"),
        ("/v1/completions", {"prompt": "hi " * 60, "max_tokens": 10}, 400, "BadRequestError"),  # > max-model-len
        ("/v1/chat/completions", {"messages": []}, 400, "BadRequestError"),
    ],
)
async def test_bad_requests_get_vllm_error_bodies(short_context_pod: Pod, path: str, body: dict[str, Any], status: int, kind: str) -> None:
    pod = short_context_pod
    async with aiohttp.ClientSession() as s:
        got, answer = await post(s, pod.url + path, body)
    assert got == status
    assert answer["object"] == "error" and answer["type"] == kind and answer["code"] == status


# -- metrics ---------------------------------------------------------------------------------


async def test_metrics_have_vllm_families_labels_buckets_and_count_the_requests(emulator: Start) -> None:
    pod = emulator("--model", "m", "--served-model-name", "chat", "--speedup", "20", "--max-model-len", "4096")
    sizes = [(5, 3), (12, 9), (30, 20)]
    async with aiohttp.ClientSession() as s:
        for prompt, out in sizes:
            status, _ = await post(s, pod.url + "/v1/completions", {"prompt": "w " * prompt, "max_tokens": out})
            assert status == 200
        fams = await scrape(s, pod)
        openmetrics = await scrape(s, pod, accept="application/openmetrics-text; version=1.0.0")

    labels = {"model_name": "chat", "engine": "0"}
    for name, buckets in [
        ("vllm:time_to_first_token_seconds", vllm_metrics.TTFT_BUCKETS),
        ("vllm:inter_token_latency_seconds", vllm_metrics.ITL_BUCKETS),
        ("vllm:e2e_request_latency_seconds", vllm_metrics.REQUEST_LATENCY_BUCKETS),
        ("vllm:request_queue_time_seconds", vllm_metrics.REQUEST_LATENCY_BUCKETS),
    ]:
        family = fams[name]
        assert family.type == "histogram"
        edges = sorted({float(x.labels["le"]) for x in family.samples if x.name.endswith("_bucket")})
        assert edges == [*buckets, float("inf")]
        assert all(set(x.labels) - {"le"} == set(labels) for x in family.samples)
    for gauge in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert fams[gauge].type == "gauge"
        assert value(fams, gauge, **labels) == 0.0  # idle again
    assert value(fams, "vllm:time_to_first_token_seconds", "_count") == len(sizes)
    assert value(fams, "vllm:e2e_request_latency_seconds", "_count") == len(sizes)
    assert value(fams, "vllm:inter_token_latency_seconds", "_count") == sum(out - 1 for _, out in sizes)
    assert value(fams, "vllm:request_success", "_total", finished_reason="length") == len(sizes)
    assert value(fams, "vllm:prompt_tokens", "_total") == sum(p for p, _ in sizes)
    assert value(fams, "vllm:generation_tokens", "_total") == sum(o for _, o in sizes)
    info = fams["vllm:cache_config_info"].samples[0].labels
    assert int(info["num_gpu_blocks"]) * int(info["block_size"]) == resolve_profile("H100").kv_capacity_tokens
    # prometheus_client's OpenMetrics negotiation, as on a real pod (the relabel trap).
    assert "vllm_time_to_first_token_seconds" in openmetrics or "vllm:time_to_first_token_seconds" in openmetrics


async def test_a_single_stream_decodes_at_the_modelled_step_time(emulator: Start) -> None:
    """At speed-up 10 the pod is a GPU ten times faster: it reports the modelled times / 10."""
    prompt, out, speedup = 1000, 41, 10
    pod = emulator("--model", "m", "--speedup", str(speedup))
    async with aiohttp.ClientSession() as s:
        status, _ = await post(s, pod.url + "/v1/completions", {"prompt": "w " * prompt, "max_tokens": out})
        assert status == 200
        fams = await scrape(s, pod)
    p = resolve_profile("H100")
    # One decode per step; the context grows from prompt+1 to prompt+out-1 (mean prompt + out/2).
    step_s = (p.a_ms + p.d_ms_per_ctx_token * (prompt + out / 2)) / 1e3 / speedup
    mean_itl = value(fams, "vllm:inter_token_latency_seconds", "_sum") / value(fams, "vllm:inter_token_latency_seconds", "_count")
    assert mean_itl == pytest.approx(step_s, rel=0.01)
    prefill_s = (p.a_ms + p.s_ms_per_token * (prompt - p.k_tokens) + p.e_ms_per_pair * prompt * prompt / 2) / 1e3 / speedup
    ttft = value(fams, "vllm:time_to_first_token_seconds", "_sum")
    assert ttft == pytest.approx(prefill_s, rel=0.01)  # an idle engine: no queueing, one prefill step


# -- batching --------------------------------------------------------------------------------


async def test_the_batch_cap_holds_and_the_queue_grows_behind_it(emulator: Start) -> None:
    cap = 4
    pod = emulator("--model", "m", "--max-num-seqs", str(cap), "--speedup", "2")
    running_seen: list[float] = []
    waiting_seen: list[float] = []
    async with aiohttp.ClientSession() as s:
        body = {"prompt": "w " * 50, "max_tokens": 60}
        load = [asyncio.create_task(post(s, pod.url + "/v1/completions", body)) for _ in range(3 * cap)]
        while not all(t.done() for t in load):
            fams = await scrape(s, pod)
            running_seen.append(value(fams, "vllm:num_requests_running"))
            waiting_seen.append(value(fams, "vllm:num_requests_waiting"))
            await asyncio.sleep(0.02)
        results = await asyncio.gather(*load)
        fams = await scrape(s, pod)
    assert all(status == 200 for status, _ in results)
    assert max(running_seen) == cap  # the cap binds …
    assert max(waiting_seen) >= cap  # … and the rest wait behind it
    assert value(fams, "vllm:request_queue_time_seconds", "_sum") > 0.0
    assert value(fams, "vllm:request_success", "_total", finished_reason="length") == 3 * cap


async def test_the_token_budget_and_kv_capacity_bind_with_preemption_and_no_lost_request(emulator: Start) -> None:
    budget, blocks = 50, 20  # 50 tokens per step; a KV cache of 20 blocks of 16 = 320 tokens
    pod = emulator(
        "--model", "m", "--speedup", "10", "--max-num-seqs", "4", "--max-num-batched-tokens", str(budget),
        "--num-gpu-blocks-override", str(blocks), "--max-model-len", "300",
    )  # fmt: skip
    async with aiohttp.ClientSession() as s:
        body = {"prompt": "w " * 100, "max_tokens": 150}  # 250 tokens each: four cannot fit at once
        results = await asyncio.gather(*[post(s, pod.url + "/v1/completions", body) for _ in range(4)])
        fams = await scrape(s, pod)
    assert [(status, answer["usage"]["completion_tokens"]) for status, answer in results] == [(200, 150)] * 4
    assert value(fams, "vllm:num_preemptions", "_total") > 0
    steps = value(fams, "vllm:iteration_tokens_total", "_count")
    assert value(fams, "vllm:iteration_tokens_total", "_bucket", le=f"{budget:.1f}") == steps  # none above it
    # Recomputed prompts are not counted again: prompt tokens are per request, as in vLLM.
    assert value(fams, "vllm:prompt_tokens", "_total") == 4 * 100


async def test_inter_token_latency_grows_with_the_batch(emulator: Start) -> None:
    async def mean_itl(concurrency: int) -> float:
        pod = emulator("--model", "m", "--max-num-seqs", "64", "--speedup", "20")
        async with aiohttp.ClientSession() as s:
            body = {"prompt": "w " * 3000, "max_tokens": 30}
            results = await asyncio.gather(*[post(s, pod.url + "/v1/completions", body) for _ in range(concurrency)])
            assert all(status == 200 for status, _ in results)
            fams = await scrape(s, pod)
        pod.stop()
        return value(fams, "vllm:inter_token_latency_seconds", "_sum") / value(fams, "vllm:inter_token_latency_seconds", "_count")

    single, batched = await mean_itl(1), await mean_itl(48)
    p = resolve_profile("H100")
    # With 48 decodes of ~3000-token contexts each step reads 48x the KV: at least a + d*48*3000.
    assert batched >= (p.a_ms + p.d_ms_per_ctx_token * 48 * 3000) / 1e3 / 20  # real seconds at speed-up 20
    assert batched > 2 * single


# -- lifecycle -------------------------------------------------------------------------------


async def test_health_is_503_while_the_model_loads(emulator: Start) -> None:
    pod = emulator("--model", "m", "--startup-delay", "30", "--speedup", "20")  # 1.5 s real
    async with aiohttp.ClientSession() as s:
        async with s.get(pod.url + "/health") as resp:
            assert resp.status == 503
        status, body = await post(s, pod.url + "/v1/completions", {"prompt": "hi", "max_tokens": 2})
        assert status == 503 and body["type"] == "ServiceUnavailableError"
        for _ in range(100):
            async with s.get(pod.url + "/health") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
        assert resp.status == 200
        status, _ = await post(s, pod.url + "/v1/completions", {"prompt": "hi", "max_tokens": 2})
        assert status == 200


async def test_sigterm_drains_in_flight_streams_and_refuses_new_work(emulator: Start) -> None:
    pod = emulator("--model", "m", "--speedup", "1", "--shutdown-grace", "30")
    out = 150  # about a second of decoding at batch 8
    async with aiohttp.ClientSession() as s:
        body = {"prompt": "w " * 20, "max_tokens": out, "stream_options": {"include_usage": True}}
        streams = [asyncio.create_task(stream(s, pod.url + "/v1/completions", body)) for _ in range(8)]
        for _ in range(200):
            if value(await scrape(s, pod), "vllm:num_requests_running") == 8:
                break
            await asyncio.sleep(0.01)
        pod.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        async with s.get(pod.url + "/health") as resp:
            assert resp.status == 503
        status, _ = await post(s, pod.url + "/v1/completions", {"prompt": "late", "max_tokens": 2})
        assert status == 503
        finished = await asyncio.gather(*streams)
    for events in finished:
        assert events[-1] == "[DONE]"
        assert events[-2]["usage"]["completion_tokens"] == out
    assert await asyncio.to_thread(pod.proc.wait, 10) == 0
