"""Request traces: load public LLM-serving traces, reshape them, or synthesise them for tests.

A `Trace` is three aligned numpy arrays — arrival seconds from 0 (ascending), input tokens and
output tokens — and every transformation returns a new one. The simulator, the bench and the load
generator replay the same type.

Formats read:

- Azure LLM inference trace (CSV): `TIMESTAMP,ContextTokens,GeneratedTokens`, wall-clock
  timestamps with up to 7 fractional digits, CRLF line endings;
- JSONL, one request per line: `timestamp` in milliseconds, `input_length`, `output_length`;
  other fields are ignored.

Public traces come from fleets of another size, so their rate is rescaled: `scale_rate(x)`
compresses time by `x` (same requests, x times the rate, a shorter trace), `multiply(x)` replays
each request about `x` times over the same span (x times the rate, same duration), and
`modulate(shape)` bends the arrival times so that the rate follows a rate-shape file (ServeGen's
per-window aggregate rates: `window_start_s,total_rate_rps,active_clients`) — a diurnal or weekly
envelope over a one-hour per-request trace. Zero-rate windows in a shape are collection gaps and
are dropped, not read as idle time.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class TraceError(ValueError):
    """A trace or rate-shape file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival. `arrival_s[0]` is 0 for a loaded trace (times are relative)."""

    arrival_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    name: str = "trace"

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.input_tokens) != n or len(self.output_tokens) != n:
            raise ValueError("arrival, input and output arrays must have the same length")
        if n and (np.any(np.diff(self.arrival_s) < 0) or self.arrival_s[0] < 0):
            raise ValueError("arrivals must be non-negative and ascending")
        if n and (np.any(self.input_tokens < 1) or np.any(self.output_tokens < 1)):
            raise ValueError("every request needs at least one input and one output token")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        """Time from 0 to the last arrival."""
        return float(self.arrival_s[-1]) if len(self) else 0.0

    @property
    def mean_rate(self) -> float:
        """Requests per second over the trace's span."""
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0

    def with_name(self, name: str) -> Trace:
        return Trace(self.arrival_s, self.input_tokens, self.output_tokens, name)

    def scale_rate(self, factor: float) -> Trace:
        """The same requests `factor` times as fast (time compressed by `factor`)."""
        if not factor > 0 or math.isinf(factor):
            raise ValueError(f"rate factor must be a positive number, got {factor}")
        return Trace(self.arrival_s / factor, self.input_tokens, self.output_tokens, self.name)

    def multiply(self, factor: float, jitter_s: float = 1.0, seed: int = 0) -> Trace:
        """`factor` times the rate over the same span: each request is replayed `floor(factor)`
        times, plus once more with probability `factor - floor(factor)`, each copy shifted by a
        uniform offset in [0, jitter_s). The minute-scale rate shape and the length mix are kept;
        bursts grow with the rate, as they do in a larger fleet."""
        if not factor > 0 or math.isinf(factor):
            raise ValueError(f"rate factor must be a positive number, got {factor}")
        if jitter_s < 0:
            raise ValueError("jitter must be non-negative")
        rng = np.random.default_rng(seed)
        whole = int(factor)
        copies = np.full(len(self), whole, dtype=np.int64)
        copies += rng.random(len(self)) < factor - whole
        idx = np.repeat(np.arange(len(self)), copies)
        shift = rng.uniform(0.0, jitter_s, size=len(idx)) if jitter_s > 0 else np.zeros(len(idx))
        # The first copy of each request keeps its time, so factor 1 returns the trace itself.
        first = np.ones(len(idx), dtype=bool)
        first[1:] = idx[1:] != idx[:-1]
        arrival = self.arrival_s[idx] + np.where(first, 0.0, shift)
        order = np.argsort(arrival, kind="stable")
        return Trace(
            arrival[order], self.input_tokens[idx][order], self.output_tokens[idx][order], self.name
        )

    def slice(self, start_s: float, end_s: float | None = None) -> Trace:
        """Requests arriving in [start_s, end_s), re-based so the slice starts at 0."""
        end = math.inf if end_s is None else end_s
        if end <= start_s:
            raise ValueError(f"empty time range [{start_s}, {end_s})")
        lo = int(np.searchsorted(self.arrival_s, start_s, side="left"))
        hi = int(np.searchsorted(self.arrival_s, end, side="left"))
        return Trace(
            self.arrival_s[lo:hi] - start_s,
            self.input_tokens[lo:hi],
            self.output_tokens[lo:hi],
            self.name,
        )

    def repeat_to(self, duration_s: float) -> Trace:
        """Concatenate copies of the trace (each offset by its span plus one mean gap) until it
        covers `duration_s`, then cut there."""
        if not len(self):
            raise ValueError("cannot repeat an empty trace")
        period = self.duration_s + (1.0 / self.mean_rate if self.mean_rate > 0 else 1.0)
        copies = max(1, math.ceil(duration_s / period))
        arrival = np.concatenate([self.arrival_s + i * period for i in range(copies)])
        ins = np.tile(self.input_tokens, copies)
        outs = np.tile(self.output_tokens, copies)
        keep = arrival < duration_s
        return Trace(arrival[keep], ins[keep], outs[keep], self.name)

    def modulate(self, shape: RateShape, duration_s: float) -> Trace:
        """Bend arrival times so the rate over `duration_s` follows `shape` (stretched or
        compressed to span `duration_s`), with the trace's own mean rate as the shape's mean.

        The trace is repeated as needed. Arrivals are time-warped through the shape's cumulative
        rate, so short-term burstiness and the length mix of the trace are kept.
        """
        if duration_s <= 0:
            raise ValueError("duration must be positive")
        relative = shape.relative_rate
        edges = np.linspace(0.0, duration_s, len(relative) + 1)
        # Cumulative "trace time" consumed by each output window: rate multiplier x window length.
        consumed = np.concatenate([[0.0], np.cumsum(relative * np.diff(edges))])
        base = self.repeat_to(float(consumed[-1]) + 1e-9)
        warped = np.interp(base.arrival_s, consumed, edges)
        return Trace(warped, base.input_tokens, base.output_tokens, f"{self.name}×{shape.name}")

    def rate_per_window(self, window_s: float) -> FloatArray:
        """Arrivals per second in consecutive windows of `window_s` from 0."""
        if not len(self):
            return np.zeros(0)
        bins = int(self.duration_s // window_s) + 1
        counts = np.bincount((self.arrival_s // window_s).astype(np.int64), minlength=bins)
        return counts.astype(np.float64) / window_s


@dataclass(frozen=True)
class RateShape:
    """A piecewise-constant rate envelope, one value per window, zero-rate gaps removed."""

    rates: FloatArray
    window_s: float
    name: str = "shape"

    @property
    def relative_rate(self) -> FloatArray:
        """Rates divided by their mean (mean 1)."""
        return self.rates / float(np.mean(self.rates))


# -- loading ------------------------------------------------------------------------------------


def load_trace(path: str | Path) -> Trace:
    """Load an Azure-style CSV (`.csv`) or a JSONL trace (`.jsonl`, `.json`)."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"{p}: no such trace file")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return load_azure_csv(p)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return load_jsonl(p)
    raise TraceError(f"{p}: unknown trace format {suffix!r} (expected .csv or .jsonl)")


def _parse_timestamp(text: str) -> float:
    # Python's fromisoformat takes at most 6 fractional digits; the Azure trace writes 7.
    head, dot, frac = text.strip().partition(".")
    moment = datetime.fromisoformat(head)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # relative times only; UTC avoids DST jumps
    fraction = float("0." + frac) if dot and frac else 0.0
    if dot and not frac.isdigit():
        raise ValueError(f"bad fractional seconds in {text!r}")
    return moment.timestamp() + fraction


def load_azure_csv(path: str | Path) -> Trace:
    """`TIMESTAMP,ContextTokens,GeneratedTokens` (CRLF or LF, any order of rows)."""
    p = Path(path)
    times: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        wanted = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
        missing = [c for c in wanted if c not in header]
        if missing:
            raise TraceError(f"{p}: header {header} lacks column(s) {', '.join(missing)}")
        cols = [header.index(c) for c in wanted]
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            try:
                times.append(_parse_timestamp(row[cols[0]]))
                ins.append(int(row[cols[1]]))
                outs.append(int(row[cols[2]]))
            except (ValueError, IndexError) as exc:
                raise TraceError(f"{p}:{line_no}: cannot read row {row!r}: {exc}") from None
    return _build(p, np.array(times, dtype=np.float64), ins, outs)


def load_jsonl(path: str | Path) -> Trace:
    """One JSON object per line with `timestamp` (ms), `input_length`, `output_length`."""
    p = Path(path)
    times: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    with p.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                times.append(float(row["timestamp"]) / 1e3)
                ins.append(int(row["input_length"]))
                outs.append(int(row["output_length"]))
            except json.JSONDecodeError as exc:
                raise TraceError(f"{p}:{line_no}: not JSON: {exc.msg}") from None
            except KeyError as exc:
                raise TraceError(f"{p}:{line_no}: missing field {exc.args[0]!r}") from None
            except (TypeError, ValueError) as exc:
                raise TraceError(f"{p}:{line_no}: bad value: {exc}") from None
    return _build(p, np.array(times, dtype=np.float64), ins, outs)


def _build(p: Path, times: FloatArray, ins: Sequence[int], outs: Sequence[int]) -> Trace:
    if not len(times):
        raise TraceError(f"{p}: no requests in the file")
    if not np.all(np.isfinite(times)):
        raise TraceError(f"{p}: non-finite timestamps")
    order = np.argsort(times, kind="stable")
    inputs = np.asarray(ins, dtype=np.int64)[order]
    outputs = np.asarray(outs, dtype=np.int64)[order]
    if np.any(inputs < 1) or np.any(outputs < 1):
        bad = int(np.argmax((inputs < 1) | (outputs < 1)))
        raise TraceError(
            f"{p}: request {bad} (by arrival) has fewer than one input or output token"
        )
    arrival = times[order] - times[order][0]
    return Trace(arrival, inputs, outputs, p.stem)


def load_rate_shape(path: str | Path) -> RateShape:
    """A ServeGen-derived rate file: `window_start_s,total_rate_rps,active_clients`."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"{p}: no such rate-shape file")
    starts: list[float] = []
    rates: list[float] = []
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"window_start_s", "total_rate_rps"} <= set(
            reader.fieldnames
        ):
            raise TraceError(
                f"{p}: expected columns window_start_s,total_rate_rps[,active_clients]"
            )
        for line_no, row in enumerate(reader, start=2):
            try:
                starts.append(float(row["window_start_s"]))
                rates.append(float(row["total_rate_rps"]))
            except (TypeError, ValueError) as exc:
                raise TraceError(f"{p}:{line_no}: cannot read row {row!r}: {exc}") from None
    if len(starts) < 1:
        raise TraceError(f"{p}: no windows")
    start_arr = np.array(starts)
    rate_arr = np.array(rates)
    if np.any(rate_arr < 0) or not np.all(np.isfinite(rate_arr)):
        raise TraceError(f"{p}: rates must be finite and non-negative")
    window = float(np.median(np.diff(start_arr))) if len(start_arr) > 1 else 600.0
    kept = rate_arr[rate_arr > 0]  # zero-rate windows are collection gaps, not idle time
    if not len(kept):
        raise TraceError(f"{p}: every window has zero rate")
    return RateShape(kept, window, p.stem)


# -- synthesis ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lengths:
    """How synthetic requests get their sizes: fixed, or resampled from a trace's (input, output)
    pairs so the joint length mix of a real workload is kept."""

    input_tokens: int = 1155
    output_tokens: int = 211
    sample_from: Trace | None = None

    def draw(self, n: int, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
        if self.sample_from is not None and len(self.sample_from):
            idx = rng.integers(0, len(self.sample_from), size=n)
            return self.sample_from.input_tokens[idx], self.sample_from.output_tokens[idx]
        return (
            np.full(n, self.input_tokens, dtype=np.int64),
            np.full(n, self.output_tokens, dtype=np.int64),
        )


@dataclass(frozen=True)
class Segment:
    """A stretch of `duration_s` whose rate goes linearly from `start_rps` to `end_rps`."""

    duration_s: float
    start_rps: float
    end_rps: float | None = None

    @property
    def end(self) -> float:
        return self.start_rps if self.end_rps is None else self.end_rps


def poisson(
    segments: Sequence[Segment],
    lengths: Lengths | None = None,
    seed: int = 0,
    name: str = "synthetic",
) -> Trace:
    """A non-homogeneous Poisson process whose rate is piecewise linear over `segments`.

    Given the expected count, arrivals are uniform in cumulative-rate space and mapped back
    through the inverse cumulative rate (exact for steps; ramps use 64 linear pieces each). The
    result depends only on `seed`.
    """
    if not segments:
        raise ValueError("need at least one segment")
    if any(s.duration_s <= 0 or s.start_rps < 0 or s.end < 0 for s in segments):
        raise ValueError("segments need a positive duration and non-negative rates")
    rng = np.random.default_rng(seed)
    knots_t: list[float] = [0.0]
    knots_cum: list[float] = [0.0]
    t = 0.0
    for seg in segments:
        pieces = 64 if seg.end != seg.start_rps else 1
        for i in range(1, pieces + 1):
            t0 = t + seg.duration_s * (i - 1) / pieces
            t1 = t + seg.duration_s * i / pieces
            r0 = seg.start_rps + (seg.end - seg.start_rps) * (i - 1) / pieces
            r1 = seg.start_rps + (seg.end - seg.start_rps) * i / pieces
            knots_t.append(t1)
            knots_cum.append(knots_cum[-1] + (t1 - t0) * (r0 + r1) / 2)
        t += seg.duration_s
    total = knots_cum[-1]
    count = int(rng.poisson(total)) if total > 0 else 0
    # Given the count, Poisson arrivals are i.i.d. uniform in cumulative-rate space.
    cum = np.sort(rng.uniform(0.0, total, size=count))
    # Zero-rate pieces make the cumulative rate flat; drop repeated knots so time is a function.
    kc = np.array(knots_cum)
    kt = np.array(knots_t)
    keep = np.concatenate([[True], np.diff(kc) > 0])
    arrival = np.interp(cum, kc[keep], kt[keep])
    ins, outs = (lengths or Lengths()).draw(count, rng)
    return Trace(arrival, ins, outs, name)


def constant(
    rate_rps: float, duration_s: float, lengths: Lengths | None = None, seed: int = 0
) -> Trace:
    return poisson([Segment(duration_s, rate_rps)], lengths, seed, f"constant-{rate_rps:g}rps")


def step(
    before_rps: float,
    after_rps: float,
    at_s: float,
    duration_s: float,
    lengths: Lengths | None = None,
    seed: int = 0,
) -> Trace:
    """`before_rps` until `at_s`, then `after_rps` until `duration_s`."""
    if not 0 < at_s < duration_s:
        raise ValueError("the step must fall inside the trace")
    segs = [Segment(at_s, before_rps), Segment(duration_s - at_s, after_rps)]
    return poisson(segs, lengths, seed, f"step-{before_rps:g}to{after_rps:g}rps")


def ramp(
    from_rps: float, to_rps: float, duration_s: float, lengths: Lengths | None = None, seed: int = 0
) -> Trace:
    return poisson(
        [Segment(duration_s, from_rps, to_rps)], lengths, seed, f"ramp-{from_rps:g}to{to_rps:g}rps"
    )


def burst(
    base_rps: float,
    peak_rps: float,
    start_s: float,
    length_s: float,
    duration_s: float,
    lengths: Lengths | None = None,
    seed: int = 0,
) -> Trace:
    """`base_rps`, with `peak_rps` during [start_s, start_s + length_s)."""
    if not (start_s > 0 and start_s + length_s < duration_s and length_s > 0):
        raise ValueError("the burst must fall inside the trace")
    segs = [
        Segment(start_s, base_rps),
        Segment(length_s, peak_rps),
        Segment(duration_s - start_s - length_s, base_rps),
    ]
    return poisson(segs, lengths, seed, f"burst-{base_rps:g}to{peak_rps:g}rps")
