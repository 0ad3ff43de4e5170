"""Stage 2, observe: what one fresh snapshot adds to the state."""

from __future__ import annotations

from dataclasses import replace

import pytest
from scaling_situations import latency_policy, snapshot, workload

from sloscale.scaling import ControlState, Reason
from sloscale.scaling.capacity import fit_coefficients
from sloscale.scaling.observe import (
    arrival_rate,
    mix_reading,
    observe,
    observed_mix,
    queue_growth,
    step_reading,
)
from sloscale.scaling.state import DEFAULT_MIX, Mix

POLICY = latency_policy()


def state_after(waiting: float, at: float = 0.0) -> ControlState:
    return replace(ControlState.initial(at, 2, 64), last_tick=at, last_waiting=waiting)


@pytest.mark.parametrize(
    ("before", "after", "rps", "growth", "arrivals"),
    [
        (0.0, 0.0, 10.0, 0.0, 10.0),
        (0.0, 30.0, 10.0, 2.0, 12.0),  # the queue grew 30 in 15 s: two more arrive than complete
        (60.0, 30.0, 10.0, -2.0, 8.0),  # a backlog drains: completions overstate arrivals
        (60.0, 0.0, 1.0, -4.0, 0.0),  # never negative
    ],
)
def test_arrivals_are_completions_plus_queue_growth(
    before: float, after: float, rps: float, growth: float, arrivals: float
) -> None:
    snap = snapshot(15.0, rps=rps, waiting=after)
    g = queue_growth(snap, state_after(before), 15.0)
    assert g == pytest.approx(growth)
    assert arrival_rate(snap, g) == pytest.approx(arrivals)


def test_first_tick_has_no_queue_growth() -> None:
    assert (
        queue_growth(snapshot(rps=1.0, waiting=50.0), ControlState.initial(0.0, 1, 64), 0.0) == 0.0
    )


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (None, Mix(2048.0, 128.0)),
        (Mix(1000.0, 100.0), Mix(1000.0 * 0.7 + 2048.0 * 0.3, 100.0 * 0.7 + 128.0 * 0.3)),
    ],
)
def test_mix_is_measured_and_smoothed(previous: Mix | None, expected: Mix) -> None:
    got = observed_mix(snapshot(rps=4.0, prompt_tokens=2048.0, output_tokens=128.0), previous)
    assert got == pytest.approx(expected)


def test_mix_keeps_the_last_measure_without_traffic() -> None:
    assert observed_mix(snapshot(rps=0.0, running=0.0), Mix(5.0, 6.0)) == Mix(5.0, 6.0)


def test_observe_records_demand_mix_fit_cold_start_and_the_window() -> None:
    state = ControlState.initial(0.0, 2, 64)
    snap = snapshot(15.0, rps=10.0, running=40.0, pods=2, prompt_tokens=512.0, output_tokens=512.0)
    new, seen, outcome = observe(state, snap, workload(2, starts=(100.0, 130.0)), POLICY, 15.0)
    assert outcome.reason == Reason.STATE_UPDATED
    assert new.demand == ((15.0, 10.0),)
    assert new.mix == Mix(512.0, 512.0) and seen.mix == Mix(512.0, 512.0)
    assert new.fit.weight == 1.0
    assert new.cold_start_s == 130.0 and seen.cold_start_s == 130.0
    assert seen.concurrency == 20.0 and seen.batch == 64
    assert new.attainment is not None and new.attainment.window_start == 0.0
    assert "arrivals 10 req/s" in outcome.message


def test_observe_does_not_fit_during_a_rollout() -> None:
    state = ControlState.initial(0.0, 2, 64)
    snap = snapshot(15.0, rps=10.0, running=40.0, pods=2)
    new, _, _ = observe(state, snap, workload(2, rollout=True), POLICY, 15.0)
    assert new.fit == state.fit and new.calibration == state.calibration


def test_observe_without_traffic_uses_the_default_mix_and_the_policy_cold_start() -> None:
    state = ControlState.initial(0.0, 1, None)
    _, seen, _ = observe(
        state, snapshot(15.0, rps=0.0, running=0.0), workload(1, batch=None), POLICY, 15.0
    )
    assert seen.mix == DEFAULT_MIX
    assert seen.cold_start_s == POLICY.cold_start_s
    assert seen.batch == POLICY.profile.default_max_num_seqs  # vLLM's default when unset


def test_observed_step_time_moves_the_fit() -> None:
    state = ControlState.initial(0.0, 2, 64)
    slow = snapshot(15.0, rps=1.0, running=40.0, pods=2)  # 40 running, 256 tok/s: 156 ms per step
    new, _, _ = observe(state, slow, workload(2), POLICY, 15.0)
    alpha, beta = fit_coefficients(new.fit)
    assert alpha > 1.0 and beta > 1.0


def test_the_step_is_read_from_the_inter_token_latency_sum_and_count() -> None:
    # 2 pods; 1,800 tokens/s decoded at 20 ms mean: 36 s of inter-token latency per second, i.e.
    # 36 sequences decoding, 18 per pod — whatever the running gauge showed at the scrape.
    snap = replace(
        snapshot(rps=8.0, running=90.0, pods=2), itl_seconds_per_s=36.0, itl_tokens_per_s=1800.0
    )
    concurrency, step = step_reading(snap) or (0.0, 0.0)
    assert concurrency == pytest.approx(18.0)
    assert step == pytest.approx(0.020)


def test_without_the_sum_the_step_falls_back_to_the_running_gauge() -> None:
    snap = snapshot(rps=1.0, running=40.0, pods=2)  # 40 running, 256 tok/s
    assert step_reading(snap) == pytest.approx((20.0, 40.0 / 256.0))


@pytest.mark.parametrize(("seconds", "tokens"), [(0.0, 0.0), (0.5, 40.0)])
def test_no_step_reading_when_almost_nothing_decodes(seconds: float, tokens: float) -> None:
    snap = replace(snapshot(rps=0.1), itl_seconds_per_s=seconds, itl_tokens_per_s=tokens)
    assert step_reading(snap) is None


def test_a_step_read_from_the_histogram_sum_moves_the_fit_where_the_gauge_would_not() -> None:
    # The gauge caught a quiet instant (2 running), the window says 40 sequences at 156 ms.
    snap = replace(
        snapshot(15.0, rps=1.0, running=2.0, pods=2),
        itl_seconds_per_s=40.0,
        itl_tokens_per_s=256.0,
    )
    new, _, _ = observe(ControlState.initial(0.0, 2, 64), snap, workload(2), POLICY, 15.0)
    alpha, beta = fit_coefficients(new.fit)
    assert new.fit.weight == 1.0 and alpha > 1.0 and beta > 1.0


def test_the_mix_pairs_tokens_and_requests_counted_when_requests_finish() -> None:
    # Load just rose: the prompt counter runs 5x ahead of the requests that finished, while the
    # per-request sums count the same finished requests as the request rate.
    rising = replace(
        snapshot(rps=10.0, prompt_tokens=5000.0, output_tokens=200.0),
        finished_prompt_tokens_per_s=10_000.0,
        finished_generation_tokens_per_s=2_100.0,
    )
    assert mix_reading(rising) == Mix(1000.0, 210.0)


def test_without_the_per_request_sums_the_mix_comes_from_the_token_counters() -> None:
    assert mix_reading(snapshot(rps=4.0, prompt_tokens=2048.0, output_tokens=128.0)) == Mix(
        2048.0, 128.0
    )
    assert mix_reading(snapshot(rps=0.0, running=0.0)) is None
