"""Scraping, rules and the dashboard: checked by Prometheus' own promtool, not by eye.

- The PrometheusRule's groups pass `promtool check rules`, and `promtool test rules` replays
  series through them: each alert fires after its `for`, and not when its guard is false; the
  recording rules give the right per-service percentile and throughput for either spelling of
  vLLM's metric names.
- Every dashboard query, with Grafana's variables filled in, parses as PromQL (promtool).
- Every `sloscale_*` family the chart reads is one the operator exports (sloscale.telemetry), and
  renaming one in files/metrics.yaml renames it everywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, Render, find, one
from prometheus_client import CollectorRegistry

from sloscale.telemetry import Telemetry

FULL = {
    "prometheusRule__enabled": "true",
    "dashboard__enabled": "true",
    "metrics__serviceMonitor__enabled": "true",
    "metrics__podMonitor__enabled": "true",
}
LABELS = {"sloscale_service"}  # a label, not a metric family


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return path


def exported_families() -> set[str]:
    registry = CollectorRegistry()
    Telemetry(registry)
    return {metric.name if metric.type != "counter" else metric.name + "_total"
            for metric in registry.collect()}


def used_families(text: str) -> set[str]:
    names = set(re.findall(r"(?<![:\w])sloscale_[a-z_]+", text)) - LABELS
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def rule_groups(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"groups": one(docs, "PrometheusRule")["spec"]["groups"]}


def dashboard(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap")
    data: dict[str, Any] = json.loads(cm["data"]["sloscale.json"])
    return data


def test_service_monitor_scrapes_the_metrics_service_keeping_the_operator_labels(render: Render) -> None:
    docs = render(**FULL)
    monitor = one(docs, "ServiceMonitor")["spec"]
    service = find(docs, "Service", "sloscale-metrics")[0]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["namespaceSelector"] == {"matchNames": ["sloscale-system"]}
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    # The operator's `namespace`/`service` labels name the InferenceService, not the scrape target.
    assert endpoint["honorLabels"] is True


def test_pod_monitor_gives_vllm_series_the_labels_the_operator_groups_by(render: Render) -> None:
    monitor = one(render(**FULL, watch__namespaces="{inference,batch}"), "PodMonitor")["spec"]
    assert monitor["namespaceSelector"] == {"matchNames": ["inference", "batch"]}
    assert monitor["selector"] == {"matchExpressions": [{"key": "sloscale.dev/service", "operator": "Exists"}]}
    (endpoint,) = monitor["podMetricsEndpoints"]
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets == {
        "sloscale_service": ["__meta_kubernetes_pod_label_sloscale_dev_service"],
        "namespace": ["__meta_kubernetes_namespace"],
        "pod": ["__meta_kubernetes_pod_name"],
    }
    assert endpoint["metricRelabelings"] == [
        {"sourceLabels": ["__name__"], "regex": "vllm_(.+)", "targetLabel": "__name__", "replacement": "vllm:$1"}
    ]
    everywhere = one(render(**FULL), "PodMonitor")["spec"]["namespaceSelector"]
    assert everywhere == {"any": True}


def test_rules_pass_promtool_check(render: Render, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups(render(**FULL))))
    proc = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    body = ", ".join(f'{k}="{v}"' for k, v in {"namespace": "ml", "service": "chat", **labels}.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def _vllm(name: str, values: str, **labels: str) -> dict[str, str]:
    body = ", ".join(f'{k}="{v}"' for k, v in {"namespace": "ml", "sloscale_service": "chat", **labels}.items())
    return {"series": f'{{__name__="{name}", {body}}}', "values": values}


ALERT_TESTS: list[dict[str, Any]] = [
    {   # Missed for 12 minutes with metrics available: fires after its 10m `for`, not before.
        "interval": "1m",
        "input_series": [
            _series("sloscale_objective_met", "0x15"),
            _series("sloscale_objective_ratio", "1.5x15"),
            _series("sloscale_metrics_available", "1x15"),
            _series("sloscale_scaling_limited", "0x15"),
            _series("sloscale_replicas_current", "3x15"),
            _series("sloscale_infeasible", "0x15"),
            {"series": 'up{job="sloscale-metrics", namespace="sloscale-system"}', "values": "1x15"},
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "SloscaleObjectiveViolated", "exp_alerts": []},
            {"eval_time": "11m", "alertname": "SloscaleObjectiveViolated", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "namespace": "ml", "service": "chat"},
                "exp_annotations": {
                    "summary": "InferenceService ml/chat misses its objective.",
                    "description": "Observed/target is 1.50 (condition ObjectiveMet is False). "
                    "kubectl describe infsvc -n ml chat shows the last decision and why.",
                },
            }]},
            # Not limited, feasible, metrics present, operator scraped: nothing else fires.
            {"eval_time": "15m", "alertname": "SloscaleCapacityLimited", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "SloscaleMetricsMissing", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "SloscaleObjectiveInfeasible", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "SloscaleOperatorDown", "exp_alerts": []},
        ],
    },
    {   # Missed at the replica limit for 20 minutes: capacity alert after 15m, with the count.
        "interval": "1m",
        "input_series": [
            _series("sloscale_objective_met", "0x20"),
            _series("sloscale_objective_ratio", "2x20"),
            _series("sloscale_metrics_available", "1x20"),
            _series("sloscale_scaling_limited", "1x20"),
            _series("sloscale_replicas_current", "8x20"),
        ],
        "alert_rule_test": [
            {"eval_time": "14m", "alertname": "SloscaleCapacityLimited", "exp_alerts": []},
            {"eval_time": "16m", "alertname": "SloscaleCapacityLimited", "exp_alerts": [{
                "exp_labels": {"severity": "critical", "namespace": "ml", "service": "chat"},
                "exp_annotations": {
                    "summary": "InferenceService ml/chat misses its objective while held at a scaling limit (8 replicas).",
                    "description": "The condition ScalingLimited is True while ObjectiveMet is False; its "
                    "reason says which limit (AtMaxReplicas: raise spec.replicas.max, the GPU budget, "
                    "or relax the objective; RateLimited: loosen spec.behavior.scaleUp).",
                },
            }]},
        ],
    },
    {   # Limited while meeting the objective (held at replicas.min): no capacity alert.
        # Metrics missing: the objective alert stays quiet (the operator holds), metrics alert fires.
        "interval": "1m",
        "input_series": [
            _series("sloscale_objective_met", "1x20", service="idle"),
            _series("sloscale_scaling_limited", "1x20", service="idle"),
            _series("sloscale_replicas_current", "1x20", service="idle"),
            _series("sloscale_objective_met", "0x20", service="blind"),
            _series("sloscale_objective_ratio", "3x20", service="blind"),
            _series("sloscale_metrics_available", "0x20", service="blind"),
            _series("sloscale_infeasible", "0 0 0 1x17", service="blind"),
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "SloscaleCapacityLimited", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "SloscaleObjectiveViolated", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "SloscaleMetricsMissing", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "namespace": "ml", "service": "blind"},
                "exp_annotations": {
                    "summary": "sloscale cannot read the metrics of ml/blind; its replicas are held as they are.",
                    "description": "The condition MetricsAvailable is False. Check that Prometheus scrapes "
                    "the vLLM pods with the labels namespace and sloscale_service, and that the "
                    "operator can reach Prometheus.",
                },
            }]},
            # Infeasible since minute 3: fires after its 10m `for`.
            {"eval_time": "12m", "alertname": "SloscaleObjectiveInfeasible", "exp_alerts": []},
            {"eval_time": "14m", "alertname": "SloscaleObjectiveInfeasible", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "namespace": "ml", "service": "blind"},
                "exp_annotations": {
                    "summary": "The objective of ml/blind cannot be met within its bounds.",
                    "description": "The condition Infeasible is True; its message names the limit (batch "
                    "floor, replica ceiling, per-token latency). Change the objective or the bounds.",
                },
            }]},
            # The operator's target is down (no `up == 1` series) for over 5 minutes.
            {"eval_time": "6m", "alertname": "SloscaleOperatorDown", "exp_alerts": [{
                "exp_labels": {"severity": "critical"},
                "exp_annotations": {
                    "summary": "The sloscale operator in namespace sloscale-system is not being scraped; "
                    "no InferenceService is being scaled.",
                    "description": "Prometheus has no healthy target behind the metrics Service of the "
                    "operator. Check the operator pods (kubectl get pods -l "
                    "app.kubernetes.io/name=sloscale) and their logs.",
                },
            }]},
        ],
    },
]

# Pod a reports in the `vllm:` spelling with every request at or under 0.5 s; pod b in the
# `vllm_` spelling with every request between 0.5 and 1 s. Counted together, p99 is 0.99 s (in
# the (0.5, 1] bucket); ignoring either spelling would put it at 0.495 s or 0.995 s.
RECORDING_TEST: dict[str, Any] = {
    "interval": "1m",
    "input_series": [
        _vllm("vllm:time_to_first_token_seconds_bucket", "0+60x10", pod="a", le="0.5"),
        _vllm("vllm:time_to_first_token_seconds_bucket", "0+60x10", pod="a", le="1"),
        _vllm("vllm:time_to_first_token_seconds_bucket", "0+60x10", pod="a", le="+Inf"),
        _vllm("vllm_time_to_first_token_seconds_bucket", "0x10", pod="b", le="0.5"),
        _vllm("vllm_time_to_first_token_seconds_bucket", "0+60x10", pod="b", le="1"),
        _vllm("vllm_time_to_first_token_seconds_bucket", "0+60x10", pod="b", le="+Inf"),
        _vllm("vllm:generation_tokens_total", "0+600x10", pod="a"),
        _vllm("vllm_generation_tokens_total", "0+1200x10", pod="b"),
        _vllm("vllm:num_requests_waiting", "3x10", pod="a"),
        _vllm("vllm_num_requests_waiting", "4x10", pod="b"),
        _series("sloscale_objective_met", "1x29 0x30"),
    ],
    "promql_expr_test": [
        {"expr": 'namespace_sloscale_service:vllm_time_to_first_token_seconds:histogram_quantile_rate1m{quantile="0.99"}',
         "eval_time": "5m",
         "exp_samples": [{"labels": 'namespace_sloscale_service:vllm_time_to_first_token_seconds:histogram_quantile_rate1m{namespace="ml", sloscale_service="chat", quantile="0.99"}',
                          "value": 0.99}]},
        {"expr": 'namespace_sloscale_service:vllm_time_to_first_token_seconds:histogram_quantile_rate1m{quantile="0.5"}',
         "eval_time": "5m",
         "exp_samples": [{"labels": 'namespace_sloscale_service:vllm_time_to_first_token_seconds:histogram_quantile_rate1m{namespace="ml", sloscale_service="chat", quantile="0.5"}',
                          "value": 0.5}]},
        {"expr": "namespace_sloscale_service:vllm_generation_tokens:rate1m", "eval_time": "5m",
         "exp_samples": [{"labels": 'namespace_sloscale_service:vllm_generation_tokens:rate1m{namespace="ml", sloscale_service="chat"}',
                          "value": 30}]},
        {"expr": "namespace_sloscale_service:vllm_num_requests_waiting:sum", "eval_time": "5m",
         "exp_samples": [{"labels": 'namespace_sloscale_service:vllm_num_requests_waiting:sum{namespace="ml", sloscale_service="chat"}',
                          "value": 7}]},
        # Met for the first 30 of the 60 one-minute samples in the hour: 50% attainment.
        {"expr": "namespace_service:sloscale_objective_met:avg_over_time1h", "eval_time": "59m",
         "exp_samples": [{"labels": 'namespace_service:sloscale_objective_met:avg_over_time1h{namespace="ml", service="chat"}',
                          "value": 0.5}]},
    ],
}


def run_rule_tests(docs: list[dict[str, Any]], tests: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(docs)))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False
    ))
    return subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_alerts_fire_after_their_for_and_only_when_their_guards_hold(render: Render, tmp_path: Path) -> None:
    docs = render(namespace="sloscale-system", **FULL)
    proc = run_rule_tests(docs, ALERT_TESTS, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_recording_rules_give_per_service_percentiles_for_both_spellings(render: Render, tmp_path: Path) -> None:
    proc = run_rule_tests(render(**FULL), [RECORDING_TEST], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rule_tests_catch_a_wrong_expectation(render: Render, tmp_path: Path) -> None:
    """The promtool harness above fails on a wrong number (so its passes mean something)."""
    wrong = json.loads(json.dumps(RECORDING_TEST))
    wrong["promql_expr_test"][0]["exp_samples"][0]["value"] = 0.495
    proc = run_rule_tests(render(**FULL), [wrong], tmp_path)
    assert proc.returncode != 0


def test_alert_for_durations_and_switches_come_from_values(render: Render) -> None:
    docs = render(**FULL, prometheusRule__alerts__metricsMissing__for="2m",
                  prometheusRule__alerts__infeasible__enabled="false")
    alerts = {r["alert"]: r for g in rule_groups(docs)["groups"] for r in g["rules"] if "alert" in r}
    assert alerts["SloscaleMetricsMissing"]["for"] == "2m"
    assert "SloscaleObjectiveInfeasible" not in alerts
    assert set(alerts) == {"SloscaleObjectiveViolated", "SloscaleMetricsMissing",
                           "SloscaleCapacityLimited", "SloscaleOperatorDown"}


GRAFANA_VARIABLES = [("$__rate_interval", "1m"), ("$__range_s", "3600"), ("$__range", "1h"),
                     ("$quantile", "0.99"), ("$gpus_per_replica", "1"),
                     ("$namespace", ".*"), ("$service", ".*")]


def dashboard_queries(dash: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for grafana, value in GRAFANA_VARIABLES:
        exprs = [e.replace(grafana, value) for e in exprs]
    return exprs


def test_every_dashboard_query_parses(render: Render, tmp_path: Path) -> None:
    exprs = dashboard_queries(dashboard(render(**FULL)))
    assert len(exprs) >= 20
    assert not [e for e in exprs if "$" in e], "a Grafana variable was left unfilled"
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)
    ]}]}
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool(), "check", "rules", str(tmp_path / "queries.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_shows_what_an_sre_reads_per_service(render: Render) -> None:
    cm = one(render(**FULL), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = dashboard(render(**FULL))
    text = " ".join(dashboard_queries(dash))
    for needle in ("sloscale_objective_ratio", "sloscale_attainment_ratio",
                   "sloscale_error_budget_remaining_ratio", "sloscale_replicas_current",
                   "sloscale_replicas_desired", "sloscale_batch_max_num_seqs",
                   "sloscale_decisions_total", "vllm[:_]num_requests_waiting",
                   "vllm[:_]generation_tokens_total", "vllm[:_]time_to_first_token_seconds_bucket",
                   "vllm[:_]inter_token_latency_seconds_bucket", "* 1"):  # GPU-hours × GPUs/replica
        assert needle in text, needle
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "namespace", "service", "quantile", "gpus_per_replica"} <= variables
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_chart_reads_only_families_the_operator_exports(render: Render) -> None:
    docs = render(**FULL)
    text = json.dumps(dashboard(docs)) + yaml.safe_dump(rule_groups(docs))
    names = yaml.safe_load((CHART / "files" / "metrics.yaml").read_text())
    exported = exported_families()
    assert used_families(text) <= set(names.values()) <= exported, (
        f"read but not exported: {used_families(text) - exported}"
    )


def test_renaming_a_family_in_one_place_renames_it_everywhere(chart_copy: Path, render: Render) -> None:
    names_file = chart_copy / "files" / "metrics.yaml"
    names = yaml.safe_load(names_file.read_text())
    names["sloscale_tick_duration_seconds"] = "sloscale_loop_seconds"
    names["sloscale_objective_met"] = "sloscale_slo_met"
    names_file.write_text(yaml.safe_dump(names))
    docs = render(chart=chart_copy, **FULL)
    text = json.dumps(dashboard(docs)) + yaml.safe_dump(rule_groups(docs))
    assert "sloscale_loop_seconds_bucket" in text and "sloscale_slo_met" in text
    assert "sloscale_tick_duration_seconds" not in text
    assert not re.search(r"\bsloscale_objective_met\b", text)


@pytest.mark.parametrize("disabled", ["dashboard", "prometheusRule", "serviceMonitor", "podMonitor"])
def test_monitoring_objects_are_optional(render: Render, disabled: str) -> None:
    sets = dict(FULL)
    key = next(k for k in sets if disabled in k)
    sets[key] = "false"
    kinds = {d["kind"] for d in render(**sets)}
    kind = {"dashboard": "ConfigMap", "prometheusRule": "PrometheusRule",
            "serviceMonitor": "ServiceMonitor", "podMonitor": "PodMonitor"}[disabled]
    assert kind not in kinds
    assert len(find(render(**FULL), kind)) == 1
