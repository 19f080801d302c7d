"""The Kubernetes API test server's pure parts: selectors, the three patch formats, the kubelet's
``$(VAR)`` expansion and its mapping of mount paths under a container's private root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.k8s_api_server import (
    ApiError,
    Selector,
    json_patch,
    merge_patch,
    parse_label_selector,
    strategic_merge,
)
from tests.support.k8s_kubelet import expand, path_rewriter


def _pod(labels: dict[str, str], phase: str = "Running") -> dict[str, object]:
    return {"metadata": {"name": "p", "labels": labels}, "status": {"phase": phase}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=1,b!=2,!c", {"a": "1"}, True),
        ("a=1,b!=2,!c", {"a": "1", "b": "2"}, False),
        ("a==1", {"a": "1"}, True),
        ("a in (1, 2),b notin (3)", {"a": "2", "b": "4"}, True),
        ("a in (1,2)", {}, False),
        ("a", {"a": ""}, True),
        ("already_checked!=True,!airflow-worker", {"already_checked": "False"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert Selector(parse_label_selector(selector)).matches(_pod(labels)) is expected


def test_field_selectors_and_their_errors() -> None:
    assert Selector.parse({"fieldSelector": "status.phase!=Failed,metadata.name=p"}, "pods").matches(_pod({}))
    assert not Selector.parse({"fieldSelector": "status.phase=Pending"}, "pods").matches(_pod({}))
    with pytest.raises(ApiError, match="field label not supported: spec.image"):
        Selector.parse({"fieldSelector": "spec.image=x"}, "pods")


def test_strategic_merge_merges_named_lists_and_deletes_with_null() -> None:
    pod = {
        "metadata": {"labels": {"a": "1", "b": "2"}},
        "spec": {"containers": [{"name": "base", "image": "x", "env": [{"name": "A", "value": "1"}]}]},
    }
    patch = {
        "metadata": {"labels": {"b": None, "c": "3"}},
        "spec": {"containers": [{"name": "base", "env": [{"name": "B", "value": "2"}]}]},
    }
    merged = strategic_merge(pod, patch)
    assert merged["metadata"]["labels"] == {"a": "1", "c": "3"}
    assert merged["spec"]["containers"] == [
        {"name": "base", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    ]
    deleted = strategic_merge(merged, {"spec": {"containers": [{"name": "base", "$patch": "delete"}]}})
    assert deleted["spec"]["containers"] == []
    # A JSON merge patch replaces lists whole.
    assert merge_patch(pod, {"spec": {"containers": []}})["spec"]["containers"] == []


def test_json_patch_operations() -> None:
    doc = {"metadata": {"labels": {"a": "1"}}, "items": [1, 2]}
    patched = json_patch(
        doc,
        [
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "replace", "path": "/items/0", "value": 0},
            {"op": "add", "path": "/items/-", "value": 3},
            {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/moved"},
            {"op": "test", "path": "/items/2", "value": 3},
        ],
    )
    assert patched == {"metadata": {"labels": {"b/c": "2", "moved": "1"}}, "items": [0, 2, 3]}
    with pytest.raises(ApiError):
        json_patch(doc, [{"op": "remove", "path": "/metadata/missing"}])


def test_variable_expansion_follows_kubernetes_rules() -> None:
    env = {"A": "x"}
    assert expand("$(A)-$(B)-$$(A)", env) == "x-$(B)-$(A)"


def test_mount_paths_are_mapped_under_the_private_root(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    rewrite = path_rewriter(["/data", "/dev/termination-log"], root)
    assert rewrite("/data") == f"{root}/data"
    assert rewrite("--out=/data/x.parquet") == f"--out={root}/data/x.parquet"
    assert rewrite("file:///data/x") == f"file://{root}/data/x"
    assert rewrite("open('/data/x'); open('/dev/termination-log', 'w')") == (
        f"open('{root}/data/x'); open('{root}/dev/termination-log', 'w')"
    )
    assert rewrite("/database /srv/data /data2") == "/database /srv/data /data2"


def test_a_host_path_inside_a_mount_path_stays_the_hosts(tmp_path: Path) -> None:
    # A pod mounting an emptyDir at the top directory of the test's tmp_path (/tmp, usually) gets
    # handed paths of the test's own directories: those name the host's files.
    mount = "/" + tmp_path.parts[1]
    rewrite = path_rewriter([mount], tmp_path / "rootfs")
    assert rewrite(f"{tmp_path}/artifacts") == f"{tmp_path}/artifacts"
    assert rewrite(f"{mount}/surely-not-on-this-host-1d2c") == f"{tmp_path}/rootfs{mount}/surely-not-on-this-host-1d2c"
