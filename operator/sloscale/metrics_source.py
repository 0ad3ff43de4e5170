"""Prometheus → one `MetricsSnapshot` (or the reason there is none) per InferenceService.

`PrometheusMetricsSource.fetch(services, now)` runs the fixed set of queries in `promql` — the
same number whatever the number of services — evaluated at `now`, and assembles per service:

- a `MetricsSnapshot` when at least one pod reported recently and every required family answered
  (zero rates from live pods are a valid snapshot whose `zero_traffic` is true);
- `NoData` when Prometheus holds no series for the service, or a required family is missing (for
  a pod's first scrapes, `rate()` has nothing to work with yet);
- `Stale` when the service reported before but no pod has a sample newer than `stale_after_s`;
- `QueryFailed` for every service when Prometheus cannot be reached or answers an error;
- `Malformed` when an answer cannot be read: NaN or negative values, a `le` that is not a number,
  a histogram without its +Inf bucket.

A snapshot comes as a `ServiceSnapshot`: the `MetricsSnapshot` the control law reads, plus each
pod's requests in flight (`in_flight_by_pod`), which only the operator's edge reads — to annotate
the least-loaded pods as the first to go on a scale-down. That per-pod reading is optional: a pod
without it, or with an unusable value, is left out, and the snapshot stands; when its query fails
or comes back unreadable, every pod goes without it (logged) and the snapshots still stand.

Nothing in a data problem raises out of `fetch`: the control law holds on an unavailable snapshot,
and the reason goes into the resource's status. The synchronous HTTP client
(`prometheus-api-client`) keeps this module simple; the operator calls `fetch` through
`asyncio.to_thread`.

`assemble` is the pure half — raw query answers in, snapshots out — so every way an answer can be
wrong is tested without a server.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from sloscale import promql
from sloscale.scaling.snapshot import Histogram, MetricsSnapshot, MetricsUnavailable, Unavailability

logger = logging.getLogger("sloscale.metrics")

ServiceKey = tuple[str, str]
"""(namespace, InferenceService name)."""

Result = MetricsSnapshot | MetricsUnavailable

# vLLM reports KV usage as a fraction; allow float noise above 1, refuse a percentage.
_KV_USAGE_SLACK = 1e-6


class MalformedAnswer(ValueError):
    """An answer whose shape is not an instant vector."""


class Sample(NamedTuple):
    # A tuple, not a dataclass: one fetch decodes one per series, over 100 000 at N=1000.
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class ServiceSnapshot(MetricsSnapshot):
    """A service's snapshot with the requests each of its pods holds (running plus waiting), by
    pod name, at the same instant."""

    in_flight_by_pod: Mapping[str, float] = field(default_factory=dict)


def parse_vector(result: object, service_label: str) -> dict[ServiceKey, list[Sample]]:
    """Group an instant-vector answer (`data.result`) by service.

    Values that are not numbers become NaN (and are reported as malformed downstream); series
    without the namespace or service label are not ours and are skipped.
    """
    if not isinstance(result, list):
        raise MalformedAnswer(f"expected a vector, got {type(result).__name__}")
    grouped: dict[ServiceKey, list[Sample]] = {}
    # Once per series of the answer (over 100 000 at N=1000): no helper call per value, and a
    # service's list is made once rather than on every `setdefault`.
    for item in result:
        labels = item.get("metric") if isinstance(item, dict) else None
        if not isinstance(labels, dict):
            raise MalformedAnswer(f"not a vector element: {item!r:.80}")
        namespace, service = labels.get("namespace"), labels.get(service_label)
        if not isinstance(namespace, str) or not isinstance(service, str):
            continue
        value = item.get("value")  # `[timestamp, "1.5"]`; NaN when unreadable
        try:
            number = (
                float(value[1]) if isinstance(value, list | tuple) and len(value) == 2 else math.nan
            )
        except (TypeError, ValueError):
            number = math.nan
        samples = grouped.get((namespace, service))
        if samples is None:
            grouped[(namespace, service)] = [Sample(labels, number)]
        else:
            samples.append(Sample(labels, number))
    return grouped


class _Unusable(Exception):
    def __init__(self, reason: Unavailability, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _scalar(
    samples: Sequence[Sample] | None, what: str, *, upper: float = math.inf
) -> float | None:
    if not samples:
        return None
    value = samples[0].value
    if not math.isfinite(value) or value < 0 or value > upper:
        raise _Unusable(Unavailability.MALFORMED, f"{what} is {value:g}, not a usable value")
    return value


def _histogram(samples: Sequence[Sample] | None, what: str) -> Histogram | None:
    if not samples:
        return None
    buckets: dict[float, float] = {}
    for sample in samples:
        try:
            bound = float(sample.labels["le"])
        except (KeyError, ValueError, TypeError):  # absent, not a number, not even a string
            raise _Unusable(
                Unavailability.MALFORMED,
                f"{what} has a bucket without a numeric le ({sample.labels.get('le')!r})",
            ) from None
        if math.isnan(bound) or not math.isfinite(sample.value) or sample.value < 0:
            raise _Unusable(
                Unavailability.MALFORMED, f"{what} bucket le={bound:g} has rate {sample.value:g}"
            )
        buckets[bound] = buckets.get(bound, 0.0) + sample.value
    bounds = tuple(sorted(buckets))
    if not math.isinf(bounds[-1]):
        raise _Unusable(Unavailability.MALFORMED, f"{what} has no +Inf bucket")
    # rate() extrapolates each bucket on its own, which can leave one slightly below its
    # predecessor; histogram_quantile repairs that the same way, with a running maximum.
    counts: list[float] = []
    for bound in bounds:
        counts.append(max(buckets[bound], counts[-1] if counts else 0.0))
    return Histogram(bounds=bounds, counts=tuple(counts))


def assemble(
    answers: Mapping[str, Mapping[ServiceKey, Sequence[Sample]]],
    services: Collection[ServiceKey],
    now: float,
    queries: promql.QuerySet,
) -> dict[ServiceKey, Result]:
    """Turn the grouped answers of one fetch (keyed as `QuerySet.all`) into a result per service."""
    results: dict[ServiceKey, Result] = {}
    for key in services:
        try:
            results[key] = _snapshot(answers, key, now, queries)
        except _Unusable as unusable:
            results[key] = MetricsUnavailable(unusable.reason, unusable.message)
    return results


def _snapshot(
    answers: Mapping[str, Mapping[ServiceKey, Sequence[Sample]]],
    key: ServiceKey,
    now: float,
    queries: promql.QuerySet,
) -> MetricsSnapshot:
    namespace, name = key
    where = f'namespace="{namespace}", {queries.service_label}="{name}"'
    pods = _scalar(answers.get(promql.PODS, {}).get(key), "the number of reporting pods")
    if not pods:
        last_seen = _scalar(answers.get(promql.LAST_SEEN, {}).get(key), "the last sample time")
        if last_seen is None:
            raise _Unusable(
                Unavailability.NO_DATA,
                f"Prometheus has no vLLM series labelled {where}: are the pods running and scraped?",
            )
        raise _Unusable(
            Unavailability.STALE,
            f"no pod labelled {where} has reported for {max(0.0, now - last_seen):.0f}s "
            f"(stale after {queries.stale_after_s:g}s)",
        )

    def answer(family: promql.Family) -> Sequence[Sample] | None:
        samples = answers.get(family.key, {}).get(key)
        if not samples and family.required:
            names = " / ".join(f"vllm:{n}" for n in family.names)
            hint = ""
            if family.kind in (promql.Kind.RATE, promql.Kind.HISTOGRAM):
                hint = f" (a rate needs two scrapes within {queries.rate_window_s:g}s)"
            raise _Unusable(Unavailability.NO_DATA, f"no {names} series labelled {where}{hint}")
        return samples

    def scalar(family: promql.Family, upper: float = math.inf) -> float:
        return _scalar(answer(family), family.key, upper=upper) or 0.0

    def histogram(family: promql.Family) -> Histogram:
        return _histogram(answer(family), family.key) or Histogram()

    def optional(family: promql.Family) -> float | None:
        """An optional rate: None where the pods do not export it."""
        return _scalar(answer(family), family.key)

    itl = histogram(promql.ITL)
    itl_seconds = optional(promql.ITL_SUM)

    return ServiceSnapshot(
        taken_at=now,
        window_s=queries.rate_window_s,
        pods_reporting=int(pods),
        requests_per_s=scalar(promql.REQUESTS),
        prompt_tokens_per_s=scalar(promql.PROMPT_TOKENS),
        generation_tokens_per_s=scalar(promql.GENERATION_TOKENS),
        running=scalar(promql.RUNNING),
        waiting=scalar(promql.WAITING),
        kv_usage=min(1.0, scalar(promql.KV_USAGE, upper=1.0 + _KV_USAGE_SLACK)),
        preemptions_per_s=scalar(promql.PREEMPTIONS),
        ttft=histogram(promql.TTFT),
        itl=itl,
        e2e=histogram(promql.E2E),
        queue_time=histogram(promql.QUEUE_TIME),
        prefill_time=histogram(promql.PREFILL_TIME),
        decode_time=histogram(promql.DECODE_TIME),
        itl_seconds_per_s=itl_seconds,
        itl_tokens_per_s=None if itl_seconds is None else itl.total,
        finished_prompt_tokens_per_s=optional(promql.FINISHED_PROMPT_TOKENS),
        finished_generation_tokens_per_s=optional(promql.FINISHED_GENERATION_TOKENS),
        in_flight_by_pod=_per_pod(answers.get(promql.POD_IN_FLIGHT, {}).get(key)),
    )


def _per_pod(samples: Sequence[Sample] | None) -> dict[str, float]:
    """Pod name → value; series without a pod label or with an unusable value are left out."""
    found: dict[str, float] = {}
    for sample in samples or ():
        pod = sample.labels.get("pod")
        if isinstance(pod, str) and pod and math.isfinite(sample.value) and sample.value >= 0:
            found[pod] = sample.value
    return found


# What a failed query raises: OSError covers requests' connection errors and timeouts;
# RecursionError a JSON body nested too deeply to decode.
QUERY_ERRORS = (
    OSError,
    PrometheusApiClientException,
    ValueError,
    KeyError,
    TypeError,
    RecursionError,
)


def _unavailable_for_all(
    services: Collection[ServiceKey], reason: Unavailability, message: str
) -> dict[ServiceKey, Result]:
    unavailable = MetricsUnavailable(reason, message)
    return {key: unavailable for key in services}


class PrometheusMetricsSource:
    """Reads every InferenceService's vLLM metrics from one Prometheus.

    Authentication: extra `headers`, a `bearer_token`, or a `bearer_token_file` read again before
    every fetch (projected service-account tokens rotate). TLS: `verify_tls=False` skips
    verification; `ca_file` names the CA bundle to verify with. `timeout_s` bounds each query and
    `retries` is how many times a failed connection or a 5xx answer is tried again: a tick should
    report `QueryFailed` promptly rather than wait out a long back-off.

    `queries_issued` counts the HTTP queries sent since construction.
    """

    def __init__(
        self,
        url: str,
        *,
        rate_window_s: float = 60.0,
        stale_after_s: float = 90.0,
        service_label: str = "sloscale_service",
        headers: Mapping[str, str] | None = None,
        bearer_token: str | None = None,
        bearer_token_file: str | Path | None = None,
        verify_tls: bool = True,
        ca_file: str | Path | None = None,
        timeout_s: float = 10.0,
        retries: int = 1,
        last_seen_window_s: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.queries = promql.QuerySet(
            service_label=service_label,
            rate_window_s=rate_window_s,
            stale_after_s=stale_after_s,
            last_seen_window_s=last_seen_window_s or max(600.0, 4 * stale_after_s),
        )
        self._headers = dict(headers or {})
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._token_file = Path(bearer_token_file) if bearer_token_file else None
        session = requests.Session()
        session.verify = str(ca_file) if ca_file else verify_tls
        self._client = PrometheusConnect(
            url=self.url,
            headers=self._headers,
            session=session,
            # Queries are reads: safe to retry whatever the HTTP verb.
            retry=Retry(
                total=retries,
                backoff_factor=0.2,
                status_forcelist=[502, 503, 504],
                allowed_methods=None,
            ),
            timeout=timeout_s,
        )
        self._timeout_s = timeout_s
        self._retries = retries
        self._lock = threading.Lock()
        self.queries_issued = 0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusMetricsSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch(self, services: Collection[ServiceKey], now: float) -> dict[ServiceKey, Result]:
        """One result per service in `services`, from queries evaluated at `now` (epoch seconds)."""
        if not services:
            return {}
        namespaces = sorted({namespace for namespace, _ in services})
        try:
            self._refresh_token()
        except OSError as error:
            return _unavailable_for_all(
                services, Unavailability.QUERY_FAILED, f"cannot read the bearer token file: {error}"
            )
        answers: dict[str, dict[ServiceKey, list[Sample]]] = {}
        for key, expression in self.queries.all(namespaces).items():
            try:
                raw = self._query(expression, now)
            except QUERY_ERRORS as error:
                if key == promql.POD_IN_FLIGHT:  # only steers scale-down victims: do without
                    logger.warning("per-pod load unread: %s", self._describe(error))
                    continue
                return _unavailable_for_all(
                    services,
                    Unavailability.QUERY_FAILED,
                    f"Prometheus at {self.url}: {self._describe(error)}",
                )
            try:
                answers[key] = parse_vector(raw, self.queries.service_label)
            except MalformedAnswer as error:
                if key == promql.POD_IN_FLIGHT:
                    logger.warning("per-pod load unreadable: %s", error)
                    continue
                return _unavailable_for_all(
                    services,
                    Unavailability.MALFORMED,
                    f"Prometheus answered something unreadable: {error}",
                )
        return assemble(answers, services, now, self.queries)

    def _query(self, expression: str, now: float) -> object:
        with self._lock:
            self.queries_issued += 1
        result: object = self._client.custom_query(expression, params={"time": f"{now:.3f}"})
        return result

    def _describe(self, error: Exception) -> str:
        """A status-sized account of a failed query (requests' own messages quote the whole URL)."""
        if isinstance(error, requests.Timeout):
            return f"no answer within {self._timeout_s:g}s"
        if isinstance(error, requests.exceptions.SSLError):
            return "TLS handshake failed (is the CA file right, or the certificate's name?)"
        if isinstance(error, requests.ConnectionError):
            return "cannot connect"
        if isinstance(error, requests.exceptions.RetryError):
            return f"kept answering 5xx ({self._retries + 1} tries)"
        if isinstance(error, PrometheusApiClientException):
            return f"answered an error: {str(error)[:200]}"
        return f"unreadable answer ({type(error).__name__}: {str(error)[:200]})"

    def _refresh_token(self) -> None:
        if self._token_file is not None:
            token = self._token_file.read_text().strip()
            self._client.headers = {**self._headers, "Authorization": f"Bearer {token}"}
