"""Invalid InferenceServices are refused by the API with a message a user can act on.

Each case is the smallest valid spec with one mistake a user could make — a wrong type, a missing
or doubled objective, bounds out of order, a duration or percentage that does not parse, a value
out of range, an argument the operator owns — POSTed over HTTP with the official client to the
API emulator running the project's CRD (schema and CEL rules). Every one must come back as a 422
`Invalid` whose cause names the field and says what is wrong in words, and nothing may be stored.
The top-level message is what `kubectl apply` prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from badinput_support import GROUP, PLURAL, VERSION, manifest, valid_spec
from kubernetes import client
from kubernetes.client.rest import ApiException

Spec = dict[str, Any]
NAMESPACE = "default"


@dataclass(frozen=True)
class Case:
    id: str
    breaks: Callable[[Spec], Any]  # the valid spec in, the invalid spec out
    field: str  # the field path the cause must name
    words: tuple[str, ...]  # what the cause's message must say


def _set(path: str, value: Any) -> Callable[[Spec], Spec]:
    """Set a dotted path in the spec (creating objects on the way)."""

    def change(spec: Spec) -> Spec:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        return spec

    return change


def _drop(path: str) -> Callable[[Spec], Spec]:
    def change(spec: Spec) -> Spec:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[part]
        del node[last]
        return spec

    return change


def _both(*changes: Callable[[Spec], Spec]) -> Callable[[Spec], Spec]:
    def change(spec: Spec) -> Spec:
        for one in changes:
            spec = one(spec)
        return spec

    return change


LATENCY = {"metric": "TimeToFirstToken", "target": "1s"}
THROUGHPUT = {"latencyBound": {"metric": "EndToEndLatency", "target": "20s"}}

CASES = [
    # --- the objective ------------------------------------------------------------------------
    Case("missing objective", _drop("objective"), "spec.objective", ("Required value",)),
    Case("objective without type", _drop("objective.type"), "spec.objective.type", ("Required value",)),
    Case("unknown objective type", _set("objective.type", "Cost"), "spec.objective.type",
         ('Unsupported value: "Cost"', '"Latency", "Throughput"')),
    Case("two objectives", _set("objective.throughput", THROUGHPUT), "spec.objective",
         ("objective must set exactly the member named by objective.type",)),
    Case("type names the other member", _set("objective.type", "Throughput"), "spec.objective",
         ("objective must set exactly the member named by objective.type",)),
    Case("latency objective without its target", _drop("objective.latency.target"),
         "spec.objective.latency.target", ("Required value",)),
    Case("unknown latency metric", _set("objective.latency.metric", "TimeToLastToken"),
         "spec.objective.latency.metric", ('Unsupported value: "TimeToLastToken"', '"TimeToFirstToken"')),
    Case("unknown percentile", _set("objective.latency.percentile", "p42"), "spec.objective.latency.percentile",
         ('Unsupported value: "p42"', '"p50", "p90", "p95", "p99", "p99.9"')),
    Case("percentile as a number", _set("objective.latency.percentile", 99), "spec.objective.latency.percentile",
         ("must be of type string",)),
    Case("fractional duration", _set("objective.latency.target", "1.5s"), "spec.objective.latency.target",
         ('Invalid value: "1.5s"', "should match")),
    Case("duration without a unit", _set("objective.latency.target", "800"), "spec.objective.latency.target",
         ('Invalid value: "800"', "should match")),
    Case("zero target", _set("objective.latency.target", "0s"), "spec.objective.latency",
         ("target must be a positive duration such as 800ms or 2s",)),
    Case("window too short", _set("objective.latency.window", "10s"), "spec.objective.latency",
         ("window must be at least 30s",)),
    Case("window in days", _set("objective.latency.window", "1d"), "spec.objective.latency.window",
         ('Invalid value: "1d"', "should match")),
    Case("negative duration", _set("coldStart", "-5s"), "spec.coldStart", ('Invalid value: "-5s"', "should match")),
    Case("attainment of 101%", _set("objective.latency.attainment", "101%"), "spec.objective.latency.attainment",
         ('Invalid value: "101%"', "should match")),
    Case("attainment without a percent sign", _set("objective.latency.attainment", "0.99"),
         "spec.objective.latency.attainment", ('Invalid value: "0.99"', "should match")),
    Case("throughput without its latency bound",
         _both(_drop("objective.latency"), _set("objective.type", "Throughput"), _set("objective.throughput", {"tokensPerSecond": 100})),
         "spec.objective.throughput.latencyBound", ("Required value",)),
    Case("throughput bound with a short window",
         _both(_drop("objective.latency"), _set("objective.type", "Throughput"),
               _set("objective.throughput", {"latencyBound": {**LATENCY, "window": "5s"}})),
         "spec.objective.throughput.latencyBound", ("window must be at least 30s",)),
    Case("zero tokens per second",
         _both(_drop("objective.latency"), _set("objective.type", "Throughput"),
               _set("objective.throughput", {**THROUGHPUT, "tokensPerSecond": 0})),
         "spec.objective.throughput.tokensPerSecond", ("should be greater than or equal to 1",)),
    Case("huge tokens per second",
         _both(_drop("objective.latency"), _set("objective.type", "Throughput"),
               _set("objective.throughput", {**THROUGHPUT, "tokensPerSecond": 10**12})),
         "spec.objective.throughput.tokensPerSecond", ("should be less than or equal to 100000000",)),
    # --- the replica lever --------------------------------------------------------------------
    Case("missing replicas", _drop("replicas"), "spec.replicas", ("Required value",)),
    Case("replicas without max", _drop("replicas.max"), "spec.replicas.max", ("Required value",)),
    Case("min above max", _set("replicas", {"min": 5, "max": 2}), "spec.replicas",
         ("replicas.min must be less than or equal to replicas.max",)),
    Case("negative min", _set("replicas.min", -1), "spec.replicas.min", ("should be greater than or equal to 0",)),
    Case("zero max", _set("replicas.max", 0), "spec.replicas.max", ("should be greater than or equal to 1",)),
    Case("huge max", _set("replicas.max", 100_000), "spec.replicas.max", ("should be less than or equal to 1000",)),
    Case("max as a word", _set("replicas.max", "four"), "spec.replicas.max", ('Invalid value: "string"', "must be of type integer")),
    Case("fractional max", _set("replicas.max", 2.5), "spec.replicas.max", ("must be of type integer",)),
    Case("replicas as a list", _set("replicas", [1, 4]), "spec.replicas", ("must be of type object",)),
    # --- the workload -------------------------------------------------------------------------
    Case("neither model nor scaleTargetRef", _drop("model"), "spec",
         ("set exactly one of spec.model (the operator runs the vLLM workload) or spec.scaleTargetRef",)),
    Case("model and scaleTargetRef together", _set("scaleTargetRef", {"name": "vllm"}), "spec",
         ("set exactly one of spec.model",)),
    Case("engine with an attached Deployment",
         _both(_drop("model"), _set("scaleTargetRef", {"name": "vllm"}), _set("engine", {"gpus": 1})), "spec",
         ("spec.engine applies only with spec.model",)),
    Case("empty model name", _set("model", ""), "spec.model", ("should be at least 1 chars long",)),
    Case("model name too long", _set("model", "m" * 300), "spec.model", ("Too long", "may not be more than 253 bytes")),
    Case("attach to a StatefulSet", _both(_drop("model"), _set("scaleTargetRef", {"name": "db", "kind": "StatefulSet"})),
         "spec.scaleTargetRef.kind", ('Unsupported value: "StatefulSet"', '"Deployment"')),
    Case("scaleTargetRef without a name", _both(_drop("model"), _set("scaleTargetRef", {"kind": "Deployment"})),
         "spec.scaleTargetRef.name", ("Required value",)),
    Case("--max-num-seqs=N in engine.args", _set("engine.args", ["--max-num-seqs=8"]), "spec.engine.args",
         ("--max-num-seqs is set by the operator", "spec.batching")),
    Case("--max-num-seqs as two engine args", _set("engine.args", ["--dtype", "bfloat16", "--max-num-seqs", "8"]),
         "spec.engine.args", ("--max-num-seqs is set by the operator",)),
    Case("too many engine args", _set("engine.args", [f"--flag-{i}" for i in range(65)]), "spec.engine.args",
         ("Too many: 65", "must have at most 64 items")),
    Case("engine args as one string", _set("engine.args", "--dtype bfloat16"), "spec.engine.args",
         ("must be of type array",)),
    Case("negative GPUs", _set("engine.gpus", -1), "spec.engine.gpus", ("should be greater than or equal to 0",)),
    Case("more GPUs than a node has", _set("engine.gpus", 17), "spec.engine.gpus", ("should be less than or equal to 16",)),
    Case("port out of range", _set("engine.port", 70000), "spec.engine.port", ("should be less than or equal to 65535",)),
    Case("unknown GPU profile", _set("engine.gpuProfile", "T4"), "spec.engine.gpuProfile",
         ('Unsupported value: "T4"', '"H100", "A100"')),
    Case("environment variable without a name", _set("engine.env", [{"value": "1"}]), "spec.engine.env[0].name",
         ("Required value",)),
    # --- the batch lever ----------------------------------------------------------------------
    Case("batching bounds unordered", _set("batching", {"minMaxNumSeqs": 300}), "spec.batching",
         ("batching bounds must be ordered: minMaxNumSeqs <= initialMaxNumSeqs <= maxMaxNumSeqs",)),
    Case("initial batch above the maximum", _set("batching", {"initialMaxNumSeqs": 512, "maxMaxNumSeqs": 256}),
         "spec.batching", ("batching bounds must be ordered",)),
    Case("huge batch", _set("batching", {"maxMaxNumSeqs": 100_000}), "spec.batching.maxMaxNumSeqs",
         ("should be less than or equal to 4096",)),
    Case("zero batch", _set("batching", {"minMaxNumSeqs": 0}), "spec.batching.minMaxNumSeqs",
         ("should be greater than or equal to 1",)),
    Case("batching mode On", _set("batching", {"mode": "On"}), "spec.batching.mode",
         ('Unsupported value: "On"', '"Auto", "Off"')),
    Case("unquoted Off read as false", _set("batching", {"mode": False}), "spec.batching.mode",
         ("must be of type string",)),
    Case("cooldown that is not a duration", _set("batching", {"cooldown": "soon"}), "spec.batching.cooldown",
         ('Invalid value: "soon"', "should match")),
    # --- behaviour and mode ---------------------------------------------------------------------
    Case("unknown mode", _set("mode", "DryRun"), "spec.mode", ('Unsupported value: "DryRun"', '"Enforce", "Advisory"')),
    Case("zero replicas per period", _set("behavior", {"scaleUp": {"maxReplicasPerPeriod": 0}}),
         "spec.behavior.scaleUp.maxReplicasPerPeriod", ("should be greater than or equal to 1",)),
    Case("tolerance without a percent sign", _set("behavior", {"tolerance": "10"}), "spec.behavior.tolerance",
         ('Invalid value: "10"', "should match")),
    Case("stabilization window as seconds", _set("behavior", {"scaleDown": {"stabilizationWindow": 300}}),
         "spec.behavior.scaleDown.stabilizationWindow", ("must be of type string",)),
    Case("spec as a string", lambda _spec: "chat please", "spec", ("must be of type object",)),
]  # fmt: skip


def _name(case: Case) -> str:
    return "bad-" + "".join(c if c.isalnum() else "-" for c in case.id.lower()).strip("-")[:50]


def test_there_are_at_least_thirty_distinct_invalid_inputs() -> None:
    assert len(CASES) >= 30
    assert len({_name(c) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_an_invalid_service_is_rejected_with_its_field_and_words(
    custom: client.CustomObjectsApi, case: Case
) -> None:
    name = _name(case)
    body = manifest(name, case.breaks(valid_spec()))
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)

    assert refused.value.status == 422, refused.value.body
    status = json.loads(refused.value.body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Invalid", 422)
    causes = status["details"]["causes"]
    named = [c for c in causes if c.get("field") == case.field]
    assert named, f"no cause names {case.field}: {causes}"
    for words in case.words:
        assert any(words in c["message"] for c in named), f"{words!r} not in {named}"
    # What kubectl prints: the object, then each field and what is wrong with it.
    assert status["message"].startswith(f'InferenceService.sloscale.dev "{name}" is invalid: ')
    assert case.field in status["message"]

    # Nothing was stored: the name is free and the list does not show it.
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    assert missing.value.status == 404
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
    assert name not in [item["metadata"]["name"] for item in listed["items"]]


def test_the_valid_spec_the_cases_break_is_accepted(custom: client.CustomObjectsApi) -> None:
    """Guards the cases above: each rejection comes from its one change, not from the base."""
    made = custom.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, manifest("the-valid-one", valid_spec())
    )
    try:
        assert made["metadata"]["uid"]
        assert made["spec"]["objective"]["latency"]["window"] == "5m"  # defaulted
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "the-valid-one")
