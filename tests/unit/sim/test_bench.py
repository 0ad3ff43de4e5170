"""`sloscale bench` end to end: every policy runs, the numbers are sane, the outputs are written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sloscale import traces
from sloscale.cli import app
from sloscale.sim import report
from sloscale.sim.bench import ALL_POLICIES, BenchResult, Scenario, policies_from, run_bench
from sloscale.traces import Lengths

CONV = Path("/work/shared/data/traces/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv")
KEYS = {
    "attainment_windows", "attainment_requests", "gpu_hours", "p50_s", "p99_s", "scale_events",
    "batch_changes", "tokens_per_gpu_second", "max_queue",
}  # fmt: skip


def _trace() -> traces.Trace:
    # Six minutes of Azure-conv-sized requests: 10 req/s, tripling after two minutes.
    sample = traces.load_trace(CONV).slice(0, 600)
    return traces.step(10.0, 30.0, 120.0, 360.0, Lengths(sample_from=sample), seed=3)


def _scenario(**overrides: Any) -> Scenario:
    base: dict[str, Any] = {
        "trace_name": "step",
        "objective": "p99-ttft<=1s/1m",
        "cold_start_s": 60.0,
        "capacity_test_s": 120.0,
        "oracle_batches": (256,),
    }
    base.update(overrides)
    return Scenario(**base)


@pytest.fixture(scope="module")
def result() -> BenchResult:
    return run_bench(_trace(), _scenario())


def test_every_policy_reports_every_key_with_sane_values(result: BenchResult) -> None:
    assert set(result.policies) == set(ALL_POLICIES)
    for name, p in result.policies.items():
        assert set(p) >= KEYS, name
        assert 0.0 <= p["attainment_windows"] <= 1.0
        assert 0.0 <= p["attainment_requests"] <= 1.0
        assert p["gpu_hours"] > 0 and p["tokens_per_gpu_second"] > 0
        assert p["p50_s"] is None or p["p99_s"] is None or p["p50_s"] <= p["p99_s"]
        assert p["max_queue"] >= 0 and p["scale_events"] >= 0
        assert p["unfinished_requests"] == 0
    assert result.policies["static-peak"]["scale_events"] == 0
    assert result.policies["oracle"]["cost_vs_oracle"] == pytest.approx(1.0)


def test_the_oracle_is_the_cheapest_way_to_its_attainment(result: BenchResult) -> None:
    oracle = result.policies["oracle"]
    assert oracle["attainment_windows"] == 1.0
    for name, p in result.policies.items():
        if p["attainment_windows"] >= oracle["attainment_windows"]:
            assert oracle["gpu_hours"] <= p["gpu_hours"] * 1.001, name


def test_the_scale_up_follows_the_step(result: BenchResult) -> None:
    schedule = result.scenario["oracle"]["schedule"]
    assert max(schedule[3:]) > max(schedule[:2])
    ours = result.runs["sloscale"].timeline
    before = ours["desired"][ours["t"] < 120].max()
    assert ours["desired"].max() > before  # our law added replicas after the step


def test_json_table_and_plots(result: BenchResult, tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    report.write_json(result, path)
    data = json.loads(path.read_text())
    assert set(data) == {"scenario", "policies"}
    assert data["scenario"]["cold_start_s"] == 60.0 and data["scenario"]["requests"] == len(
        _trace()
    )
    console = Console(record=True, width=200)
    console.print(report.table(result))
    text = console.export_text()
    assert all(name in text for name in ALL_POLICIES)
    for png in report.write_plots(result, tmp_path / "plots"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_our_law_logs_every_tick_next_to_the_demand_really_offered(
    result: BenchResult, tmp_path: Path
) -> None:
    log: list[dict[str, Any]] = result.runs["sloscale"].decisions
    times = [entry["t"] for entry in log]
    assert times == sorted(times) and len(log) >= 360 / 15 - 1  # a tick every 15 s
    # The step: 10 req/s, then 30 from 120 s on (rate windows of one minute).
    before = [e["offered_rps"] for e in log if 60.0 < e["t"] <= 120.0]
    after = [e["offered_rps"] for e in log if e["t"] >= 190.0]
    assert before and all(7.0 < r < 13.0 for r in before)
    assert after and all(24.0 < r < 36.0 for r in after)
    assert any(e["action"] == "ScaleUp" for e in log)
    assert {"AssessMetrics", "ForecastDemand", "Recommend", "Feasibility"} <= set(log[-1]["stages"])
    # Later entries see the replicas earlier ones decided.
    decided = {e["decided_replicas"] for e in log}
    assert {e["replicas"] for e in log[1:]} <= decided | {log[0]["replicas"]}
    path = tmp_path / "decisions.jsonl"
    assert report.write_decisions(result, path) == len(log)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["t"] for line in lines] == times
    assert report.write_decisions(result, tmp_path / "none.jsonl", policy="hpa-concurrency") == 0


def test_runs_are_deterministic_for_a_seed() -> None:
    trace = _trace().slice(60.0, 240.0)
    scenario = _scenario(policies=("sloscale", "hpa-concurrency", "oracle"), capacity_test_s=60.0)

    def once() -> dict[str, Any]:
        res = run_bench(trace, scenario)
        return {k: {m: v for m, v in p.items() if m != "wall_s"} for k, p in res.policies.items()}

    assert once() == once()


def test_policy_lists_are_checked() -> None:
    assert policies_from("sloscale,hpa-concurrency") == ("sloscale", "hpa-concurrency", "oracle")
    with pytest.raises(ValueError, match="unknown policies"):
        policies_from("sloscale,magic")


def test_cli_writes_json_and_plots(tmp_path: Path) -> None:
    csv = tmp_path / "tiny.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    t = _trace().slice(0, 100)
    for at, i, o in zip(t.arrival_s, t.input_tokens, t.output_tokens, strict=True):
        whole = int(at)
        rows.append(
            f"2023-11-16 18:{whole // 60:02d}:{whole % 60:02d}.{int((at - whole) * 1e7):07d},{i},{o}"
        )
    csv.write_bytes(("\r\n".join(rows) + "\r\n").encode())
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--trace",
            str(csv),
            "--policies",
            "sloscale,static-peak",
            "--cold-start",
            "30s",
            "--capacity-test",
            "60s",
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "plots"),
            "--decisions",
            str(tmp_path / "decisions.jsonl"),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    ticks = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert ticks and all(json.loads(t)["reason"] for t in ticks)
    data = json.loads(out.read_text())
    assert set(data["policies"]) == {"sloscale", "static-peak", "oracle"}
    assert "policies simulated in" in result.output
    assert (tmp_path / "plots" / "cost_attainment.png").is_file()


def test_cli_rejects_bad_input(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "300"})
    missing = runner.invoke(app, ["bench", "--trace", str(tmp_path / "nope.csv")])
    assert missing.exit_code != 0 and "no such trace file" in missing.output
    bad = runner.invoke(app, ["bench", "--trace", str(CONV), "--objective", "fast please"])
    assert bad.exit_code != 0 and "not understood" in bad.output


def test_cli_curve(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--curve", "--plots", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "max_num_seqs" in result.output and (tmp_path / "curve.png").is_file()
