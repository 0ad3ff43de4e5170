"""Whatever Prometheus answers, reading metrics never raises and only the affected service holds.

A real HTTP server on loopback plays Prometheus: for each of the operator's fixed set of queries it
answers what hypothesis drew — healthy instant vectors for three services, with one service's
series broken (NaN, ±Inf, negative or unreadable values, buckets without `le` or without +Inf,
a KV usage read as a percentage, a family or the whole service missing, a service gone silent),
harmless noise for everyone (huge label sets, duplicate series, foreign series, empty optional
families, extra response fields), and sometimes an answer that is broken as a whole (HTTP errors,
malformed or truncated JSON, HTML, another result type, deeply nested JSON).

`PrometheusMetricsSource.fetch` must return one result per service every time, without raising:
- an answer broken as a whole makes every service unavailable (QueryFailed or Malformed), with a
  message naming Prometheus;
- otherwise the broken service gets `MetricsUnavailable` with the expected reason and a message
  that names what is wrong, and every other service still gets its snapshot.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sloscale import promql
from sloscale.metrics_source import PrometheusMetricsSource, ServiceSnapshot
from sloscale.scaling.snapshot import MetricsSnapshot, MetricsUnavailable, Unavailability

JSON = dict[str, Any]
NOW = 1_900_000_000.0
LABEL = "sloscale_service"
SERVICES = [("team-a", "chat"), ("team-a", "code"), ("team-b", "batch")]
BUCKETS = ("0.1", "0.5", "1", "2.5", "10", "+Inf")
GAUGES = {"running": "8", "waiting": "3", "kv_usage": "0.4"}
RATES = {
    "requests": "5",
    "prompt_tokens": "1000",
    "generation_tokens": "250",
    "preemptions": "0",
    "itl_sum": "7",
    "finished_prompt_tokens": "950",
    "finished_generation_tokens": "240",
}
HISTOGRAMS = ("ttft", "itl", "e2e", "queue_time", "prefill_time", "decode_time")
IN_FLIGHT = {"pod-0": "5", "pod-1": "6"}  # per pod: running plus waiting
OPTIONAL = tuple(f.key for f in promql.FAMILIES if not f.required)
REQUIRED_HISTOGRAMS = tuple(h for h in HISTOGRAMS if h not in OPTIONAL)
Reply = tuple[int, str, bytes]  # status, content type, body


# --- the server -------------------------------------------------------------------------------


class FakePrometheus:
    """Answers `/api/v1/query` from `replies` (keyed by the query text); counts the queries."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.asked: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query).get("query", [""])[0]
                fake.asked.append(query)
                status, kind, body = fake.replies.get(query, (404, "text/plain", b"unknown query"))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="module")
def source(prometheus: FakePrometheus) -> Iterator[PrometheusMetricsSource]:
    with PrometheusMetricsSource(prometheus.url, timeout_s=5.0, retries=1) as src:
        yield src


# --- healthy answers ----------------------------------------------------------------------------


def _series(ns: str, svc: str, value: Any, **labels: Any) -> JSON:
    return {"metric": {"namespace": ns, LABEL: svc, **labels}, "value": [NOW, value]}


def healthy() -> dict[str, list[JSON]]:
    """Every query's vector: all three services reporting from two fresh pods."""
    answers: dict[str, list[JSON]] = {promql.PODS: [], promql.LAST_SEEN: [], promql.POD_IN_FLIGHT: []}
    for key in (*GAUGES, *RATES, *HISTOGRAMS):
        answers[key] = []
    for ns, svc in SERVICES:
        answers[promql.PODS].append(_series(ns, svc, "2"))
        answers[promql.LAST_SEEN].append(_series(ns, svc, str(NOW - 1)))
        for pod, value in IN_FLIGHT.items():
            answers[promql.POD_IN_FLIGHT].append(_series(ns, svc, value, pod=pod))
        for key, value in {**GAUGES, **RATES}.items():
            answers[key].append(_series(ns, svc, value))
        for key in HISTOGRAMS:
            for i, le in enumerate(BUCKETS):
                answers[key].append(_series(ns, svc, str(i + 1), le=le))
    return answers


# --- what can go wrong for one service ----------------------------------------------------------


@dataclass(frozen=True)
class Breakage:
    """One service's series broken one way; the reason and words its result must carry."""

    name: str
    reason: Unavailability
    words: str


def _victim(series: list[JSON], ns: str, svc: str) -> list[JSON]:
    return [
        s for s in series if s["metric"].get("namespace") == ns and s["metric"].get(LABEL) == svc
    ]


def _break(answers: dict[str, list[JSON]], how: str, family: str, ns: str, svc: str) -> Breakage:
    """Apply breakage `how` to service (ns, svc) in `family` (where the breakage needs one)."""
    mine = _victim(answers[family], ns, svc) if family in answers else []
    match how:
        case "value":  # NaN, ±Inf, negative, unreadable, missing
            bad = [
                ["x", "NaN"],
                [NOW, "+Inf"],
                [NOW, "-Inf"],
                [NOW, "-3"],
                [NOW, "many"],
                [NOW],
                None,
            ][hash(family) % 7]
            mine[0]["value"] = bad
            return Breakage(how, Unavailability.MALFORMED, family)
        case "no_le":
            del mine[0]["metric"]["le"]
            return Breakage(how, Unavailability.MALFORMED, "without a numeric le")
        case "le_not_a_number":
            mine[0]["metric"]["le"] = "fast"
            return Breakage(how, Unavailability.MALFORMED, "without a numeric le ('fast')")
        case "le_not_a_string":
            mine[0]["metric"]["le"] = None
            return Breakage(how, Unavailability.MALFORMED, "without a numeric le")
        case "no_inf_bucket":
            answers[family].remove(next(s for s in mine if s["metric"]["le"] == "+Inf"))
            return Breakage(how, Unavailability.MALFORMED, f"{family} has no +Inf bucket")
        case "percent_kv":
            _victim(answers["kv_usage"], ns, svc)[0]["value"] = [NOW, "40"]
            return Breakage(how, Unavailability.MALFORMED, "kv_usage is 40")
        case "family_missing":
            for s in mine:
                answers[family].remove(s)
            return Breakage(how, Unavailability.NO_DATA, "no vllm:")
        case "silent":  # was reporting; no pod fresh now
            for s in _victim(answers[promql.PODS], ns, svc):
                answers[promql.PODS].remove(s)
            return Breakage(how, Unavailability.STALE, "has reported for")
        case "never_seen":
            for series in answers.values():
                for s in _victim(series, ns, svc):
                    series.remove(s)
            return Breakage(how, Unavailability.NO_DATA, "Prometheus has no vLLM series")
    raise AssertionError(how)


NEEDS_FAMILY = {
    "value": [*GAUGES, *RATES, *HISTOGRAMS, promql.PODS],
    "no_le": list(HISTOGRAMS),
    "le_not_a_number": list(HISTOGRAMS),
    "le_not_a_string": list(HISTOGRAMS),
    "no_inf_bucket": list(HISTOGRAMS),
    "percent_kv": ["kv_usage"],
    "family_missing": [
        "running",
        "waiting",
        "requests",
        "prompt_tokens",
        "generation_tokens",
        *REQUIRED_HISTOGRAMS,
    ],
    "silent": [promql.PODS],
    "never_seen": [promql.PODS],
}


# --- harmless noise -----------------------------------------------------------------------------


def _noise(answers: dict[str, list[JSON]], how: str, family: str) -> None:
    series = answers[family]
    match how:
        case "huge_labels":
            for s in series:
                s["metric"].update({f"extra_label_{i}": "v" * 50 for i in range(300)})
        case "duplicates" if family not in HISTOGRAMS:  # the first of equal series wins
            series.extend(json.loads(json.dumps(series)))
        case "foreign":
            series.append(
                {"metric": {"namespace": "team-a"}, "value": [NOW, "NaN"]}
            )  # no service label
            series.append({"metric": {"namespace": 7, LABEL: "chat"}, "value": [NOW, "1"]})
            series.append(_series("elsewhere", "chat", "NaN"))  # not asked about
        case "optional_empty" if family in OPTIONAL:
            series.clear()


# --- answers broken as a whole ------------------------------------------------------------------


def _vector(result: Any) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


WHOLE = {
    "http_500": (500, "application/json", b'{"status":"error","errorType":"execution","error":"query timed out"}'),
    "http_400": (400, "application/json", b'{"status":"error","errorType":"bad_data","error":"parse error"}'),
    "http_503": (503, "text/plain", b"Service Unavailable"),
    "truncated_json": (200, "application/json", _vector([])[:-7]),
    "html": (200, "text/html", b"<html><body>Login required</body></html>"),
    "empty_body": (200, "application/json", b""),
    "json_list": (200, "application/json", b"[]"),
    "no_data_field": (200, "application/json", b'{"status":"success"}'),
    "scalar_result": (200, "application/json", json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [NOW, "1"]}}).encode()),
    "result_object": (200, "application/json", _vector({"chat": 1})),
    "metric_not_object": (200, "application/json", _vector([{"metric": "chat", "value": [NOW, "1"]}])),
    "deep_nesting": (200, "application/json", b'{"status":"success","data":{"result":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"),
}  # fmt: skip


# --- the property -------------------------------------------------------------------------------


@dataclass
class Plan:
    breakage: tuple[str, str, int] | None  # (how, family, service index)
    noise: list[tuple[str, str]] = field(default_factory=list)
    whole: tuple[str, str] | None = None  # (fault, family)


ALL_KEYS = [promql.PODS, promql.LAST_SEEN, promql.POD_IN_FLIGHT, *GAUGES, *RATES, *HISTOGRAMS]
breakages = st.sampled_from(sorted(NEEDS_FAMILY)).flatmap(
    lambda how: st.tuples(
        st.just(how), st.sampled_from(NEEDS_FAMILY[how]), st.integers(0, len(SERVICES) - 1)
    )
)
plans = st.builds(
    Plan,
    breakage=st.one_of(st.none(), breakages),
    noise=st.lists(
        st.tuples(
            st.sampled_from(["huge_labels", "duplicates", "foreign", "optional_empty"]),
            st.sampled_from(ALL_KEYS),
        ),
        max_size=3,
    ),
    whole=st.one_of(
        st.none(), st.none(), st.tuples(st.sampled_from(sorted(WHOLE)), st.sampled_from(ALL_KEYS))
    ),
)


def _serve(
    prometheus: FakePrometheus, source: PrometheusMetricsSource, plan: Plan
) -> Breakage | None:
    answers = healthy()
    broken = None
    if plan.breakage is not None:
        how, family, index = plan.breakage
        broken = _break(answers, how, family, *SERVICES[index])
    for how, family in plan.noise:
        if plan.breakage is None or family != plan.breakage[1]:  # noise never hides the breakage
            _noise(answers, how, family)
    expressions = source.queries.all(sorted({ns for ns, _ in SERVICES}))
    prometheus.replies = {
        expr: (200, "application/json", _vector(answers[key])) for key, expr in expressions.items()
    }
    if plan.whole is not None:
        fault, family = plan.whole
        prometheus.replies[expressions[family]] = WHOLE[fault]
    return broken


# Found by this test, kept as fixed cases: a `le` that is not a string, and JSON nested deeper
# than the decoder recurses, both escaped `fetch` as exceptions.
@example(plan=Plan(breakage=("le_not_a_string", "ttft", 1)))
@example(plan=Plan(breakage=None, whole=("deep_nesting", "waiting")))
@example(plan=Plan(breakage=("never_seen", "pods", 0), whole=("deep_nesting", "pod_in_flight")))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans)
def test_any_answer_gives_one_result_per_service_and_only_the_broken_one_holds(
    prometheus: FakePrometheus, source: PrometheusMetricsSource, plan: Plan
) -> None:
    broken = _serve(prometheus, source, plan)
    results = source.fetch(SERVICES, NOW)  # must not raise, whatever was served

    assert sorted(results) == sorted(SERVICES)
    # A broken per-pod query costs only the per-pod reading (it orders scale-down victims);
    # any other query broken as a whole is an outage for every service.
    per_pod_lost = plan.whole is not None and plan.whole[1] == promql.POD_IN_FLIGHT
    if plan.whole is not None and not per_pod_lost:
        for result in results.values():
            assert isinstance(result, MetricsUnavailable), result
            assert result.reason in (Unavailability.QUERY_FAILED, Unavailability.MALFORMED)
            assert "Prometheus" in result.message
        return
    for index, key in enumerate(SERVICES):
        result = results[key]
        if broken is not None and plan.breakage is not None and plan.breakage[2] == index:
            assert isinstance(result, MetricsUnavailable), f"{broken.name}: {result}"
            assert result.reason is broken.reason, result
            assert broken.words in result.message, result.message
        else:
            assert isinstance(result, MetricsSnapshot), f"{key} after {plan}: {result}"
            assert result.pods_reporting == 2
            assert math.isfinite(result.requests_per_s) and result.waiting == 3.0
            # The per-pod reading is optional: noise never breaks it, a fault leaves it empty.
            assert isinstance(result, ServiceSnapshot)
            in_flight = {} if per_pod_lost else {p: float(v) for p, v in IN_FLIGHT.items()}
            assert result.in_flight_by_pod == in_flight


def test_every_query_was_answered_by_the_plan(
    prometheus: FakePrometheus, source: PrometheusMetricsSource
) -> None:
    """Guards the fuzz above: the source asks exactly the queries the plans answer, one each."""
    _serve(prometheus, source, Plan(breakage=None))
    prometheus.asked.clear()
    results = source.fetch(SERVICES, NOW)
    assert all(isinstance(r, MetricsSnapshot) for r in results.values())
    assert sorted(prometheus.asked) == sorted(source.queries.all(["team-a", "team-b"]).values())
