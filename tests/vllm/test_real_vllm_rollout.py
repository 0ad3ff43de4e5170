"""A batch change on the real engine: `--max-num-seqs` caps what runs, and a new cap follows.

The operator's batch lever is vLLM's `--max-num-seqs` in the pod template; changing it rolls the
pods, so the engine restarts with the new argument. Here the real engine runs with a cap of 2,
twelve long requests arrive at once, and its own gauges (read from `/metrics` back to back while
they run) must show the batch full at 2 with the rest waiting, never more than 2 running; then the
engine is restarted with a cap of 4, as the new pod of a rolling update, and the same burst shows
4 running and never more.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from real_vllm_support import Engine, GaugeProbe, observed_burst, timeline

from sloscale.sandbox.loadgen import LoadConfig, LoadReport, replay
from sloscale.sandbox.real_vllm import RealVllmServer
from sloscale.traces import Trace

# An engine start can take minutes on two busy cores; it counts towards the first test using it.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

BURST = 12  # three waves at the larger cap: requests wait behind a full batch for a while
PROMPT_WORDS = 16
OUTPUT_TOKENS = 224  # long enough that the waiting requests are seen: prompt + output ≤ 256


def burst_with_probe(server: RealVllmServer) -> list[tuple[LoadReport, GaugeProbe]]:
    """BURST simultaneous streaming requests, while the probe reads running/waiting (repeated
    when `/metrics` went unanswered through a whole burst: `observed_burst`)."""
    trace = Trace(
        np.zeros(BURST),
        np.full(BURST, PROMPT_WORDS, dtype=np.int64),
        np.full(BURST, OUTPUT_TOKENS, dtype=np.int64),
        "burst",
    )
    config = LoadConfig(url=server.url, max_context=server.max_model_len, timeout_s=180)
    return observed_burst(server.url, lambda: asyncio.run(replay(config, trace)))


@pytest.mark.parametrize("cap", [2, 4])
def test_running_batch_never_exceeds_max_num_seqs(engine: Engine, cap: int) -> None:
    server = engine.ensure(cap)
    runs = burst_with_probe(server)
    records = [r for report, _ in runs for r in report.records]
    readings = [reading for _, probe in runs for reading in probe.readings]

    failed = [(r.index, r.status, r.error) for r in records if not r.ok]
    assert not failed, failed
    assert all(r.output_tokens == OUTPUT_TOKENS for r in records)

    over = [(running, waiting) for running, waiting in readings if running > cap]
    assert not over, f"--max-num-seqs {cap}, yet vLLM reported (running, waiting) {over}"
    queued_full = [(r, w) for r, w in readings if w > 0 and r == cap]
    assert queued_full, (
        f"never saw the batch full at {cap} with requests waiting: "
        f"{[timeline(probe) for _, probe in runs]}"
    )
    assert all(running + waiting <= BURST for running, waiting in readings)
    # The cap is the limit, not the load: the batch filled to it and no further.
    assert max(running for running, _ in readings) == cap
