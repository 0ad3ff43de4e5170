"""Every PromQL expression the operator sends, in one place.

One tick asks Prometheus one query per metric family, for every InferenceService at once: each
expression aggregates `by (namespace, <service label>)` — and `le` for histograms — so the cost of
a tick does not grow with the number of services. The service label is the one the operator's
PodMonitor copies from the pod label `sloscale.dev/service` (default `sloscale_service`).

vLLM's names vary, and the expressions accept every variant rather than guess one:
- spelling: `vllm:x` as vLLM names it, or `vllm_x` as prometheus_client ≥ 0.23 writes it under
  OpenMetrics negotiation when no relabel rule renames it back;
- engine era: V1 names first, V0 names as fallbacks (`kv_cache_usage_perc` / `gpu_cache_usage_perc`,
  `inter_token_latency_seconds` / `time_per_output_token_seconds`).
Variants are joined with `or` per series, before aggregation: a pod exposing two variants of one
family (vLLM keeps a deprecated name alive for a release) is counted once, through the first, and
pods of different vLLM versions in one service still add up. A single `__name__=~` regex would
fail instead: once `rate()` drops the names, two variants of one pod collide ("vector cannot
contain metrics with the same labelset").

Histograms are returned whole (`rate` of every `_bucket` series, summed by `le`), never as a
`histogram_quantile`: the control law computes any percentile and any attainment from the buckets,
whose edges it reads from the `le` labels.

One expression is per pod rather than per service: `pod_in_flight`, each pod's running plus
waiting requests (by `pod`), which the operator reads to pick the least-loaded pods as the victims
of a scale-down. It is still one query for every service.

Freshness needs two expressions, because Prometheus marks a target's series stale as soon as a
scrape fails, after which they vanish from instant queries: `pods` counts pods whose newest sample
is recent enough, and `last_seen` finds, over a longer look-back, when a service last reported at
all — which is what tells "stale" (it was there) from "no data" (it never was).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

PREFIXES = ("vllm:", "vllm_")
"""vLLM's own spelling first, then the one OpenMetrics exposition produces."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Kind(StrEnum):
    GAUGE_SUM = "gauge_sum"  # summed over the service's pods
    GAUGE_MAX = "gauge_max"  # the highest pod's value
    RATE = "rate"  # per-second rate of a counter, summed over pods
    HISTOGRAM = "histogram"  # per-second rate of each bucket, summed over pods by `le`


@dataclass(frozen=True)
class Family:
    """One quantity the snapshot needs and every name vLLM has exposed it under.

    `names` are without prefix and in order of preference (newest vLLM first).
    """

    key: str
    kind: Kind
    names: tuple[str, ...]
    required: bool = True


RUNNING = Family("running", Kind.GAUGE_SUM, ("num_requests_running",))
WAITING = Family("waiting", Kind.GAUGE_SUM, ("num_requests_waiting",))
KV_USAGE = Family(
    "kv_usage", Kind.GAUGE_MAX, ("kv_cache_usage_perc", "gpu_cache_usage_perc"), required=False
)
REQUESTS = Family("requests", Kind.RATE, ("request_success_total",))
PROMPT_TOKENS = Family("prompt_tokens", Kind.RATE, ("prompt_tokens_total",))
GENERATION_TOKENS = Family("generation_tokens", Kind.RATE, ("generation_tokens_total",))
PREEMPTIONS = Family("preemptions", Kind.RATE, ("num_preemptions_total",), required=False)
TTFT = Family("ttft", Kind.HISTOGRAM, ("time_to_first_token_seconds_bucket",))
ITL = Family(
    "itl",
    Kind.HISTOGRAM,
    ("inter_token_latency_seconds_bucket", "time_per_output_token_seconds_bucket"),
)
E2E = Family("e2e", Kind.HISTOGRAM, ("e2e_request_latency_seconds_bucket",))
QUEUE_TIME = Family(
    "queue_time", Kind.HISTOGRAM, ("request_queue_time_seconds_bucket",), required=False
)
PREFILL_TIME = Family(
    "prefill_time", Kind.HISTOGRAM, ("request_prefill_time_seconds_bucket",), required=False
)
DECODE_TIME = Family(
    "decode_time", Kind.HISTOGRAM, ("request_decode_time_seconds_bucket",), required=False
)
# The control law's capacity fit: the ITL histogram's `_sum` (its `_count` is the +Inf bucket)
# gives the mean step time and the mean number of sequences decoding over the rate window; the
# per-request token histograms' sums, counted at finish like `request_success_total`, give the
# request mix without pairing tokens counted at start with requests counted at finish.
ITL_SUM = Family(
    "itl_sum",
    Kind.RATE,
    ("inter_token_latency_seconds_sum", "time_per_output_token_seconds_sum"),
    required=False,
)
FINISHED_PROMPT_TOKENS = Family(
    "finished_prompt_tokens", Kind.RATE, ("request_prompt_tokens_sum",), required=False
)
FINISHED_GENERATION_TOKENS = Family(
    "finished_generation_tokens", Kind.RATE, ("request_generation_tokens_sum",), required=False
)

FAMILIES: tuple[Family, ...] = (
    RUNNING,
    WAITING,
    KV_USAGE,
    REQUESTS,
    PROMPT_TOKENS,
    GENERATION_TOKENS,
    PREEMPTIONS,
    TTFT,
    ITL,
    E2E,
    QUEUE_TIME,
    PREFILL_TIME,
    DECODE_TIME,
    ITL_SUM,
    FINISHED_PROMPT_TOKENS,
    FINISHED_GENERATION_TOKENS,
)

PODS = "pods"
LAST_SEEN = "last_seen"
POD_IN_FLIGHT = "pod_in_flight"
FRESHNESS_FAMILY = RUNNING
"""Every vLLM pod exports this gauge from start-up, busy or idle: it is the heartbeat."""


def duration(seconds: float) -> str:
    """A PromQL duration; milliseconds keep fractional windows exact."""
    if seconds <= 0:
        raise ValueError("a PromQL duration must be positive")
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def string_literal(value: str) -> str:
    """A PromQL double-quoted string (JSON's escapes are a subset of PromQL's Go escapes)."""
    return json.dumps(value)


def check_label_name(name: str) -> str:
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid Prometheus label name")
    return name


@dataclass(frozen=True)
class QuerySet:
    """The expressions of one fetch, for the services of the given namespaces.

    `rate_window_s` is the `rate()` range: at least two scrape intervals, or rates come back
    empty. `stale_after_s` is how old a pod's newest sample may be. `last_seen_window_s` is how
    far back a silent service is still remembered (reported as stale rather than as no data).
    """

    service_label: str = "sloscale_service"
    rate_window_s: float = 60.0
    stale_after_s: float = 90.0
    last_seen_window_s: float = 600.0

    def __post_init__(self) -> None:
        check_label_name(self.service_label)

    @property
    def last_seen_step_s(self) -> float:
        # Resolution of the look-back subquery: the age it reports may lag by this much.
        return min(15.0, max(1.0, self.stale_after_s / 6))

    def matchers(self, namespaces: Iterable[str]) -> str:
        """Series of labelled pods, limited to the namespaces asked about."""
        names = sorted(set(namespaces))
        alternatives = "|".join(re.escape(n) for n in names)
        return f'namespace=~{string_literal(alternatives)},{self.service_label}!=""'

    def _group(self, *extra: str) -> str:
        return ", ".join(("namespace", self.service_label, *extra))

    def _each_variant(self, family: Family, matchers: str, template: str) -> str:
        """`template` (with {s} for a selector) applied to every variant name, joined by `or`."""
        selectors = [f"{p}{name}{{{matchers}}}" for name in family.names for p in PREFIXES]
        return " or ".join(template.format(s=s) for s in selectors)

    def family(self, family: Family, namespaces: Iterable[str]) -> str:
        m = self.matchers(namespaces)
        window = duration(self.rate_window_s)
        if family.kind is Kind.GAUGE_SUM:
            return f"sum by ({self._group()}) ({self._each_variant(family, m, '{s}')})"
        if family.kind is Kind.GAUGE_MAX:
            return f"max by ({self._group()}) ({self._each_variant(family, m, '{s}')})"
        rates = self._each_variant(family, m, f"rate({{s}}[{window}])")
        if family.kind is Kind.RATE:
            return f"sum by ({self._group()}) ({rates})"
        return f"sum by ({self._group('le')}) ({rates})"

    def pods(self, namespaces: Iterable[str]) -> str:
        """Per service, the number of pods whose newest heartbeat is at most stale_after_s old."""
        stamps = self._each_variant(FRESHNESS_FAMILY, self.matchers(namespaces), "timestamp({s})")
        fresh = f"time() - ({stamps}) <= {self.stale_after_s:g}"
        return f"count by ({self._group()}) (count by ({self._group('pod', 'instance')}) ({fresh}))"

    def last_seen(self, namespaces: Iterable[str]) -> str:
        """Per service, the newest heartbeat within last_seen_window_s, stale-marked ones included."""
        stamps = self._each_variant(FRESHNESS_FAMILY, self.matchers(namespaces), "timestamp({s})")
        lookback = f"[{duration(self.last_seen_window_s)}:{duration(self.last_seen_step_s)}]"
        return f"max by ({self._group()}) (max_over_time(({stamps}){lookback}))"

    def pod_in_flight(self, namespaces: Iterable[str]) -> str:
        """Per pod, the requests it holds: running plus waiting. Two sums joined by `+` (an `or`
        would keep only one of the two gauges: set operators match series without their name)."""
        m, by = self.matchers(namespaces), self._group("pod")
        running = self._each_variant(RUNNING, m, "{s}")
        waiting = self._each_variant(WAITING, m, "{s}")
        return f"sum by ({by}) ({running}) + sum by ({by}) ({waiting})"

    def all(self, namespaces: Sequence[str]) -> dict[str, str]:
        """Every expression of one fetch, by key: `pods`, `last_seen`, one per family, then
        `pod_in_flight`."""
        queries = {PODS: self.pods(namespaces), LAST_SEEN: self.last_seen(namespaces)}
        queries.update({f.key: self.family(f, namespaces) for f in FAMILIES})
        queries[POD_IN_FLIGHT] = self.pod_in_flight(namespaces)
        return queries
