"""The sandbox's Prometheus runner: its config, its failure messages, and that it always stops."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from sloscale.sandbox.prometheus import (
    PrometheusFailed,
    PrometheusNotInstalled,
    PrometheusServer,
    Target,
    find_binary,
)

pytestmark = pytest.mark.prometheus


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_missing_binary_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(PrometheusNotInstalled, match="apt-get install prometheus"):
        find_binary(str(tmp_path / "no-such-prometheus"))
    server = PrometheusServer(tmp_path, binary=str(tmp_path / "no-such-prometheus"))
    with pytest.raises(PrometheusNotInstalled, match="apt-get install prometheus"), server:
        pass
    assert not server.running


def test_a_binary_that_exits_at_once_is_reported_with_its_log(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path, binary="/bin/false")
    with pytest.raises(PrometheusFailed, match="exited with 1"):
        server.start()
    assert not server.running


def test_the_process_is_stopped_when_the_body_raises(
    prometheus_binary: str, tmp_path: Path
) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        PrometheusServer(tmp_path, binary=prometheus_binary) as server,
    ):
        pid = server.pid
        assert server.running
        raise RuntimeError("boom")
    assert not server.running
    assert pid is not None and process_gone(pid)


async def test_it_is_usable_from_async_code(prometheus_binary: str, tmp_path: Path) -> None:
    async with PrometheusServer(tmp_path, binary=prometheus_binary) as server:
        pid = server.pid
        assert server.running and server.active_targets() == []
    assert pid is not None and process_gone(pid)


def test_the_config_scrapes_the_targets_file_and_renames_vllm_names(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path, scrape_interval_s=0.5)
    job = server.config()["scrape_configs"][0]
    assert job["scrape_interval"] == "500ms" and job["scrape_timeout"] == "500ms"
    assert job["file_sd_configs"][0]["files"] == [str(server.targets_path)]
    assert job["metric_relabel_configs"] == [
        {
            "source_labels": ["__name__"],
            "regex": "vllm_(.+)",
            "target_label": "__name__",
            "replacement": "vllm:$1",
        }
    ]
    assert (
        "metric_relabel_configs"
        not in PrometheusServer(tmp_path, normalize_vllm_names=False).config()["scrape_configs"][0]
    )
    # What is written is valid YAML carrying the same settings.
    assert yaml.safe_load(yaml.safe_dump(server.config())) == server.config()


def test_targets_are_written_as_file_sd_groups_with_their_labels(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path)
    server.set_targets(
        [Target.pod("127.0.0.1:8000", namespace="ns", pod="p-0", service="chat"), Target("h:1")]
    )
    assert json.loads(server.targets_path.read_text()) == [
        {
            "targets": ["127.0.0.1:8000"],
            "labels": {"namespace": "ns", "pod": "p-0", "sloscale_service": "chat"},
        },
        {"targets": ["h:1"], "labels": {}},
    ]
    server.set_targets([])
    assert json.loads(server.targets_path.read_text()) == []
    assert not server.targets_path.with_suffix(".tmp").exists()


def test_waiting_for_targets_that_never_come_up_times_out_with_their_state(
    scratch_prometheus: PrometheusServer,
) -> None:
    scratch_prometheus.set_targets(
        [Target.pod("127.0.0.1:9", namespace="ns", pod="p", service="s")]
    )
    with pytest.raises(TimeoutError, match="0 of 1 targets up"):
        scratch_prometheus.wait_for_up(1, timeout=1.0)
