"""Fixtures: an emulator per test module and a fresh namespace per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apiserver_support import Cluster, start_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("apiserver"))


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.namespace()
