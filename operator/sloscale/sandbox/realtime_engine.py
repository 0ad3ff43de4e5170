"""The step-level engine model run against the wall clock, for the emulated vLLM pod.

`sloscale.engine.EngineModel` says which requests each step carries and how long it takes; this
module plays those steps out in real time so that an HTTP client sees tokens arrive when a GPU
would have produced them, and records vLLM's metrics from the model's timestamps.

Time convention: with `speedup = X` the pod is the modelled GPU made X times faster, and
everything it shows is in real (wall-clock) seconds, as a real pod's would be:

- **Model time** is what the modelled GPU would take; it runs X times faster than the wall clock
  (model seconds since the pod started = real seconds × X). A step the model says lasts 20 ms
  takes 20/X ms of real time.
- Every latency the pod reports — the `/metrics` histograms (TTFT, ITL, e2e, queue, prefill,
  decode) — is the real time it took: the model's duration / X. Counters count events, so their
  rates per real second are what the faster GPU serves; gauges need no conversion. Latencies,
  rates, and the cold start (`--startup-delay` model seconds, i.e. /X real) thus tell one story:
  an observer that only sees the pod, its metrics and the clock (the operator through Prometheus
  and the Kubernetes API) cannot tell it from a real GPU X times faster than the modelled one.
- The load generator replays a trace X times faster and reports what it measured × X, i.e. in
  model seconds, next to the engine's histograms scaled the same way (`loadgen`).

The loop runs each step when the previous one ends. A step's tokens exist at the step's end, and
are released to the waiting requests then — but the loop sleeps at least `tick_s` of real time
between wake-ups and catches up on every step that ended meanwhile, so a pod costs a bounded number
of wake-ups per second however short the steps are. Clients therefore see tokens up to `tick_s`
real seconds late (tick_s × X model seconds); the pod's own histograms are exact. A request that
arrives while the loop catches up joins only steps that start after its arrival.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass

from sloscale.engine import EngineModel, Request, StepResult, resolve_profile
from sloscale.sandbox.vllm_metrics import VllmMetrics
from sloscale.scaling.policy import EngineProfile

# vLLM's defaults by GPU class (vllm/engine/arg_utils.py): H100-class GPUs batch up to 1024.
_DEFAULT_MAX_NUM_SEQS = {"H100": 1024, "A100": 256}
MAX_CATCH_UP_STEPS = 200  # steps run back to back before the loop yields to the HTTP side


@dataclass(frozen=True)
class EngineSettings:
    """One engine's limits: the vLLM arguments that shape scheduling, resolved against a profile."""

    profile: EngineProfile
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_capacity_tokens: int
    block_size: int
    max_model_len: int

    @classmethod
    def from_vllm_args(
        cls,
        profile: str = "H100",
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
        max_model_len: int = 131072,
        block_size: int = 16,
        num_gpu_blocks: int | None = None,
    ) -> EngineSettings:
        """Apply vLLM's defaults and checks; raise ValueError where vLLM would refuse to start."""
        prof = resolve_profile(profile)
        seqs = max_num_seqs if max_num_seqs is not None else _DEFAULT_MAX_NUM_SEQS.get(prof.name, 256)
        mnbt = max_num_batched_tokens if max_num_batched_tokens is not None else prof.max_num_batched_tokens
        kv = num_gpu_blocks * block_size if num_gpu_blocks is not None else prof.kv_capacity_tokens
        if seqs < 1 or mnbt < 1 or block_size < 1 or max_model_len < 1:
            raise ValueError("max-num-seqs, max-num-batched-tokens, block-size and max-model-len must be positive")
        if mnbt < seqs:
            raise ValueError(f"max_num_batched_tokens ({mnbt}) must be >= max_num_seqs ({seqs})")
        if kv < max_model_len:
            raise ValueError(
                f"the KV cache holds {kv} tokens, fewer than max_model_len ({max_model_len}); "
                "lower --max-model-len or raise --num-gpu-blocks-override"
            )
        return cls(prof, seqs, mnbt, kv, block_size, max_model_len)

    @property
    def num_gpu_blocks(self) -> int:
        return self.kv_capacity_tokens // self.block_size


class RequestHandle:
    """One admitted request as its HTTP handler sees it: how many tokens exist so far."""

    def __init__(self, engine: RealtimeEngine, request: Request) -> None:
        self._engine = engine
        self.request = request
        self.generated = 0
        self.finished = False
        self.aborted = False
        self._changed = asyncio.Event()

    @property
    def prompt_tokens(self) -> int:
        return self.request.prompt_tokens

    @property
    def max_tokens(self) -> int:
        return self.request.output_tokens

    def _advance(self, tokens: int, finished: bool) -> None:
        self.generated = min(self.max_tokens, self.generated + tokens)
        self.finished = self.finished or finished
        self._changed.set()

    async def progress(self, seen: int) -> int:
        """Wait until more than `seen` tokens exist (or the request ended); return the count."""
        while self.generated <= seen and not self.finished:
            self._changed.clear()
            await self._changed.wait()
        return self.generated

    async def done(self) -> None:
        while not self.finished:
            self._changed.clear()
            await self._changed.wait()

    def abort(self) -> None:
        """Drop the request from the engine if it has not finished (its client went away)."""
        if not self.finished and not self.aborted:
            self.aborted = True
            self._engine._abort(self)


class RealtimeEngine:
    """Runs `EngineModel` steps on the wall clock (see the module docstring for the time rules)."""

    def __init__(self, settings: EngineSettings, speedup: float, model_name: str, tick_s: float = 0.005) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.settings = settings
        self.speedup = speedup
        self.tick_s = tick_s
        self.model = EngineModel(
            settings.profile,
            settings.max_num_seqs,
            settings.max_num_batched_tokens,
            settings.kv_capacity_tokens,
            settings.block_size,
            track_decodes=True,
        )
        self.metrics = VllmMetrics(
            model_name,
            max_model_len=settings.max_model_len,
            max_num_batched_tokens=settings.max_num_batched_tokens,
        )
        self.metrics.set_cache_config(block_size=settings.block_size, num_gpu_blocks=settings.num_gpu_blocks)
        self._t0 = time.monotonic()
        self._ids = itertools.count()
        self._handles: dict[int | str, RequestHandle] = {}
        self._pending: deque[RequestHandle] = deque()  # arrived, not yet given to the model
        self._inflight: StepResult | None = None  # started; its tokens exist at its end
        self._free_at = 0.0  # model time the engine finishes its current step
        self._wake = asyncio.Event()

    def model_now(self) -> float:
        return (time.monotonic() - self._t0) * self.speedup

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished or aborted."""
        return len(self._handles)

    def submit(self, prompt_tokens: int, max_tokens: int) -> RequestHandle:
        """Queue a request arriving now. Raise ValueError if it can never fit the KV cache."""
        blocks = -(-(prompt_tokens + max_tokens) // self.settings.block_size)
        if blocks > self.settings.num_gpu_blocks:
            raise ValueError(f"{prompt_tokens + max_tokens} tokens do not fit the KV cache")
        handle = RequestHandle(self, Request(next(self._ids), prompt_tokens, max_tokens, self.model_now()))
        self._handles[handle.request.request_id] = handle
        self._pending.append(handle)
        self._wake.set()
        return handle

    def _abort(self, handle: RequestHandle) -> None:
        self._handles.pop(handle.request.request_id, None)
        if handle in self._pending:
            self._pending.remove(handle)
        elif not self.model.abort(handle.request):
            return
        self.metrics.request_success["abort"].inc()

    def refresh_gauges(self) -> None:
        self.metrics.set_gauges(
            running=self.model.num_running,
            waiting=self.model.num_waiting + len(self._pending),
            kv_usage=self.model.kv_usage,
        )

    async def run(self) -> None:
        """The engine loop; runs until cancelled."""
        while True:
            now = self.model_now()
            if not self._advance(now):
                await asyncio.sleep(0)  # far behind (a starved CPU): let the HTTP side run between batches
                continue
            if self._inflight is not None:
                await asyncio.sleep(max(self.tick_s, (self._inflight.end_s - now) / self.speedup))
            else:
                self._wake.clear()
                if not self._pending:
                    await self._wake.wait()

    def _advance(self, now: float) -> bool:
        """Deliver every step that has ended by `now` and start the next one if any is due.

        Returns False when it stopped after `MAX_CATCH_UP_STEPS` with more steps due.
        """
        for _ in range(MAX_CATCH_UP_STEPS):
            step = self._inflight
            if step is not None:
                if step.end_s > now:
                    return True
                self._deliver(step)
                self._inflight = None
            start = self._free_at
            if not self.model.has_work and self._pending:
                start = max(start, self._pending[0].request.arrival_s)
            while self._pending and self._pending[0].request.arrival_s <= start:
                self.model.add(self._pending.popleft().request)
            if not self.model.has_work or start > now:
                self.refresh_gauges()
                return True
            step = self.model.step(start)
            if step.idle:  # nothing schedulable (cannot happen with requests that fit the cache)
                self.refresh_gauges()
                return True
            self._inflight = step
            self._free_at = step.end_s
        return False

    def _deliver(self, step: StepResult) -> None:
        """Record a finished step's metrics as vLLM does and release its tokens to the clients.
        Durations are recorded in real seconds: the model's / speedup (see the module docstring)."""
        m, real = self.metrics, 1.0 / self.speedup
        m.record_step(step.num_tokens)
        m.count_tokens(
            prompt=sum(r.prompt_tokens for r in step.first_tokens if r.first_token_s == step.end_s),
            generation=step.num_decoded + len(step.first_tokens),
        )
        if step.preempted:
            m.count_preemptions(len(step.preempted))
        # Steps run back to back while a request decodes, so each decoded token's gap is the step.
        m.observe_inter_token(step.duration_s * real, step.num_decoded)
        for gap in step.itl_gaps_s:
            m.observe_inter_token(gap * real)
        touched: dict[int | str, int] = {}
        for req in step.decoded:
            touched[req.request_id] = 1
        for req in step.first_tokens:
            touched[req.request_id] = touched.get(req.request_id, 0) + 1
            if req.first_token_s == step.end_s and req.ttft_s is not None:
                m.observe_first_token(req.ttft_s * real)
        finished = set()
        for req in step.finished:
            finished.add(req.request_id)
            m.observe_finished(
                e2e_s=(req.e2e_s or 0.0) * real,
                queue_s=(req.queue_s or 0.0) * real,
                prefill_s=(req.prefill_s or 0.0) * real,
                decode_s=(req.decode_s or 0.0) * real,
                prompt_tokens=req.prompt_tokens,
                generation_tokens=req.output_tokens,
                finished_reason="length",  # the emulator always generates max_tokens
                max_tokens=req.output_tokens,
            )
        for request_id, tokens in touched.items():
            handle = self._handles.get(request_id)
            if handle is None:
                continue  # aborted while its step ran
            done = request_id in finished
            handle._advance(tokens, done)
            if done:
                del self._handles[request_id]
