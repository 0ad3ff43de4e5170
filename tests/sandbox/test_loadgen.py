"""The load generator against real emulated pods: what it measures, what it reports, its bounds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sloscale.sandbox.loadgen import LoadConfig, LoadGenerator, replay, require_loopback
from sloscale.traces import Lengths, Trace, constant

Start = Callable[..., Any]  # the `emulator` fixture
AZURE_CONV = Path(__file__).resolve().parents[3] / "shared/data/traces/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv"


def burst_at_zero(n: int, prompt: int, output: int) -> Trace:
    return Trace(np.zeros(n), np.full(n, prompt, dtype=np.int64), np.full(n, output, dtype=np.int64), "burst")


async def test_client_numbers_agree_with_the_pods_own_histograms(emulator: Start) -> None:
    speedup = 10.0
    pod = emulator("--model", "m", "--max-num-seqs", "8", "--speedup", str(speedup))
    trace = constant(4.0, 20.0, Lengths(300, 40), seed=3)  # 20 model seconds: 2 real seconds
    config = LoadConfig(url=pod.url, speedup=speedup, metrics_urls=(pod.url + "/metrics",), timeout_s=60)
    report = await replay(config, trace)
    summary = report.summary()

    assert summary["succeeded"] == len(trace) and summary["failed"] == 0
    assert sum(r.output_tokens for r in report.records) == int(trace.output_tokens.sum())
    client, engine = summary["client"], summary["engine"]
    # The engine saw every request and every token gap the client saw.
    assert engine["e2e"]["count"] == engine["ttft"]["count"] == len(trace)
    assert engine["itl"]["count"] == client["itl"]["count"] == int((trace.output_tokens - 1).sum())
    # The client waits for the engine and then some (HTTP, the stream's delivery tick): in model
    # seconds, more than the engine's own latency but by a system overhead of real milliseconds.
    for key in ("ttft", "e2e"):
        overhead = client[key]["mean"] - engine[key]["mean"]
        assert 0.0 <= overhead <= 0.1 * speedup, (key, overhead)
    assert client["itl"]["mean"] == pytest.approx(engine["itl"]["mean"], rel=0.25)


async def test_a_real_trace_slice_replays_with_time_compression(emulator: Start) -> None:
    from sloscale.traces import load_trace

    pod = emulator("--model", "m", "--speedup", "20")
    trace = load_trace(AZURE_CONV).slice(0.0, 30.0)
    config = LoadConfig(url=pod.url, speedup=20, api="chat", timeout_s=60)
    started = time.monotonic()
    report = await replay(config, trace)
    real = time.monotonic() - started
    summary = report.summary()
    assert summary["succeeded"] == len(trace) > 50
    assert summary["model_s"] >= trace.duration_s
    assert real < trace.duration_s  # replayed faster than the trace's own clock
    assert [r.prompt_tokens for r in report.records] == [int(x) for x in trace.input_tokens]


async def test_server_errors_are_recorded_as_failures_and_clipping_avoids_them(emulator: Start) -> None:
    pod = emulator("--model", "m", "--max-model-len", "128", "--speedup", "20")
    trace = burst_at_zero(3, prompt=200, output=20)
    failed = (await replay(LoadConfig(url=pod.url, speedup=20, timeout_s=30), trace)).summary()
    assert failed["succeeded"] == 0 and failed["failures"] == {"status 400": 3}
    clipped = await replay(LoadConfig(url=pod.url, speedup=20, max_context=128, timeout_s=30), trace)
    assert clipped.summary()["succeeded"] == 3
    assert all(r.prompt_tokens + r.output_tokens <= 128 for r in clipped.records)


async def test_open_loop_drops_beyond_the_in_flight_bound_instead_of_queueing(emulator: Start) -> None:
    pod = emulator("--model", "m", "--speedup", "5")
    report = await replay(LoadConfig(url=pod.url, speedup=5, max_in_flight=2, timeout_s=30), burst_at_zero(6, 10, 30))
    summary = report.summary()
    assert summary["succeeded"] == 2
    assert summary["failures"] == {"dropped": 4}


async def test_the_real_time_limit_cancels_outstanding_requests(emulator: Start) -> None:
    pod = emulator("--model", "m", "--speedup", "1")
    trace = Trace(np.array([0.0, 0.0, 30.0]), np.array([10, 10, 10]), np.array([5000, 5000, 5]), "slow")
    started = time.monotonic()
    report = await replay(LoadConfig(url=pod.url, timeout_s=1.0), trace)
    assert time.monotonic() - started < 10
    assert report.summary()["failures"] == {"timeout": 3}  # two cut off mid-stream, one never sent
    assert all(r.output_tokens < 5000 for r in report.records)


def test_trace_duration_and_count_bound_the_replay() -> None:
    trace = constant(10.0, 100.0, seed=1)
    assert LoadGenerator(LoadConfig(url="http://127.0.0.1:1", duration_s=10.0), trace).count == len(trace.slice(0, 10))
    assert LoadGenerator(LoadConfig(url="http://127.0.0.1:1", max_requests=7), trace).count == 7


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000", "http://example.com", "ftp://127.0.0.1/x"])
def test_only_loopback_http_endpoints_are_accepted(url: str) -> None:
    with pytest.raises(ValueError):
        require_loopback(url)
    with pytest.raises(ValueError):
        LoadConfig(url="http://127.0.0.1:8000", metrics_urls=(url,))


def test_loopback_spellings_are_accepted() -> None:
    for url in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000", "http://127.3.4.5"):
        require_loopback(url)


def test_the_cli_replays_a_trace_file_and_writes_json(emulator: Start, tmp_path: Path) -> None:
    pod = emulator("--model", "m", "--speedup", "20")
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": i * 100, "input_length": 20, "output_length": 8}) + "\n" for i in range(10)))
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "sloscale", "sandbox", "loadgen", "--url", pod.url, "--trace", str(trace),
         "--speedup", "20", "--rate-scale", "2", "--metrics-url", pod.url + "/metrics", "--output", str(out), "--per-request"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "10 ok" in done.stdout
    report = json.loads(out.read_text())
    assert report["summary"]["succeeded"] == 10
    assert report["summary"]["engine"]["e2e"]["count"] == 10
    assert [r["scheduled_s"] for r in report["requests"]] == pytest.approx([i * 0.05 for i in range(10)])


def test_the_cli_rejects_a_remote_endpoint(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 2, "output_length": 2}) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "sloscale", "sandbox", "loadgen", "--url", "http://192.0.2.1:80", "--trace", str(trace)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "loopback" in done.stderr


async def test_a_stream_interrupted_by_a_dying_pod_is_a_failure(emulator: Start) -> None:
    pod = emulator("--model", "m", "--speedup", "1", "--shutdown-grace", "0")
    task = asyncio.create_task(replay(LoadConfig(url=pod.url, timeout_s=20), burst_at_zero(1, 10, 3000)))
    await asyncio.sleep(0.5)
    pod.proc.kill()
    report = await task
    record = report.records[0]
    assert not record.ok and record.error is not None
    assert 0 < record.output_tokens < 3000
