"""mlp:// asset URIs: one normal form per model and environment, clear errors otherwise."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from airflow_provider_mlp.assets import create_mlp_asset, env_asset_uri, model_asset_uri, sanitize_mlp_uri


def test_model_and_env_uris_normalize() -> None:
    assert model_asset_uri("ranker") == "mlp://model/ranker"
    assert env_asset_uri("ranking", "model-a", "train") == "mlp://env/ranking/model-a/train"
    assert sanitize_mlp_uri(urlsplit("mlp://env/ranking//model-a/train/")).geturl() == "mlp://env/ranking/model-a/train"
    assert create_mlp_asset(kind="model", name="ranker").uri == "mlp://model/ranker"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mlp://model/a/b", "must be mlp://model/<name>"),
        ("mlp://env/team/name", "must be mlp://env/<team>/<project>/<name>"),
        ("mlp://table/x", "names kind 'table'"),
        ("mlp://model/bad name", "invalid model name"),
        ("mlp://model/x?y=1", "query or fragment"),
    ],
)
def test_bad_mlp_uris_name_the_problem(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sanitize_mlp_uri(urlsplit(uri))
