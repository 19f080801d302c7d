from __future__ import annotations

from pathlib import Path

from airflow_provider_mlp.hooks.object_store import ObjectStoreHook


def test_defaults_to_the_embedded_artifact_store(mlp_home: Path) -> None:
    hook = ObjectStoreHook()
    assert hook.url == (mlp_home.resolve() / "artifacts").as_uri()
    hook.fs.makedirs(hook.url, exist_ok=True)
    assert hook.test_connection()[0]


def test_explicit_url_beats_the_default(mlp_home: Path, tmp_path: Path) -> None:
    hook = ObjectStoreHook(url=tmp_path.as_uri() + "/")
    assert hook.url == tmp_path.as_uri()
