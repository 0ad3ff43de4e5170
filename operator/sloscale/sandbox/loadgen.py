"""Open-loop replay of a request trace against an OpenAI-compatible endpoint, as users would load it.

Each request of a `sloscale.traces.Trace` is sent at its arrival time whether or not earlier ones
have been answered (open loop: a slow server faces a growing backlog, not a politely slowing
client). Requests stream (server-sent events) and ask for exactly the trace's output length
(`max_tokens`, with vLLM's `ignore_eos`); the prompt is that many words, which vLLM tokenizers
and the emulated pod count as about one token each.

Per request it records what the user sees — time to first token, the gaps between tokens,
end-to-end latency, the HTTP status or the failure — and summarises them as percentiles. Asked
for the engines' `/metrics`, it also reads their histograms before and after the run and puts the
engine's own percentiles next to the client's: the difference is the system latency the engine
does not see (connection, routing, proxies, network).

Time follows the emulated pod's convention (`realtime_engine`: at `--speedup X` a pod is the
modelled GPU made X times faster and reports real seconds): with `speedup = X`, a trace second is
replayed in 1/X real seconds, and every latency reported is converted back to model seconds
(measured wall-clock × X) — the engines' histograms too (their real seconds × X), so both sides
are in the unit of the trace and of the modelled GPU. Against a real vLLM leave `speedup` at 1.

Chunks that carry several tokens (stream coalescing) count as that many tokens: the gap since the
previous chunk is split evenly between them, and tokens that arrive with the first one count a gap
of 0. The token counts come from vLLM's `continuous_usage_stats`.

Bounded: at most `max_requests` requests and `duration_s` of trace time, at most `max_in_flight`
outstanding (further arrivals are recorded as dropped, not queued), and a real-time `timeout_s`
after which outstanding requests are cancelled and recorded as failed. Loopback addresses only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from sloscale.scaling.snapshot import Histogram
from sloscale.traces import Trace

QUANTILES = (0.5, 0.9, 0.95, 0.99)
# The engine histograms put next to the client's numbers (vLLM V1 names).
ENGINE_HISTOGRAMS = {
    "ttft": "vllm:time_to_first_token_seconds",
    "itl": "vllm:inter_token_latency_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
    "queue": "vllm:request_queue_time_seconds",
}


def require_loopback(url: str) -> None:
    """Raise ValueError unless `url` is http(s) on a loopback host: the generator is a local tool."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    if parts.hostname == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{url!r}: the load generator only targets loopback addresses")


@dataclass(frozen=True)
class LoadConfig:
    """How to replay. Durations are trace (model) seconds except `timeout_s`, which is real."""

    url: str  # the endpoint's base URL, e.g. http://127.0.0.1:8000
    model: str | None = None  # served model name; None: the first one /v1/models lists
    api: str = "completions"  # or "chat"
    speedup: float = 1.0
    duration_s: float | None = None
    max_requests: int | None = None
    max_in_flight: int = 512
    max_context: int | None = None  # clip input + output to this (a small real model's max-model-len)
    timeout_s: float = 600.0
    metrics_urls: tuple[str, ...] = ()  # engine /metrics to read before and after

    def __post_init__(self) -> None:
        require_loopback(self.url)
        for u in self.metrics_urls:
            require_loopback(u)
        if self.api not in ("completions", "chat"):
            raise ValueError("api must be 'completions' or 'chat'")
        if self.speedup <= 0 or self.max_in_flight < 1 or self.timeout_s <= 0:
            raise ValueError("speedup, max_in_flight and timeout must be positive")
        if self.max_context is not None and self.max_context < 2:
            raise ValueError("max_context must leave room for one input and one output token")


@dataclass
class RequestRecord:
    """One request as the client saw it. Times are model seconds from the start of the replay."""

    index: int
    scheduled_s: float  # its arrival in the trace
    sent_s: float | None = None  # when it was actually sent (later than scheduled if the client lagged)
    prompt_tokens: int = 0
    max_tokens: int = 0
    status: int | None = None  # HTTP status; None if no response arrived
    error: str | None = None  # "dropped", "timeout", a connection error, or the server's message
    ttft_s: float | None = None
    e2e_s: float | None = None
    output_tokens: int = 0
    mean_itl_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.output_tokens >= 1


def _percentiles(values: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, float | None]:
    arr = np.asarray(values, dtype=np.float64)
    out: dict[str, float | None] = {"count": float(arr.size)}
    if not arr.size:
        out |= {"mean": None, "max": None, **{f"p{q * 100:g}": None for q in QUANTILES}}
        return out
    out["mean"] = float(arr.mean())
    for q in QUANTILES:
        out[f"p{q * 100:g}"] = float(np.percentile(arr, q * 100))
    out["max"] = float(arr.max())
    return out


@dataclass
class LoadReport:
    """The outcome of one replay: per-request records, every token gap, and the engines' view."""

    config: LoadConfig
    trace_name: str
    records: list[RequestRecord]
    itl_gaps_s: array[float] = field(default_factory=lambda: array("d"))
    wall_s: float = 0.0
    engine: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        ok = [r for r in self.records if r.ok]
        failures: dict[str, int] = {}
        for r in self.records:
            if not r.ok:
                key = r.error if r.error in ("dropped", "timeout") else f"status {r.status}" if r.status else "error"
                failures[key] = failures.get(key, 0) + 1
        model_span = self.wall_s * self.config.speedup
        lateness = [r.sent_s - r.scheduled_s for r in self.records if r.sent_s is not None]
        tokens = sum(r.output_tokens for r in ok)
        return {
            "trace": self.trace_name,
            "requests": len(self.records),
            "succeeded": len(ok),
            "failed": len(self.records) - len(ok),
            "failures": failures,
            "wall_s": self.wall_s,
            "model_s": model_span,
            "output_tokens_per_s": tokens / model_span if model_span > 0 else 0.0,
            "send_lateness_s": _percentiles(lateness),
            "client": {
                "ttft": _percentiles([r.ttft_s for r in ok if r.ttft_s is not None]),
                "itl": _percentiles(np.frombuffer(self.itl_gaps_s, dtype=np.float64)),
                "e2e": _percentiles([r.e2e_s for r in ok if r.e2e_s is not None]),
            },
            "engine": self.engine,
        }

    def to_json(self, per_request: bool = False) -> str:
        body: dict[str, Any] = {"config": asdict(self.config), "summary": self.summary()}
        if per_request:
            body["requests"] = [asdict(r) for r in self.records]
        return json.dumps(body, indent=2)


# -- engine metrics --------------------------------------------------------------------------------


@dataclass
class ScrapedHistogram:
    """One histogram family summed over its label sets: cumulative count per `le`, and the sum."""

    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0

    def add(self, other: ScrapedHistogram) -> None:
        for le, count in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + count
        self.sum += other.sum


def parse_histograms(text: str, names: Sequence[str]) -> dict[str, ScrapedHistogram]:
    """The named histograms of a `/metrics` body, summed over label sets (e.g. engines).

    Accepts both spellings of vLLM's names (`vllm:` and `vllm_`).
    """
    wanted = {n.replace(":", "_"): n for n in names}
    out = {n: ScrapedHistogram() for n in names}
    for family in text_string_to_metric_families(text):
        name = wanted.get(family.name.replace(":", "_"))
        if name is None or family.type != "histogram":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                out[name].buckets[le] = out[name].buckets.get(le, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                out[name].sum += sample.value
    return out


async def scrape_histograms(session: aiohttp.ClientSession, urls: Sequence[str]) -> dict[str, ScrapedHistogram]:
    """The engine histograms summed over every pod in `urls`."""
    total = {n: ScrapedHistogram() for n in ENGINE_HISTOGRAMS.values()}
    for url in urls:
        async with session.get(url, headers={"Accept": "text/plain"}) as resp:
            resp.raise_for_status()
            for name, scraped in parse_histograms(await resp.text(), list(total)).items():
                total[name].add(scraped)
    return total


def engine_percentiles(
    before: dict[str, ScrapedHistogram], after: dict[str, ScrapedHistogram], speedup: float = 1.0
) -> dict[str, dict[str, float | None]]:
    """What the engines observed during the run, from the difference of two scrapes: the exact
    mean, and percentiles interpolated inside buckets as Prometheus' histogram_quantile does —
    in model seconds (the engines' real seconds × `speedup`), like the client's numbers."""
    out: dict[str, dict[str, float | None]] = {}
    for key, name in ENGINE_HISTOGRAMS.items():
        end, start = after[name], before.get(name, ScrapedHistogram())
        bounds = tuple(sorted(end.buckets))
        hist = Histogram(bounds, tuple(end.buckets[b] - start.buckets.get(b, 0.0) for b in bounds))
        summary: dict[str, float | None] = {
            "count": hist.total,
            "mean": (end.sum - start.sum) / hist.total * speedup if hist.total else None,
        }
        for q in QUANTILES:
            value = hist.quantile(q)
            summary[f"p{q * 100:g}"] = None if value is None else value * speedup
        out[key] = summary
    return out


# -- the replay --------------------------------------------------------------------------------


class LoadGenerator:
    """Replays one trace against `config.url` (see the module docstring)."""

    def __init__(self, config: LoadConfig, trace: Trace) -> None:
        self.config = config
        if config.duration_s is not None:
            trace = trace.slice(0.0, config.duration_s)
        n = len(trace) if config.max_requests is None else min(len(trace), config.max_requests)
        self.trace = trace
        self.count = n
        self.records: list[RequestRecord] = []
        self.itl_gaps = array("d")
        self._in_flight = 0
        self._t0 = 0.0

    def _model_now(self) -> float:
        return (time.monotonic() - self._t0) * self.config.speedup

    def _sizes(self, i: int) -> tuple[int, int]:
        prompt, out = int(self.trace.input_tokens[i]), int(self.trace.output_tokens[i])
        limit = self.config.max_context
        if limit is not None and prompt + out > limit:
            out = max(1, min(out, limit // 2))
            prompt = max(1, limit - out)
        return prompt, out

    def _body(self, model: str, prompt_tokens: int, max_tokens: int) -> dict[str, Any]:
        text = " ".join(["hi"] * prompt_tokens)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if self.config.api == "chat":
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        return body

    async def _model_name(self, session: aiohttp.ClientSession) -> str:
        if self.config.model:
            return self.config.model
        async with session.get(self.config.url.rstrip("/") + "/v1/models") as resp:
            resp.raise_for_status()
            data = await resp.json()
        return str(data["data"][0]["id"])

    async def run(self) -> LoadReport:
        cfg = self.config
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        connector = aiohttp.TCPConnector(limit=cfg.max_in_flight + 8)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            model = await self._model_name(session)
            before = await scrape_histograms(session, cfg.metrics_urls) if cfg.metrics_urls else None
            path = "/v1/chat/completions" if cfg.api == "chat" else "/v1/completions"
            endpoint = cfg.url.rstrip("/") + path
            tasks: set[asyncio.Task[None]] = set()
            self._t0 = time.monotonic()
            try:
                async with asyncio.timeout_at(asyncio.get_running_loop().time() + cfg.timeout_s):
                    for i in range(self.count):
                        record = RequestRecord(index=i, scheduled_s=float(self.trace.arrival_s[i]))
                        record.prompt_tokens, record.max_tokens = self._sizes(i)
                        self.records.append(record)
                        delay = record.scheduled_s / cfg.speedup - (time.monotonic() - self._t0)
                        if delay > 0:
                            await asyncio.sleep(delay)
                        if self._in_flight >= cfg.max_in_flight:
                            record.error = "dropped"
                            continue
                        self._in_flight += 1  # counted here: the task may not run before the next arrival
                        task = asyncio.create_task(self._one(session, endpoint, model, record))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    if tasks:
                        await asyncio.wait(set(tasks))
            except TimeoutError:
                for record in self.records:
                    if record.sent_s is None and record.error is None:
                        record.error = "timeout"
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(set(tasks), timeout=5)
            wall = time.monotonic() - self._t0
            engine = {}
            if before is not None:
                engine = engine_percentiles(
                    before, await scrape_histograms(session, cfg.metrics_urls), cfg.speedup
                )
        return LoadReport(cfg, self.trace.name, self.records, self.itl_gaps, wall, engine)

    async def _one(self, session: aiohttp.ClientSession, endpoint: str, model: str, record: RequestRecord) -> None:
        record.sent_s = self._model_now()
        last: float | None = None
        complete = False
        gaps = array("d")
        try:
            async with session.post(endpoint, json=self._body(model, record.prompt_tokens, record.max_tokens)) as resp:
                record.status = resp.status
                if resp.status != 200:
                    record.error = (await resp.text())[:200] or f"HTTP {resp.status}"
                    return
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        complete = True
                        break
                    new = self._new_tokens(json.loads(data), record)
                    if new <= 0:
                        continue
                    now = self._model_now()
                    if last is None:
                        record.ttft_s = now - record.sent_s
                        gaps.extend([0.0] * (new - 1))  # tokens that came with the first one
                    else:
                        gaps.extend([(now - last) / new] * new)
                    last = now
                    record.output_tokens += new
            if last is not None:
                record.e2e_s = last - record.sent_s
                if gaps:
                    record.mean_itl_s = sum(gaps) / len(gaps)
                    self.itl_gaps.extend(gaps)
            if not complete:
                record.error = "the stream ended without [DONE]"
            elif record.output_tokens < 1:
                record.error = "no tokens in the stream"
        except asyncio.CancelledError:
            record.error = "timeout"
            raise
        except (aiohttp.ClientError, json.JSONDecodeError, OSError) as err:
            record.error = f"{type(err).__name__}: {err}"[:200]
        finally:
            self._in_flight -= 1

    @staticmethod
    def _new_tokens(chunk: dict[str, Any], record: RequestRecord) -> int:
        """Tokens this chunk adds: from the running usage when the server sends it, else one per
        chunk with text."""
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            if usage.get("prompt_tokens"):
                record.prompt_tokens = int(usage["prompt_tokens"])
            return int(usage["completion_tokens"]) - record.output_tokens
        for choice in chunk.get("choices") or []:
            text = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
            if text:
                return 1
        return 0


async def replay(config: LoadConfig, trace: Trace) -> LoadReport:
    return await LoadGenerator(config, trace).run()


def format_summary(summary: dict[str, Any]) -> str:
    """A short human-readable table of a summary (model seconds)."""

    def ms(v: float | None) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1e3:.0f}ms"

    lines = [
        f"{summary['trace']}: {summary['requests']} requests, {summary['succeeded']} ok, "
        f"{summary['failed']} failed {summary['failures'] or ''}".rstrip(),
        f"replayed {summary['model_s']:.1f} model s in {summary['wall_s']:.1f} real s; "
        f"{summary['output_tokens_per_s']:.0f} output tokens/s",
        f"{'':8}{'p50':>9}{'p90':>9}{'p99':>9}",
    ]
    for side in ("client", "engine"):
        for key, stats in summary[side].items():
            cells = "".join(f"{ms(stats.get(p)):>9}" for p in ("p50", "p90", "p99"))
            lines.append(f"{side[:6]} {key:<5}{cells}")
    return "\n".join(lines)
