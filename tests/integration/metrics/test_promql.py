"""The PromQL expressions: every vLLM name variant, one expression for all services, safe quoting.

Whether Prometheus accepts and evaluates them is shown against a real server in
test_metrics_prometheus.py; these pin down what the expressions must contain.
"""

from __future__ import annotations

import re

import pytest

from sloscale import promql

Q = promql.QuerySet(service_label="svc", rate_window_s=30, stale_after_s=45)


@pytest.mark.parametrize("family", promql.FAMILIES, ids=lambda f: f.key)
def test_each_family_reads_every_spelling_and_era_of_its_names(family: promql.Family) -> None:
    expression = Q.family(family, ["ns"])
    for name in family.names:
        assert f"vllm:{name}{{" in expression
        assert f"vllm_{name}{{" in expression
    # Variants are joined per series, before the single aggregation.
    assert expression.count(" by (") == 1
    group = "namespace, svc, le" if family.kind is promql.Kind.HISTOGRAM else "namespace, svc"
    assert f"by ({group})" in expression


def test_the_newest_name_comes_first_so_it_wins_when_a_pod_exposes_both() -> None:
    expression = Q.family(promql.ITL, ["ns"])
    assert expression.index("vllm:inter_token_latency") < expression.index(
        "vllm:time_per_output_token"
    )
    expression = Q.family(promql.KV_USAGE, ["ns"])
    assert expression.index("kv_cache_usage_perc") < expression.index("gpu_cache_usage_perc")


def test_rates_use_the_configured_window_and_freshness_the_stale_limit() -> None:
    assert "[30s]" in Q.family(promql.REQUESTS, ["ns"])
    assert "<= 45)" in Q.pods(["ns"])
    assert re.search(r"\[600s:\d+(ms|s)\]", Q.last_seen(["ns"]))


def test_the_expressions_do_not_grow_with_the_number_of_services_in_a_namespace() -> None:
    one = Q.all(["ns"])
    assert one == Q.all(["ns"] * 50)
    assert len(one) == len(promql.FAMILIES) + 3  # pods, last_seen, pod_in_flight


def test_namespaces_are_quoted_for_the_regex_and_the_string() -> None:
    matchers = Q.matchers(['we"ird.ns', "b"])
    assert matchers.startswith('namespace=~"b|we\\"ird\\\\.ns"')
    assert matchers.endswith(',svc!=""')


def test_an_invalid_service_label_is_refused() -> None:
    with pytest.raises(ValueError, match="label name"):
        promql.QuerySet(service_label="sloscale.dev/service")


@pytest.mark.parametrize(("seconds", "text"), [(60, "60s"), (0.5, "500ms"), (90.25, "90250ms")])
def test_durations(seconds: float, text: str) -> None:
    assert promql.duration(seconds) == text


def test_a_duration_must_be_positive() -> None:
    with pytest.raises(ValueError):
        promql.duration(0)
