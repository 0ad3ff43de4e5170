"""Contract: the emulated pod exports the metric families the operator reads exactly as vLLM does.

The operator's queries (`sloscale.promql.FAMILIES`) are written against vLLM's names, and the
sandbox and every closed-loop test run on emulated pods whose metrics come from
`sloscale.sandbox.vllm_metrics.VllmMetrics`. Both are only right if a live vLLM agrees: here the
real engine and an emulated pod are started with the same vLLM arguments, both are scraped over
HTTP, and for each family the operator reads, the names, types, label names, bucket edges and
sample names must match. A failure names the family and what differs.

Two scrapes: the classic text format, and the answer to Prometheus' own Accept header (it asks for
OpenMetrics first). There the two differ in spelling only: vLLM 0.32 serves `/metrics` through
prometheus-fastapi-instrumentator, which always answers the classic format with `vllm:` names,
while the emulated pod negotiates OpenMetrics as prometheus_client does and writes `vllm_…`. The
operator reads both spellings and the scrape job's relabel rule renames `vllm_` back, so that
comparison folds the spelling (and leaves out OpenMetrics' `_created` samples, which vLLM exposes
as separate families and the operator never reads).
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from real_vllm_support import EmulatedPod, Engine, start_emulated_pod

from sloscale import promql
from sloscale.sandbox.real_vllm import RealVllmServer

# An engine start can take minutes on two busy cores; it counts towards the first test using it.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

# What Prometheus 2.x sends when it scrapes.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
KIND_TYPES = {
    promql.Kind.GAUGE_SUM: "gauge",
    promql.Kind.GAUGE_MAX: "gauge",
    promql.Kind.RATE: "counter",
    promql.Kind.HISTOGRAM: "histogram",
}


@dataclass(frozen=True)
class FamilyShape:
    """What the operator depends on in one exposed family."""

    name: str
    type: str
    label_names: frozenset[str]  # over all its samples, `le` aside
    bucket_edges: tuple[float, ...]  # ascending, +Inf included; () when not a histogram
    sample_names: frozenset[str]


def scrape(url: str, accept: str) -> tuple[str, str]:
    """(body, content type) of `url`/metrics for an Accept header."""
    request = urllib.request.Request(f"{url}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read()
        return body.decode(), str(response.headers.get("Content-Type", ""))


def families(body: str, content_type: str) -> Iterable[Metric]:
    """The families of a scrape, parsed as the format it is; OpenMetrics' `vllm_` sample names
    spelled back as `vllm:` (what the scrape job's relabel rule does)."""
    if content_type.startswith("application/openmetrics-text"):
        return parse_openmetrics(re.sub(r"^vllm_", "vllm:", body, flags=re.MULTILINE))
    return parse_text(body)


def shapes(body: str, content_type: str) -> dict[str, FamilyShape]:
    """Every family of a scrape by name, `_total` dropped (the two formats name counters apart)."""
    out: dict[str, FamilyShape] = {}
    for family in families(body, content_type):
        labels: set[str] = set()
        edges: set[float] = set()
        for sample in family.samples:
            labels.update(k for k in sample.labels if k != "le")
            if sample.name.endswith("_bucket"):
                edges.add(float(sample.labels["le"]))
        name = family.name.removesuffix("_total")
        out[name] = FamilyShape(
            name,
            family.type,
            frozenset(labels),
            tuple(sorted(edges)),
            frozenset(s.name for s in family.samples if not s.name.endswith("_created")),
        )
    return out


HISTOGRAM_COUNTERS = ("_sum", "_count")  # a histogram's own counters, read with rate()


def exposed(family: promql.Family, scraped: dict[str, FamilyShape]) -> FamilyShape | None:
    """The family holding the first of the family's query names (newest vLLM first) that a
    scrape exposes, under either spelling; a `_sum` or `_count` name is a histogram's sample."""
    for variant in family.names:
        base = variant.removesuffix("_bucket").removesuffix("_total")
        for suffix in HISTOGRAM_COUNTERS:
            base = base.removesuffix(suffix)
        for prefix in promql.PREFIXES:
            shape = scraped.get(prefix + base)
            if shape is None:
                continue
            if variant.endswith(HISTOGRAM_COUNTERS) and prefix + variant not in shape.sample_names:
                continue
            return shape
    return None


def expected_type(family: promql.Family, shape: FamilyShape) -> str:
    """The type the operator's query needs: a rate of a histogram's `_sum`/`_count` reads a
    histogram family's counter."""
    if family.kind is promql.Kind.RATE and any(
        shape.name + suffix in shape.sample_names
        for suffix in HISTOGRAM_COUNTERS
        if any(n.endswith(suffix) for n in family.names)
    ):
        return "histogram"
    return KIND_TYPES[family.kind]


def differences(real: FamilyShape, emulated: FamilyShape | None) -> list[str]:
    if emulated is None:
        return [f"{real.name}: the emulated pod does not export it"]
    diffs = []
    if real.type != emulated.type:
        diffs.append(f"{real.name}: type is {real.type} in vLLM, {emulated.type} emulated")
    if real.label_names != emulated.label_names:
        diffs.append(
            f"{real.name}: label names are {sorted(real.label_names)} in vLLM, "
            f"{sorted(emulated.label_names)} emulated"
        )
    if real.bucket_edges != emulated.bucket_edges:
        only_real = sorted(set(real.bucket_edges) - set(emulated.bucket_edges))
        only_emulated = sorted(set(emulated.bucket_edges) - set(real.bucket_edges))
        diffs.append(
            f"{real.name}: bucket edges differ: only in vLLM {only_real}, "
            f"only emulated {only_emulated}"
        )
    if real.sample_names != emulated.sample_names:
        diffs.append(
            f"{real.name}: sample names are {sorted(real.sample_names)} in vLLM, "
            f"{sorted(emulated.sample_names)} emulated"
        )
    return diffs


@pytest.fixture(scope="module")
def real_server(engine: Engine) -> RealVllmServer:
    return engine.ensure(2)


@pytest.fixture(scope="module")
def emulated_pod(real_server: RealVllmServer) -> Iterator[EmulatedPod]:
    pod = start_emulated_pod(real_server)
    try:
        yield pod
    finally:
        pod.stop()


Shapes = dict[str, FamilyShape]


@pytest.fixture(
    scope="module", params=["text/plain", PROMETHEUS_ACCEPT], ids=["text", "prometheus"]
)
def scrapes(
    request: pytest.FixtureRequest, real_server: RealVllmServer, emulated_pod: EmulatedPod
) -> tuple[Shapes, Shapes]:
    """(vLLM's families, the emulated pod's), both scraped with one Accept header."""
    accept: str = request.param
    return shapes(*scrape(real_server.url, accept)), shapes(*scrape(emulated_pod.url, accept))


@pytest.mark.parametrize("family", promql.FAMILIES, ids=lambda f: f.key)
def test_vllm_exports_every_family_the_operator_queries(
    family: promql.Family, scrapes: tuple[Shapes, Shapes]
) -> None:
    real, _ = scrapes
    shape = exposed(family, real)
    assert shape is not None, f"{family.key}: live vLLM exports none of {family.names}"
    kind = expected_type(family, shape)
    assert shape.type == kind, f"{shape.name}: the operator reads a {kind}, vLLM has a {shape.type}"


@pytest.mark.parametrize("family", promql.FAMILIES, ids=lambda f: f.key)
def test_emulated_family_matches_vllm(
    family: promql.Family, scrapes: tuple[Shapes, Shapes]
) -> None:
    real, emulated = scrapes
    shape = exposed(family, real)
    assert shape is not None, f"{family.key}: live vLLM exports none of {family.names}"
    diffs = differences(shape, emulated.get(shape.name))
    assert not diffs, "\n".join(diffs)


def test_differences_name_the_family_and_what_differs() -> None:
    """The report a mismatch produces (the contract is only useful if its failures say where)."""
    real = FamilyShape(
        "vllm:e2e_request_latency_seconds",
        "histogram",
        frozenset({"model_name", "engine"}),
        (0.3, 0.5, float("inf")),
        frozenset({"vllm:e2e_request_latency_seconds_bucket"}),
    )
    emulated = FamilyShape(
        real.name, "summary", frozenset({"model_name"}), (0.1, 0.3, 0.5, float("inf")),
        real.sample_names,
    )  # fmt: skip
    assert differences(real, emulated) == [
        "vllm:e2e_request_latency_seconds: type is histogram in vLLM, summary emulated",
        "vllm:e2e_request_latency_seconds: label names are ['engine', 'model_name'] in vLLM, "
        "['model_name'] emulated",
        "vllm:e2e_request_latency_seconds: bucket edges differ: only in vLLM [], only emulated [0.1]",
    ]
    assert differences(real, None) == [
        "vllm:e2e_request_latency_seconds: the emulated pod does not export it"
    ]
    assert differences(real, real) == []
