"""Trace loading, reshaping and synthesis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sloscale import traces
from sloscale.traces import Lengths, Segment, TraceError

AZURE = Path("/work/shared/data/traces/azure_llm_inference_2023")
SHAPES = Path("/work/shared/data/traces/servegen_derived")


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def test_azure_csv_with_crlf_and_seven_digit_fractions(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n"
        "2023-11-16 18:15:47.0000001,10,2\n",
        newline="\r\n",
    )
    t = traces.load_trace(path)
    # Sorted by arrival, relative to the first, fractions read to the 7th digit.
    assert t.arrival_s.tolist() == pytest.approx([0.0, 0.3194101, 4.314579], abs=1e-6)
    assert t.input_tokens.tolist() == [374, 10, 396]
    assert t.output_tokens.tolist() == [44, 2, 109]
    assert t.name == "t"


def test_the_real_azure_conv_trace_matches_its_published_statistics() -> None:
    t = traces.load_trace(AZURE / "AzureLLMInferenceTrace_conv.csv")
    assert len(t) == 19_366
    assert t.duration_s == pytest.approx(3502, abs=1)
    assert t.mean_rate == pytest.approx(5.53, abs=0.01)
    assert float(t.input_tokens.mean()) == pytest.approx(1155, abs=1)
    assert float(t.output_tokens.mean()) == pytest.approx(211, abs=1)


def test_jsonl_in_milliseconds_ignores_extra_fields(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 2500, "input_length": 100, "output_length": 7, "model": "x"},
        {"timestamp": 1000, "input_length": 50, "output_length": 3, "hash_ids": [1, 2]},
    ]
    path = write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    t = traces.load_trace(path)
    assert t.arrival_s.tolist() == [0.0, 1.5]
    assert t.input_tokens.tolist() == [50, 100] and t.output_tokens.tolist() == [3, 7]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "TIME,In,Out\n1,2,3\n", "lacks column"),
        (
            "b.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,abc,3\n",
            r"b.csv:2",
        ),
        ("c.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nnot a time,1,3\n", r"c.csv:2"),
        ("d.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
        (
            "e.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,0,3\n",
            "fewer than one",
        ),
        ("f.jsonl", '{"timestamp": 1, "input_length": 2}\n', "missing field 'output_length'"),
        (
            "g.jsonl",
            '{"timestamp": 1, "input_length": 2, "output_length": 3}\n{oops\n',
            r"g.jsonl:2: not JSON",
        ),
        ("h.jsonl", '{"timestamp": "x", "input_length": 2, "output_length": 3}\n', "bad value"),
        ("i.txt", "whatever", "unknown trace format"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        traces.load_trace(write(tmp_path / name, content))


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such trace file"):
        traces.load_trace(tmp_path / "absent.csv")


def test_scale_rate_compresses_time_and_keeps_requests() -> None:
    t = traces.constant(2.0, 100.0, seed=3)
    fast = t.scale_rate(4.0)
    assert len(fast) == len(t)
    assert fast.arrival_s == pytest.approx(t.arrival_s / 4.0)
    assert fast.mean_rate == pytest.approx(4.0 * t.mean_rate)
    with pytest.raises(ValueError):
        t.scale_rate(0.0)


def test_slice_rebases_to_zero_and_keeps_only_the_range() -> None:
    t = traces.constant(5.0, 100.0, seed=1)
    part = t.slice(20.0, 40.0)
    inside = (t.arrival_s >= 20.0) & (t.arrival_s < 40.0)
    assert len(part) == int(inside.sum())
    assert part.arrival_s == pytest.approx(t.arrival_s[inside] - 20.0)
    assert part.input_tokens.tolist() == t.input_tokens[inside].tolist()
    with pytest.raises(ValueError, match="empty time range"):
        t.slice(5.0, 5.0)


def test_synthetic_step_has_the_rates_on_each_side_and_is_deterministic() -> None:
    t = traces.step(2.0, 8.0, at_s=600.0, duration_s=1200.0, seed=7)
    rates = t.rate_per_window(600.0)
    assert rates[0] == pytest.approx(2.0, rel=0.15)
    assert rates[1] == pytest.approx(8.0, rel=0.10)
    again = traces.step(2.0, 8.0, at_s=600.0, duration_s=1200.0, seed=7)
    assert np.array_equal(t.arrival_s, again.arrival_s)
    other = traces.step(2.0, 8.0, at_s=600.0, duration_s=1200.0, seed=8)
    assert not np.array_equal(t.arrival_s[:20], other.arrival_s[:20])


def test_synthetic_ramp_and_burst_follow_their_shape() -> None:
    ramp = traces.ramp(0.0, 20.0, 1000.0, seed=2)
    first, last = ramp.rate_per_window(250.0)[[0, 3]]
    assert first == pytest.approx(2.5, rel=0.2) and last == pytest.approx(17.5, rel=0.1)
    burst = traces.burst(1.0, 30.0, start_s=100.0, length_s=20.0, duration_s=300.0, seed=2)
    per_10s = burst.rate_per_window(10.0)
    assert per_10s[10:12].mean() == pytest.approx(30.0, rel=0.2)
    assert per_10s[:10].mean() == pytest.approx(1.0, rel=0.5)


def test_lengths_can_be_resampled_from_a_real_trace() -> None:
    source = traces.Trace(np.array([0.0, 1.0]), np.array([10, 20]), np.array([1, 2]))
    t = traces.poisson([Segment(100.0, 3.0)], Lengths(sample_from=source), seed=4)
    pairs = set(zip(t.input_tokens.tolist(), t.output_tokens.tolist(), strict=True))
    assert pairs == {(10, 1), (20, 2)}


def test_rate_shape_drops_zero_windows_and_modulation_follows_it(tmp_path: Path) -> None:
    path = write(
        tmp_path / "shape.csv",
        "window_start_s,total_rate_rps,active_clients\n0,10,3\n600,0,0\n1200,30,4\n1800,20,4\n",
    )
    shape = traces.load_rate_shape(path)
    assert shape.rates.tolist() == [10.0, 30.0, 20.0] and shape.window_s == 600.0
    base = traces.constant(6.0, 600.0, seed=5)
    bent = base.modulate(shape, duration_s=900.0)
    per_window = bent.rate_per_window(300.0)[:3]
    # Relative rates 0.5, 1.5, 1.0 times the trace's own mean rate.
    assert per_window.tolist() == pytest.approx([3.0, 9.0, 6.0], rel=0.15)


def test_real_servegen_shape_loads_without_gaps() -> None:
    shape = traces.load_rate_shape(SHAPES / "language_m-mid_aggregate_rate.csv")
    assert len(shape.rates) == 2016 - 84 and np.all(shape.rates > 0)
    assert float(shape.relative_rate.mean()) == pytest.approx(1.0)


def test_bad_rate_shape_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="expected columns"):
        traces.load_rate_shape(write(tmp_path / "a.csv", "start,rate\n0,1\n"))
    with pytest.raises(TraceError, match="zero rate"):
        traces.load_rate_shape(
            write(tmp_path / "b.csv", "window_start_s,total_rate_rps\n0,0\n600,0\n")
        )
    with pytest.raises(TraceError, match="b2.csv:3"):
        traces.load_rate_shape(
            write(tmp_path / "b2.csv", "window_start_s,total_rate_rps\n0,1\n600,x\n")
        )


def test_multiply_scales_the_rate_over_the_same_span() -> None:
    t = traces.load_trace(AZURE / "AzureLLMInferenceTrace_conv.csv").slice(0, 1200)
    big = t.multiply(7.5, seed=2)
    assert len(big) / len(t) == pytest.approx(7.5, rel=0.02)
    assert big.duration_s == pytest.approx(t.duration_s, abs=1.0)
    assert big.rate_per_window(300.0)[:4] == pytest.approx(
        7.5 * t.rate_per_window(300.0)[:4], rel=0.05
    )
    # Copies keep their request's sizes: the length mix is unchanged.
    assert float(big.input_tokens.mean()) == pytest.approx(float(t.input_tokens.mean()), rel=0.03)
    assert np.array_equal(t.multiply(1.0).arrival_s, t.arrival_s)
    assert np.array_equal(big.arrival_s, t.multiply(7.5, seed=2).arrival_s)
    with pytest.raises(ValueError):
        t.multiply(-1.0)
