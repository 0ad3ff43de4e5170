"""Watch: resume from a resourceVersion without loss or duplication, 410 Gone, bookmarks, selectors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from apiserver_support import (
    GROUP,
    PLURAL,
    VERSION,
    Cluster,
    isvc,
    start_cluster,
    watch_events,
)
from kubernetes import watch

CM = "/api/v1/namespaces/{ns}/configmaps"


def test_watch_from_a_list_resource_version_sees_each_later_change_once(cluster: Cluster, ns: str) -> None:
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "before"}})
    listed = cluster.core.list_namespaced_config_map(ns)
    rv = listed.metadata.resource_version
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "after"}})
    cluster.core.patch_namespaced_config_map("after", ns, {"data": {"k": "v"}})
    cluster.core.delete_namespaced_config_map("before", ns)
    events = watch_events(cluster, CM.format(ns=ns) + f"?watch=true&resourceVersion={rv}&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and min(versions) > int(rv)
    assert all(e["object"]["kind"] == "ConfigMap" and e["object"]["apiVersion"] == "v1" for e in events)


def test_writes_racing_a_watch_start_are_neither_lost_nor_repeated(cluster: Cluster, ns: str) -> None:
    rv = cluster.core.list_namespaced_config_map(ns).metadata.resource_version
    stop = threading.Event()

    def writer() -> None:
        for i in range(40):
            cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        events = watch_events(cluster, CM.format(ns=ns) + f"?watch=true&resourceVersion={rv}&timeoutSeconds=5", max_events=40)
    finally:
        thread.join(30)
    assert stop.is_set()
    assert sorted(e["object"]["metadata"]["name"] for e in events) == sorted(f"c{i}" for i in range(40))
    assert {e["type"] for e in events} == {"ADDED"}


def test_watch_without_resource_version_starts_with_what_exists(cluster: Cluster, ns: str) -> None:
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "old"}})
    events = watch_events(cluster, CM.format(ns=ns) + "?watch=1&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "old")]


def test_bookmarks_carry_the_current_resource_version_and_the_watch_times_out(cluster: Cluster, ns: str) -> None:
    rv = cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}}).metadata.resource_version
    events = watch_events(cluster, CM.format(ns=ns) + f"?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1")
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    last = events[-1]["object"]
    assert last["kind"] == "ConfigMap" and int(last["metadata"]["resourceVersion"]) >= int(rv)
    no_bookmarks = watch_events(cluster, CM.format(ns=ns) + f"?watch=true&resourceVersion={rv}&timeoutSeconds=1")
    assert no_bookmarks == []


def test_send_initial_events_ends_with_an_annotated_bookmark(cluster: Cluster, ns: str) -> None:
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    events = watch_events(cluster, CM.format(ns=ns) + "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1")
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_filtered_watches_see_objects_enter_and_leave_the_selection(cluster: Cluster, ns: str) -> None:
    rv = cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "c", "labels": {"app": "a"}}}).metadata.resource_version
    cluster.core.patch_namespaced_config_map("c", ns, {"metadata": {"labels": {"app": "b"}}})
    cluster.core.patch_namespaced_config_map("c", ns, {"data": {"x": "1"}})
    cluster.core.patch_namespaced_config_map("c", ns, {"metadata": {"labels": {"app": "a"}}})
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "other", "labels": {"app": "b"}}})
    events = watch_events(cluster, CM.format(ns=ns) + f"?watch=true&resourceVersion={rv}&labelSelector=app%3Da&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["labels"]["app"]) for e in events] == [("DELETED", "b"), ("ADDED", "a")]


def test_watch_on_one_name_through_a_field_selector(cluster: Cluster, ns: str) -> None:
    rv = cluster.core.list_namespaced_config_map(ns).metadata.resource_version
    for name in ("a", "b"):
        cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
    events = watch_events(cluster, CM.format(ns=ns) + f"?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Db&timeoutSeconds=1")
    assert [e["object"]["metadata"]["name"] for e in events] == ["b"]


def test_the_official_client_streams_custom_resources_from_a_resource_version(cluster: Cluster, ns: str) -> None:
    listed = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, isvc("a"))
    cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "a", {"status": {"observedGeneration": 1}})
    stream = watch.Watch().stream(cluster.custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL,
                                  resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=1)
    seen = [(e["type"], e["object"].get("status")) for e in stream]
    assert seen == [("ADDED", None), ("MODIFIED", {"observedGeneration": 1})]


@pytest.fixture(scope="module")
def short_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(Path(tmp_path_factory.mktemp("short")), history=5)


def test_a_resource_version_older_than_the_history_is_410_gone(short_history: Cluster) -> None:
    cluster = short_history
    ns = cluster.namespace()
    old_rv = cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}}).metadata.resource_version
    for i in range(8):
        cluster.core.patch_namespaced_config_map("c", ns, {"data": {"i": str(i)}})
    events = watch_events(cluster, CM.format(ns=ns) + f"?watch=true&resourceVersion={old_rv}&timeoutSeconds=1")
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert "too old resource version" in status["message"]
    recent = cluster.core.list_namespaced_config_map(ns).metadata.resource_version
    assert watch_events(cluster, CM.format(ns=ns) + f"?watch=true&resourceVersion={recent}&timeoutSeconds=1") == []
    with pytest.raises(Exception) as err:  # the official client turns the ERROR event into ApiException(410)
        list(watch.Watch().stream(cluster.core.list_namespaced_config_map, ns, resource_version=old_rv, timeout_seconds=1))
    assert "410" in str(err.value) or "Expired" in str(err.value)


def test_a_bad_resource_version_is_400(cluster: Cluster, ns: str) -> None:
    resp = requests.get(cluster.url + CM.format(ns=ns) + "?watch=true&resourceVersion=abc", timeout=5)
    assert resp.status_code == 400
