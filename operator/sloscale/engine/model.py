"""One vLLM replica, one engine step at a time: who runs, how long the step takes, who finishes.

This is the step-level model of `performance-model.md`, shared by the fleet simulator (which steps
thousands of replicas-hours in simulated time) and the emulated vLLM pod (which sleeps each step's
duration in real time). It is pure: the caller owns the clock and passes `now` to `step()`.

The scheduler follows vLLM V1 with chunked prefill:

1. every running request that is decoding gets one token (decodes always fit, because
   `max_num_batched_tokens >= max_num_seqs`); if the KV cache has no block for a token, the newest
   running request is preempted (its blocks freed, its tokens recomputed later);
2. running requests still in prefill get the next chunk of their prompt, oldest first, within
   the step's token budget;
3. waiting requests are admitted first-come-first-served while fewer than `max_num_seqs` run,
   budget remains and the KV blocks for their first chunk fit.

The step lasts `a + s*max(0, n_tok - k) + d*sum(ctx) + e*sum(c*(p + c/2))` milliseconds. The step
that completes a prompt samples its first token; each later step samples one more. A preempted
request goes back to the head of the queue and, when readmitted, re-prefills its prompt and the
tokens it had generated (vLLM's recompute), then carries on.

Decoding requests are not visited one by one per step — the cost of a step does not grow with the
batch: they share a decode counter (each request remembers the counter value when it started
decoding), a heap orders their finishing steps, and a per-phase count says how many of them need
a fresh KV block on the next step. That keeps one decode step O(1) apart from the requests that
start or finish in it, which is what lets the simulator replay hours of traffic in seconds.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from sloscale.scaling.policy import EngineProfile


class Phase(IntEnum):
    WAITING = 0
    PREFILL = 1
    DECODE = 2
    FINISHED = 3


class Request:
    """One request and the timestamps vLLM's metrics are built from (seconds, the caller's clock).

    Create it with its id, sizes and arrival time and hand it to `EngineModel.add`; the engine fills
    in the rest. Latencies follow vLLM's definitions: TTFT = first token - arrival; queue time =
    first scheduled - arrival; prefill time = first token - first scheduled; decode time = finished
    - first token; e2e = finished - arrival.
    """

    __slots__ = (
        "request_id", "prompt_tokens", "output_tokens", "arrival_s",
        "scheduled_s", "first_token_s", "finished_s", "last_token_s", "preemptions",
        "phase", "generated", "computed", "blocks", "prefill_target",
        "_seq", "_epoch", "_d0", "_c0",
    )  # fmt: skip

    def __init__(
        self, request_id: int | str, prompt_tokens: int, output_tokens: int, arrival_s: float
    ) -> None:
        if prompt_tokens < 1 or output_tokens < 1:
            raise ValueError(
                f"request {request_id!r}: prompt and output need at least one token each"
            )
        self.request_id = request_id
        self.prompt_tokens = int(prompt_tokens)
        self.output_tokens = int(output_tokens)
        self.arrival_s = float(arrival_s)
        self.scheduled_s: float | None = None
        self.first_token_s: float | None = None
        self.finished_s: float | None = None
        self.last_token_s: float | None = None
        self.preemptions = 0
        self.phase = Phase.WAITING
        self.generated = 0  # output tokens sampled so far
        self.computed = 0  # tokens whose KV is in the cache (meaningful while not decoding)
        self.blocks = 0  # KV blocks held (meaningful while not decoding)
        self.prefill_target = self.prompt_tokens  # tokens to (re)compute before the next sample
        self._seq = -1  # admission order; the largest running one is preempted first
        self._epoch = 0  # bumps on preemption, invalidating stale finish-heap entries
        self._d0 = 0  # engine decode counter when this request started decoding
        self._c0 = 0  # computed tokens at that moment

    def __repr__(self) -> str:
        return (
            f"Request({self.request_id!r}, prompt={self.prompt_tokens}, output={self.output_tokens}, "
            f"phase={self.phase.name}, generated={self.generated})"
        )

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float | None:
        return None if self.finished_s is None else self.finished_s - self.arrival_s

    @property
    def queue_s(self) -> float | None:
        return None if self.scheduled_s is None else self.scheduled_s - self.arrival_s

    @property
    def prefill_s(self) -> float | None:
        if self.first_token_s is None or self.scheduled_s is None:
            return None
        return self.first_token_s - self.scheduled_s

    @property
    def decode_s(self) -> float | None:
        if self.finished_s is None or self.first_token_s is None:
            return None
        return self.finished_s - self.first_token_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (vLLM's request_time_per_output_token)."""
        decode = self.decode_s
        if decode is None or self.output_tokens < 2:
            return None
        return decode / (self.output_tokens - 1)


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one engine step did. `end_s = start_s + duration_s` is when its tokens exist.

    `decoded` lists the decoding requests that got a token only when the engine was built with
    `track_decodes=True`; `num_decoded` is always right. `first_tokens` are requests whose prompt
    completed (their first token, or their next token after a recompute), `itl_gaps_s` the
    inter-token gaps that preemption stretched (one per resumed request).
    """

    start_s: float
    duration_s: float
    num_tokens: int
    num_decoded: int
    prefill_tokens: int
    decoded: tuple[Request, ...]
    prefilled: tuple[tuple[Request, int], ...]
    first_tokens: tuple[Request, ...]
    finished: tuple[Request, ...]
    preempted: tuple[Request, ...]
    itl_gaps_s: tuple[float, ...]

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def idle(self) -> bool:
        return self.num_tokens == 0


@dataclass(frozen=True, slots=True)
class DecodeRun:
    """`steps` consecutive pure decode steps of `num_decoded` tokens each (see `run_decodes`).

    Step durations grow linearly from `first_step_s` to `last_step_s`; `finished` end at `end_s`.
    """

    start_s: float
    end_s: float
    steps: int
    num_decoded: int
    first_step_s: float
    last_step_s: float
    finished: tuple[Request, ...]

    def step_duration(self, j: int) -> float:
        if self.steps == 1:
            return self.first_step_s
        return self.first_step_s + (self.last_step_s - self.first_step_s) * j / (self.steps - 1)


@dataclass(frozen=True, slots=True)
class DecodePlan:
    """A pure decode run not yet applied (`EngineModel.peek_decodes`): its `steps`, when it
    ends, when its last step starts (when its `finishing` requests leave the running set)."""

    steps: int
    end_s: float
    last_start_s: float
    finishing: int


class EngineModel:
    """A vLLM engine's scheduler and step timing (see the module docstring).

    `max_num_batched_tokens` and `kv_capacity_tokens` default to the profile's values. The caller
    drives time: call `step(now)` when the previous step has ended (at its `end_s`) and whenever
    work arrives at an idle engine.
    """

    def __init__(
        self,
        profile: EngineProfile,
        max_num_seqs: int,
        max_num_batched_tokens: int | None = None,
        kv_capacity_tokens: int | None = None,
        block_size: int = 16,
        *,
        track_decodes: bool = True,
    ) -> None:
        mnbt = (
            profile.max_num_batched_tokens
            if max_num_batched_tokens is None
            else max_num_batched_tokens
        )
        kv = profile.kv_capacity_tokens if kv_capacity_tokens is None else kv_capacity_tokens
        if max_num_seqs < 1:
            raise ValueError("max_num_seqs must be at least 1")
        if mnbt < max_num_seqs:
            # vLLM refuses this too: every running decode must fit in one step's budget.
            raise ValueError(
                f"max_num_batched_tokens ({mnbt}) must be >= max_num_seqs ({max_num_seqs})"
            )
        if block_size < 1 or kv < block_size:
            raise ValueError("the KV cache must hold at least one block")
        self.profile = profile
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = mnbt
        self.block_size = block_size
        self.kv_capacity_blocks = kv // block_size
        self.track_decodes = track_decodes
        # Step-time coefficients in seconds.
        self._a = profile.a_ms / 1e3
        self._s = profile.s_ms_per_token / 1e3
        self._k = profile.k_tokens
        self._d = profile.d_ms_per_ctx_token / 1e3
        self._e = profile.e_ms_per_pair / 1e3

        self._waiting: deque[Request] = deque()
        self._running: dict[int, Request] = {}  # admission order: the last one is the newest
        self._prefilling: list[Request] = []
        # (decode count at which it finishes, admission seq, epoch, request)
        self._finish_heap: list[tuple[int, int, int, Request]] = []
        self._decode_count = 0  # steps that carried decodes so far
        self._n_decoding = 0
        self._ctx_sum = 0  # sum over decoding requests of (computed + 1): the attended context
        self._phase_count = [0] * block_size  # decoding requests per block phase
        self._used_blocks = 0
        self._next_seq = 0
        self._last_end_s: float | None = None
        # Cumulative counters, as vLLM's *_total counters.
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.preemptions_total = 0
        self.finished_total = 0

    # -- observation ----------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_outstanding(self) -> int:
        return len(self._waiting) + len(self._running)

    @property
    def has_work(self) -> bool:
        return bool(self._waiting) or bool(self._running)

    @property
    def kv_usage(self) -> float:
        """KV blocks in use, 0..1 (vllm:kv_cache_usage_perc)."""
        return self._used_blocks / self.kv_capacity_blocks

    @property
    def max_model_len(self) -> int:
        """The longest prompt + output one request may have: the whole KV cache."""
        return self.kv_capacity_blocks * self.block_size

    @property
    def kv_blocks_used(self) -> int:
        return self._used_blocks

    def context_tokens(self, request: Request) -> int:
        """Tokens of `request` whose KV is in the cache now (0 unless it is running)."""
        if request.phase is Phase.DECODE:
            return self._decode_computed(request)
        if request.phase is Phase.PREFILL:
            return request.computed
        return 0

    def generated_tokens(self, request: Request) -> int:
        """Output tokens `request` has received so far."""
        if request.phase is Phase.DECODE:
            return request.generated + self._decode_count - request._d0
        return request.generated

    def running(self) -> tuple[Request, ...]:
        return tuple(self._running.values())

    def waiting(self) -> tuple[Request, ...]:
        return tuple(self._waiting)

    def step_time_s(
        self, num_tokens: int, decode_ctx_sum: int, prefill_pairs: float = 0.0
    ) -> float:
        """The step-time formula, for callers that want the model without the scheduler."""
        return (
            self._a
            + self._s * max(0.0, num_tokens - self._k)
            + self._d * decode_ctx_sum
            + self._e * prefill_pairs
        )

    # -- input ----------------------------------------------------------------------------------

    def add(self, request: Request) -> None:
        """Queue a request. It waits until a step admits it."""
        if request.phase is not Phase.WAITING or request.generated:
            raise ValueError(f"request {request.request_id!r} was already given to an engine")
        if request.prompt_tokens + request.output_tokens > self.max_model_len:
            # vLLM rejects these at the API (max_model_len never exceeds the KV cache).
            raise ValueError(
                f"request {request.request_id!r} needs {request.prompt_tokens + request.output_tokens} "
                f"tokens; the KV cache holds {self.max_model_len}"
            )
        self._waiting.append(request)

    def abort(self, request: Request) -> bool:
        """Drop a request (client went away); its KV blocks are freed. False if it is not here."""
        if request.phase is Phase.WAITING:
            try:
                self._waiting.remove(request)
            except ValueError:
                return False
            request.phase = Phase.FINISHED
            return True
        if request.phase is Phase.FINISHED or self._running.get(request._seq) is not request:
            return False
        self._release(request)
        request.phase = Phase.FINISHED
        return True

    # -- the step -------------------------------------------------------------------------------

    def step(self, now: float) -> StepResult:
        """Schedule and run one engine step starting at `now`.

        Returns an idle result (zero duration, no tokens) when there is nothing to run.
        """
        bs = self.block_size
        budget = self.max_num_batched_tokens
        preempted: list[Request] = []

        # 1. Decodes: one token each; a token that opens a new block needs a free one.
        if self._n_decoding:
            need = self._phase_count[-self._decode_count % bs]
            while self._used_blocks + need > self.kv_capacity_blocks and self._running:
                victim = self._newest()
                if victim.phase is Phase.DECODE and self._opens_block(victim):
                    need -= 1
                self._preempt(victim, preempted)
            self._used_blocks += need
            budget -= self._n_decoding
        n_dec = self._n_decoding
        ctx_sum = self._ctx_sum

        # 2. Prompts already admitted continue, oldest first; 3. then the queue is admitted.
        chunks: list[tuple[Request, int]] = []
        if self._prefilling:
            for req in list(self._prefilling):
                if budget <= 0:
                    break
                if req.phase is not Phase.PREFILL:
                    continue  # preempted while making room earlier in this loop
                chunk = min(req.prefill_target - req.computed, budget)
                new_blocks = -(-(req.computed + chunk) // bs) - req.blocks
                while self._used_blocks + new_blocks > self.kv_capacity_blocks:
                    victim = self._newest()
                    if victim.phase is Phase.DECODE:
                        # It was scheduled for a decode above: give back its token and block.
                        n_dec -= 1
                        ctx_sum -= self._decode_computed(victim) + 1
                        budget += 1
                        if self._opens_block(victim):
                            self._used_blocks -= 1
                    else:
                        for i, (scheduled, c) in enumerate(chunks):
                            if scheduled is victim:
                                del chunks[i]
                                budget += c
                                break
                    self._preempt(victim, preempted)
                    if victim is req:
                        break
                if req.phase is not Phase.PREFILL:
                    continue
                self._used_blocks += new_blocks
                req.blocks += new_blocks
                chunks.append((req, chunk))
                budget -= chunk

        waiting = self._waiting
        while waiting and budget > 0 and len(self._running) < self.max_num_seqs:
            req = waiting[0]
            chunk = min(req.prefill_target, budget)
            new_blocks = -(-chunk // bs)
            if self._used_blocks + new_blocks > self.kv_capacity_blocks:
                break  # vLLM stops admitting when the head of the queue does not fit
            waiting.popleft()
            if req.scheduled_s is None:
                req.scheduled_s = now
            req.phase = Phase.PREFILL
            req.computed = 0
            req._seq = self._next_seq
            self._next_seq += 1
            self._running[req._seq] = req
            self._prefilling.append(req)
            self._used_blocks += new_blocks
            req.blocks = new_blocks
            chunks.append((req, chunk))
            budget -= chunk

        prefill_tokens = 0
        pairs = 0.0
        for req, chunk in chunks:
            prefill_tokens += chunk
            pairs += chunk * (req.computed + chunk / 2)
        num_tokens = n_dec + prefill_tokens
        if num_tokens == 0:
            return StepResult(now, 0.0, 0, 0, 0, (), (), (), (), tuple(preempted), ())
        duration = (
            self._a
            + (self._s * (num_tokens - self._k) if num_tokens > self._k else 0.0)
            + self._d * ctx_sum
            + self._e * pairs
        )
        end = now + duration
        decoded: tuple[Request, ...] = ()
        if self.track_decodes and n_dec:
            decoded = tuple(r for r in self._running.values() if r.phase is Phase.DECODE)

        # Apply the step: decodes advance together, then finished prompts sample a token.
        finished: list[Request] = []
        if n_dec:
            self._decode_count += 1
            self._ctx_sum += n_dec
            heap = self._finish_heap
            count = self._decode_count
            while heap and heap[0][0] <= count:
                _, _, epoch, req = heapq.heappop(heap)
                if req.phase is Phase.DECODE and req._epoch == epoch:
                    self._finish(req, end, finished)
        first_tokens: list[Request] = []
        gaps: list[float] = []
        for req, chunk in chunks:
            req.computed += chunk
            if req.computed < req.prefill_target:
                continue
            if req.generated == 0:
                req.first_token_s = end
                self.prompt_tokens_total += req.prompt_tokens
            elif req.last_token_s is not None:
                gaps.append(end - req.last_token_s)
            req.generated += 1
            first_tokens.append(req)
            if req.generated >= req.output_tokens:
                self._finish(req, end, finished)
            else:
                self._prefilling.remove(req)
                self._start_decoding(req)
        self.generation_tokens_total += n_dec + len(first_tokens)
        self._last_end_s = end
        return StepResult(
            now, duration, num_tokens, n_dec, prefill_tokens, decoded, tuple(chunks),
            tuple(first_tokens), tuple(finished), tuple(preempted), tuple(gaps),
        )  # fmt: skip

    # -- fast-forward -------------------------------------------------------------------------

    def run_decodes(self, now: float, limit: float = math.inf) -> DecodeRun | None:
        """Run, in closed form, the steps that `step()` would run from `now` while nothing but
        decodes can happen: no prompt in flight, no admissible waiting request, and enough free
        KV blocks. It stops after the step that finishes the next request, and never starts a
        step at or after `limit` (except the first, at `now`), so the caller can deliver the next
        arrival or observation at `limit` exactly as with single steps. None when the next step is
        not a pure decode step; call `step()` then.

        Step j of the run lasts `A + j*n*d` (each of the n decodes attends one more token per
        step), so the run's length and end follow from a quadratic, not a loop.
        """
        plan = self._plan_decodes(now, limit)
        if plan is None:
            return None
        m, first, growth = plan
        n = self._n_decoding
        bs = self.block_size
        # Blocks opened during the run: per phase r, the steps j < m with (r + count + j) % bs == 0.
        opened = 0
        count = self._decode_count
        for r, requests in enumerate(self._phase_count):
            if requests:
                j0 = (-r - count) % bs
                if j0 < m:
                    opened += requests * ((m - 1 - j0) // bs + 1)
        self._used_blocks += opened
        end = now + first * m + growth * m * (m - 1) / 2
        self._decode_count += m
        self._ctx_sum += n * m
        finished: list[Request] = []
        heap = self._finish_heap
        while heap and heap[0][0] <= self._decode_count:
            _, _, epoch, req = heapq.heappop(heap)
            if req.phase is Phase.DECODE and req._epoch == epoch:
                self._finish(req, end, finished)
        self.generation_tokens_total += n * m
        self._last_end_s = end
        return DecodeRun(now, end, m, n, first, first + growth * (m - 1), tuple(finished))

    def peek_decodes(self, now: float) -> DecodePlan | None:
        """What `run_decodes(now)` would do, without doing it: a caller can schedule the run's
        end and apply it (or a prefix of it, with a `limit`) only when something needs to see
        the engine. None when the next step is not a pure decode step."""
        plan = self._plan_decodes(now, math.inf)
        if plan is None:
            return None
        m, first, growth = plan
        last_start = now + first * (m - 1) + growth * (m - 1) * (m - 2) / 2
        end = last_start + first + growth * (m - 1)
        # Count the live heap entries finishing by the run's end, visiting only those subtrees.
        finishing = 0
        target = self._decode_count + m
        heap = self._finish_heap
        stack = [0] if heap else []
        while stack:
            i = stack.pop()
            finish_at, _, epoch, req = heap[i]
            if finish_at <= target:
                if req.phase is Phase.DECODE and req._epoch == epoch:
                    finishing += 1
                stack.extend(c for c in (2 * i + 1, 2 * i + 2) if c < len(heap))
        return DecodePlan(m, end, last_start, finishing)

    def _plan_decodes(self, now: float, limit: float) -> tuple[int, float, float] | None:
        """(steps, first step's duration, growth per step) of the pure decode run from `now`."""
        n = self._n_decoding
        if not n or self._prefilling:
            return None
        if self._waiting and len(self._running) < self.max_num_seqs:
            head = self._waiting[0]
            chunk = min(head.prefill_target, self.max_num_batched_tokens - n)
            if self._used_blocks + -(-chunk // self.block_size) <= self.kv_capacity_blocks:
                return None  # the head of the queue would be admitted
        heap = self._finish_heap
        while heap and (heap[0][3].phase is not Phase.DECODE or heap[0][3]._epoch != heap[0][2]):
            heapq.heappop(heap)
        m = heap[0][0] - self._decode_count  # steps up to and including the next finish
        free = self.kv_capacity_blocks - self._used_blocks
        # Each decoding request opens at most one block per `block_size` steps.
        m_kv = (free // n - 1) * self.block_size + 1 if free >= n else 0
        if m_kv < 1:
            return None
        m = min(m, m_kv)
        first = (
            self._a + (self._s * (n - self._k) if n > self._k else 0.0) + self._d * self._ctx_sum
        )
        growth = self._d * n
        span = limit - now
        if m > 1 and span < first * m + growth * m * (m - 1) / 2:
            # The largest j with start_j = j*first + growth*j*(j-1)/2 < span, plus the step at 0.
            if growth > 0:
                b = first - growth / 2
                j = int((-b + math.sqrt(b * b + 2 * growth * span)) / growth)
            else:
                j = int(span / first)
            while j > 0 and j * first + growth * j * (j - 1) / 2 >= span:
                j -= 1
            while j + 1 < m and (j + 1) * first + growth * (j + 1) * j / 2 < span:
                j += 1
            m = max(1, j + 1)
        return m, first, growth

    # -- bookkeeping ----------------------------------------------------------------------------
    #
    # A decoding request's token counts are implicit: after the shared decode counter advanced by
    # `n` since it started decoding, it has computed `_c0 + n` tokens and generated `n` more. It
    # needs a new KV block on the next step when its computed tokens fill whole blocks, i.e. when
    # `(_c0 - _d0 + decode_count) % block_size == 0`: `_phase_count` counts requests per
    # `(_c0 - _d0) % block_size`.

    def _decode_computed(self, req: Request) -> int:
        return req._c0 + self._decode_count - req._d0

    def _opens_block(self, req: Request) -> bool:
        return (req._c0 - req._d0 + self._decode_count) % self.block_size == 0

    def _start_decoding(self, req: Request) -> None:
        req.phase = Phase.DECODE
        req._d0 = self._decode_count
        req._c0 = req.computed
        self._n_decoding += 1
        self._ctx_sum += req.computed + 1
        self._phase_count[(req._c0 - req._d0) % self.block_size] += 1
        finish_at = self._decode_count + (req.output_tokens - req.generated)
        heapq.heappush(self._finish_heap, (finish_at, req._seq, req._epoch, req))

    def _newest(self) -> Request:
        return next(reversed(self._running.values()))

    def _release(self, req: Request) -> None:
        """Take a running request out of the running set and free its blocks."""
        if req.phase is Phase.DECODE:
            self._phase_count[(req._c0 - req._d0) % self.block_size] -= 1
            computed = self._decode_computed(req)
            req.generated += self._decode_count - req._d0
            req.computed = computed
            req.blocks = -(-computed // self.block_size)
            self._n_decoding -= 1
            self._ctx_sum -= computed + 1
            req._epoch += 1
        elif req.phase is Phase.PREFILL:
            self._prefilling.remove(req)
        self._used_blocks -= req.blocks
        req.blocks = 0
        del self._running[req._seq]

    def _preempt(self, req: Request, preempted: list[Request]) -> None:
        """Free a running request and send it to the head of the queue, to be recomputed."""
        self._release(req)
        req.preemptions += 1
        self.preemptions_total += 1
        preempted.append(req)
        if req.generated:
            req.last_token_s = self._last_end_s
        req.phase = Phase.WAITING
        req.computed = 0
        req.prefill_target = req.prompt_tokens + req.generated
        self._waiting.appendleft(req)

    def _finish(self, req: Request, end: float, finished: list[Request]) -> None:
        self._release(req)
        req.generated = req.output_tokens
        req.phase = Phase.FINISHED
        req.finished_s = end
        req.last_token_s = end
        self.finished_total += 1
        finished.append(req)
