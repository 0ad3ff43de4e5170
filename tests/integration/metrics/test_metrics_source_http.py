"""PrometheusMetricsSource against HTTP servers that misbehave, and its authentication.

A small real HTTP server plays a Prometheus that answers errors or nonsense; Prometheus itself
cannot be made to. Each test checks that `fetch` turns the problem into one result per service
instead of raising, and gives up after the first failed query.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from sloscale.metrics_source import PrometheusMetricsSource
from sloscale.scaling.snapshot import MetricsUnavailable, Unavailability

SERVICES = [("team-a", "chat"), ("team-b", "batch")]
NOW = 1_800_000_000.0

Reply = tuple[int, bytes]


class FakePrometheus:
    """Answers every request with `reply()` and remembers the requests' Authorization headers."""

    def __init__(self, reply: Callable[[], Reply], failing: str | None = None) -> None:
        self.reply = reply
        self.authorizations: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.authorizations.append(self.headers.get("Authorization"))
                query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
                status, body = (
                    (422, b'{"status":"error","errorType":"timeout","error":"query timed out"}')
                    if failing is not None and failing in query
                    else fake.reply()
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval makes shutdown() return promptly.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def prometheus_answering() -> Iterator[Callable[[Callable[[], Reply]], FakePrometheus]]:
    servers: list[FakePrometheus] = []

    def start(reply: Callable[[], Reply]) -> FakePrometheus:
        servers.append(FakePrometheus(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def empty_vector() -> Reply:
    return 200, json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": []}}
    ).encode()


def all_unavailable(results: Mapping[tuple[str, str], object], reason: Unavailability) -> list[str]:
    assert set(results) == set(SERVICES)
    messages = []
    for result in results.values():
        assert isinstance(result, MetricsUnavailable), result
        assert result.reason is reason, result.message
        messages.append(result.message)
    return messages


@pytest.mark.parametrize(
    ("reply", "reason", "said"),
    [
        (
            lambda: (422, b'{"status":"error","errorType":"execution","error":"query timed out"}'),
            Unavailability.QUERY_FAILED,
            "query timed out",
        ),
        (lambda: (503, b"overloaded"), Unavailability.QUERY_FAILED, "5xx"),
        (lambda: (200, b"<html>a login page</html>"), Unavailability.QUERY_FAILED, "unreadable"),
        (lambda: (200, b'{"status":"error"}'), Unavailability.QUERY_FAILED, "unreadable"),
        (
            lambda: (200, b'{"status":"success","data":{"resultType":"scalar","result":[1, "2"]}}'),
            Unavailability.MALFORMED,
            "not a vector element",
        ),
    ],
    ids=["error-answer", "unavailable", "not-json", "no-data-field", "not-a-vector"],
)
def test_a_bad_answer_makes_every_service_unavailable_after_one_query(
    prometheus_answering: Callable[[Callable[[], Reply]], FakePrometheus],
    reply: Callable[[], Reply],
    reason: Unavailability,
    said: str,
) -> None:
    server = prometheus_answering(reply)
    with PrometheusMetricsSource(server.url, retries=1) as source:
        messages = all_unavailable(source.fetch(SERVICES, NOW), reason)
        # A 5xx is tried once more; anything else is final at once.
        assert source.queries_issued == 1
    assert said in messages[0]
    assert len(server.authorizations) == (2 if "5xx" in said else 1)


def test_a_failed_per_pod_query_leaves_the_snapshots_to_the_other_families() -> None:
    # The per-pod load only orders scale-down victims: its query timing out must not turn into
    # QueryFailed for every service (levers frozen, a Warning each) the way a required one does.
    server = FakePrometheus(empty_vector, failing=") + sum by (")
    try:
        with PrometheusMetricsSource(server.url, retries=0) as source:
            results = source.fetch(SERVICES, NOW)
            asked = source.queries_issued
            assert asked == len(source.queries.all(["team-a", "team-b"]))  # every query asked
    finally:
        server.close()
    assert set(results) == set(SERVICES)
    for result in results.values():
        assert isinstance(result, MetricsUnavailable)  # no series at all: nothing reports yet
        assert result.reason is not Unavailability.QUERY_FAILED, result.message
    # The same failure on a required family is an outage for every service.
    server = FakePrometheus(empty_vector, failing="vllm:num_requests_waiting")
    try:
        with PrometheusMetricsSource(server.url, retries=0) as source:
            all_unavailable(source.fetch(SERVICES, NOW), Unavailability.QUERY_FAILED)
    finally:
        server.close()


def test_an_unreachable_prometheus_is_query_failed() -> None:
    with PrometheusMetricsSource("http://127.0.0.1:9", retries=0, timeout_s=2) as source:
        messages = all_unavailable(source.fetch(SERVICES, NOW), Unavailability.QUERY_FAILED)
    assert "cannot connect" in messages[0]


def test_a_bearer_token_is_sent_with_every_query(
    prometheus_answering: Callable[[Callable[[], Reply]], FakePrometheus],
) -> None:
    server = prometheus_answering(empty_vector)
    with PrometheusMetricsSource(
        server.url, bearer_token="s3cret", headers={"X-Scope-OrgID": "a"}
    ) as source:
        all_unavailable(source.fetch(SERVICES, NOW), Unavailability.NO_DATA)
        assert source.queries_issued == len(server.authorizations) > 1
    assert set(server.authorizations) == {"Bearer s3cret"}


def test_a_token_file_is_read_again_before_each_fetch(
    prometheus_answering: Callable[[Callable[[], Reply]], FakePrometheus], tmp_path: Path
) -> None:
    server = prometheus_answering(empty_vector)
    token = tmp_path / "token"
    token.write_text("first\n")
    with PrometheusMetricsSource(server.url, bearer_token_file=token) as source:
        source.fetch(SERVICES, NOW)
        token.write_text("rotated\n")
        source.fetch(SERVICES, NOW)
        token.unlink()
        messages = all_unavailable(source.fetch(SERVICES, NOW), Unavailability.QUERY_FAILED)
    assert {server.authorizations[0], server.authorizations[-1]} == {
        "Bearer first",
        "Bearer rotated",
    }
    assert "token" in messages[0]


def test_nothing_is_asked_when_no_service_is(
    prometheus_answering: Callable[[Callable[[], Reply]], FakePrometheus],
) -> None:
    server = prometheus_answering(empty_vector)
    with PrometheusMetricsSource(server.url) as source:
        assert source.fetch([], NOW) == {}
        assert source.queries_issued == 0
    assert server.authorizations == []
