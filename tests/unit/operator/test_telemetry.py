"""The operator's /metrics and /healthz, served over real HTTP."""

from __future__ import annotations

import aiohttp
from operator_cases import TTFT_1S, decision, hold

from sloscale.telemetry import Telemetry, TelemetryServer


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_metrics_carry_every_service_and_forget_deleted_ones() -> None:
    telemetry = Telemetry()
    telemetry.record("team-a", "chat", decision(), TTFT_1S, current=4, ready=2)
    telemetry.record("team-a", "chat", hold(replicas=4), TTFT_1S, current=4, ready=4)
    telemetry.record("team-b", "batch", hold(), TTFT_1S, current=2, ready=2)
    server = TelemetryServer(telemetry, lambda: True, host="127.0.0.1", port=0)
    await server.start()
    try:
        status, text = await get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200
        chat = 'namespace="team-a",service="chat"'
        assert f'sloscale_decisions_total{{action="ScaleUp",{chat}}} 1.0' in text
        assert f'sloscale_decisions_total{{action="Hold",{chat}}} 1.0' in text
        assert f"sloscale_replicas_desired{{{chat}}} 4.0" in text
        assert f"sloscale_replicas_ready{{{chat}}} 4.0" in text
        assert f"sloscale_objective_ratio{{{chat}}} 1.8" in text  # 1.8 s observed / 1 s target
        assert f"sloscale_attainment_ratio{{{chat}}} 0.97" in text
        assert f"sloscale_objective_met{{{chat}}} 0.0" in text
        assert "# HELP sloscale_decisions_total" in text and "action: Hold, ScaleUp" in text

        telemetry.forget("team-a", "chat")
        _, text = await get(f"http://127.0.0.1:{server.port}/metrics")
        assert 'service="chat"' not in text
        assert 'namespace="team-b",service="batch"' in text
    finally:
        await server.stop()


async def test_healthz_follows_the_tick_loop() -> None:
    alive = [True]
    server = TelemetryServer(Telemetry(), lambda: alive[0], host="127.0.0.1", port=0)
    await server.start()
    try:
        assert (await get(f"http://127.0.0.1:{server.port}/healthz"))[0] == 200
        alive[0] = False
        status, text = await get(f"http://127.0.0.1:{server.port}/healthz")
        assert status == 503 and "tick" in text
    finally:
        await server.stop()


async def test_a_service_that_is_not_evaluated_keeps_its_counters_but_no_stale_readings() -> None:
    telemetry = Telemetry()
    telemetry.record("team-a", "chat", decision(), TTFT_1S, current=4, ready=2)
    telemetry.forget_gauges("team-a", "chat")
    server = TelemetryServer(telemetry, lambda: True, host="127.0.0.1", port=0)
    await server.start()
    try:
        _, text = await get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        await server.stop()
    assert 'sloscale_replicas_desired{namespace="team-a"' not in text
    assert (
        'sloscale_decisions_total{action="ScaleUp",namespace="team-a",service="chat"} 1.0' in text
    )


async def test_metrics_can_be_asked_for_a_few_series_only() -> None:
    telemetry = Telemetry()
    telemetry.record("team-a", "chat", decision(), TTFT_1S, current=4, ready=2)
    telemetry.tick_duration.observe(0.5)
    telemetry.tick_duration.observe(1.5)
    server = TelemetryServer(telemetry, lambda: True, host="127.0.0.1", port=0)
    await server.start()
    try:
        names = (
            "name[]=sloscale_tick_duration_seconds_count&name[]=sloscale_tick_duration_seconds_sum"
        )
        status, text = await get(f"http://127.0.0.1:{server.port}/metrics?{names}")
    finally:
        await server.stop()
    assert status == 200
    samples = sorted(line for line in text.splitlines() if not line.startswith("#"))
    assert samples == [
        "sloscale_tick_duration_seconds_count 2.0",
        "sloscale_tick_duration_seconds_sum 2.0",
    ]
