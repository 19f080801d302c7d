"""One way to reach object storage: URL + options (+ S3 credentials) -> an fsspec filesystem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.errors import ConfigurationError, MissingExtraError, MlpError
from airflow_provider_mlp.stores import open_filesystem, storage_options_for


def test_a_local_url_opens_its_directory(tmp_path: Path) -> None:
    fs, root = open_filesystem(tmp_path.as_uri())
    fs.pipe(f"{root}/a.txt", b"x")
    assert (tmp_path / "a.txt").read_bytes() == b"x"


def test_s3_credentials_and_endpoint_become_s3fs_options_without_overriding_explicit_ones() -> None:
    options = storage_options_for(
        "s3://bucket/prefix",
        {"secret": "explicit", "client_kwargs": {"region_name": "eu-west-1"}},
        key="AK",
        secret="from-connection",
        endpoint_url="http://127.0.0.1:9000",
    )
    assert options == {
        "key": "AK",
        "secret": "explicit",
        "client_kwargs": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9000"},
    }


def test_credentials_for_a_store_that_is_not_s3_are_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"S3-compatible stores .* not to 'file:///data'"):
        storage_options_for("file:///data", key="AK")


def test_fresh_listings_turn_off_the_listing_cache_of_remote_stores_only(tmp_path: Path) -> None:
    fs, _ = open_filesystem("memory://fresh", fresh_listings=True)
    assert fs.storage_options.get("use_listings_cache") is False
    local, _ = open_filesystem(tmp_path.as_uri(), fresh_listings=True)
    assert "use_listings_cache" not in local.storage_options


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_an_empty_url_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="non-empty fsspec URL"):
        open_filesystem(bad)


def test_storage_options_that_are_not_a_mapping_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        open_filesystem("memory://x", "key=value")  # type: ignore[arg-type]


def test_a_missing_s3fs_names_the_s3_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # fsspec caches the classes it imported once; forget s3fs, and block it, as a machine without it.
    for protocol in ("s3", "s3a"):
        monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, protocol, raising=False)
    for name in [m for m in sys.modules if m.startswith("s3fs.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'airflow-provider-mlp\[s3\]'") as raised:
        open_filesystem("s3://bucket/x")
    assert isinstance(raised.value, MlpError) and isinstance(raised.value, ImportError)
