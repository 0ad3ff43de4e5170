"""The operator under load, small: PromQL queries per tick do not grow with the services.

Runs `benchmarks/operator_load.py` (the real operator process, the API emulator, a real
Prometheus scraping one exporter of every service's vLLM series) at two sizes and checks the one
property the benchmark's numbers rest on: each tick sends the same fixed set of queries — one per
metric family, for all services together — whatever their number; and the operator reads its
Deployments from its watch-fed caches, which hold the services' Deployments and nothing more. Tick duration, CPU and memory
are printed, not asserted (the full-size figures are in docs/faults.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from faults_support import ROOT

from sloscale import promql


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "operator_load", ROOT / "benchmarks" / "operator_load.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_queries_per_tick_do_not_depend_on_the_number_of_services(tmp_path: Path) -> None:
    bench = _benchmark()
    steps = bench.run(
        [1, 6],
        tick="1s",
        ticks=2,
        scrape_interval_s=1.0,
        namespaces=2,
        workdir=tmp_path,
        progress=lambda _: None,
    )
    per_tick = len(promql.QuerySet().all(["ns"]))  # pods, last_seen and one per family
    for step in steps:
        print(
            f"\nN={step.services}: {step.queries_per_tick:g} queries/tick, tick {step.tick_mean_s:.2f}s, "
            f"{step.cpu_cores:.2f} cores, {step.peak_rss_mib:.0f} MiB peak"
        )
        assert step.ticks >= 2
        assert step.queries_per_tick == per_tick, (
            f"N={step.services}: {step.queries_per_tick} queries per tick"
        )
    assert [s.services for s in steps] == [1, 6]
    assert steps[1].series == 6 * steps[0].series  # every service's series really were there
    # The ticks read the watch-fed caches, which hold the services' Deployments and nothing else.
    for step in steps:
        assert step.caches_fresh
        assert step.cached == {"deployments": step.services, "pods": 0}
