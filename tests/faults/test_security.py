"""Secured Prometheus: the bearer token and TLS options reach every query, and failures say why.

The metrics source against the sandbox's Prometheus behind a gate that speaks HTTPS with a
certificate from a CA of the test's own, and demands a bearer token: with the CA file (or with
verification turned off) and the token, queries are answered; without the CA the handshake fails
and says so; without the token Prometheus' refusal is reported, and the token never appears in any
message. (End to end, `sloscale run --prometheus-ca-file --prometheus-bearer-token-file` is run
by `test_api_faults.py`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_support import Box, PrometheusGate, make_tls

from sloscale.metrics_source import PrometheusMetricsSource
from sloscale.scaling.snapshot import MetricsUnavailable, Unavailability

TOKEN = "sloscale-security-token-9e107d9d372bb682"
SERVICE = ("nowhere", "nothing")  # no series: an answered query says NoData


@pytest.fixture(scope="module")
def secured(
    box: Box, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PrometheusGate, Path]]:
    ca, cert, key = make_tls(tmp_path_factory.mktemp("tls"))
    gate = PrometheusGate(box.prometheus_url, require_token=TOKEN, tls=(cert, key))
    try:
        yield gate, ca
    finally:
        gate.close()


def _result(url: str, **options: object) -> MetricsUnavailable:
    with PrometheusMetricsSource(url, timeout_s=5.0, retries=0, **options) as source:  # type: ignore[arg-type]
        result = source.fetch([SERVICE], 0.0)[SERVICE]
    assert isinstance(result, MetricsUnavailable)
    assert TOKEN not in result.message
    return result


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("trust", ["ca_file", "no_verify"])
def test_with_the_token_and_trust_in_the_certificate_queries_are_answered(
    secured: tuple[PrometheusGate, Path], trust: str
) -> None:
    gate, ca = secured
    options = {"ca_file": ca} if trust == "ca_file" else {"verify_tls": False}
    asked = len(gate.authorizations)
    result = _result(gate.url, bearer_token=TOKEN, **options)
    assert result.reason is Unavailability.NO_DATA, result  # Prometheus answered: no such series
    assert set(gate.authorizations[asked:]) == {f"Bearer {TOKEN}"}


def test_an_untrusted_certificate_fails_the_handshake_and_says_so(
    secured: tuple[PrometheusGate, Path],
) -> None:
    gate, _ = secured
    result = _result(gate.url, bearer_token=TOKEN)
    assert result.reason is Unavailability.QUERY_FAILED
    assert "TLS handshake failed" in result.message, result.message


def test_a_missing_or_wrong_token_is_reported_as_prometheus_refusal(
    secured: tuple[PrometheusGate, Path], tmp_path: Path
) -> None:
    gate, ca = secured
    wrong = tmp_path / "token"
    wrong.write_text("not-the-token\n")
    for options in ({}, {"bearer_token_file": wrong}):
        result = _result(gate.url, ca_file=ca, **options)
        assert result.reason is Unavailability.QUERY_FAILED
        assert "401" in result.message and "bearer token" in result.message, result.message
