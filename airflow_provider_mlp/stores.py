"""One way to reach object storage: a URL plus options becomes an fsspec filesystem.

The environment store, the artifact store (task payloads and results, reports) and
``ObjectStoreHook`` all open their storage here, so credentials, S3-compatible endpoints, the
listing cache and the "which extra do I need" error are decided in one place. Runtime side: no
Airflow; fsspec is imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.errors import ConfigurationError, MissingExtraError
from airflow_provider_mlp.extras import EXTRA_OF_MODULE

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

S3_PROTOCOLS = frozenset({"s3", "s3a"})
LOCAL_PROTOCOLS = frozenset({"file", "local"})
# fsspec protocol -> the package that implements it, for the missing-package message.
_BACKEND_OF_PROTOCOL = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs", "az": "adlfs"}


def protocol_of(url: str) -> str:
    import fsspec.utils

    return str(fsspec.utils.get_protocol(url))


def storage_options_for(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    secret: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """fsspec options for ``url``: ``storage_options`` with the S3 access key, secret and endpoint set
    where given. Options already in ``storage_options`` win (they are the more explicit)."""
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise ConfigurationError(
            f"storage options for {url!r} must be a mapping of fsspec options, got {type(storage_options).__name__}"
        )
    options = dict(storage_options or {})
    if key is None and secret is None and not endpoint_url:
        return options
    protocol = protocol_of(url)
    if protocol not in S3_PROTOCOLS:
        raise ConfigurationError(
            f"an access key, secret or endpoint URL applies to S3-compatible stores (s3://...) only, "
            f"not to {url!r}; put other credentials in its storage options"
        )
    if key is not None:
        options.setdefault("key", key)
    if secret is not None:
        options.setdefault("secret", secret)
    if endpoint_url:
        client_kwargs = dict(options.get("client_kwargs") or {})
        client_kwargs.setdefault("endpoint_url", endpoint_url)
        options["client_kwargs"] = client_kwargs
    return options


def open_filesystem(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    secret: str | None = None,
    endpoint_url: str | None = None,
    fresh_listings: bool = False,
) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of ``url`` and the root path inside it.

    ``fresh_listings=True`` turns off the listing cache of remote filesystems: s3fs and gcsfs answer
    ``exists``/``info`` from a listing they saw earlier for the life of the process, so a store whose
    correctness depends on seeing other hosts' writes (the environment store) must ask every time.
    """
    import fsspec.core

    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"a store URL must be a non-empty fsspec URL (e.g. s3://bucket/prefix), got {url!r}")
    options = storage_options_for(url, storage_options, key=key, secret=secret, endpoint_url=endpoint_url)
    protocol = protocol_of(url)
    if fresh_listings and protocol not in LOCAL_PROTOCOLS:
        options.setdefault("use_listings_cache", False)
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError:
        backend = _BACKEND_OF_PROTOCOL.get(protocol, protocol)
        if backend in EXTRA_OF_MODULE:
            raise MissingExtraError(f"store {url!r}", EXTRA_OF_MODULE[backend], backend) from None
        raise ConfigurationError(
            f"store {url!r}: fsspec has no installed implementation of {protocol}:// (pip install {backend})"
        ) from None
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot open store {url!r} with options {sorted(options)}: {exc}") from None
    return fs, str(root)


def local_path_of(url: str) -> str | None:
    """The filesystem path of a ``file://`` URL or a plain path; None for any other store.

    Local stores are read and written with the standard library: a task's bootstrap then never
    imports fsspec (tens of milliseconds of every local task's start).
    """
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(url).path)
    if "://" not in url and "::" not in url:
        return url
    return None


def read_bytes(url: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The whole object at ``url`` (``FileNotFoundError`` when it is not there)."""
    path = local_path_of(url)
    if path is not None:
        with open(path, "rb") as fh:
            return fh.read()
    fs, path = open_filesystem(url, storage_options)
    return bytes(fs.cat(path))


def write_bytes(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write ``data`` at ``url`` whole: a local file appears complete (temporary name, then rename);
    an object store's single PUT is atomic already."""
    path = local_path_of(url)
    if path is not None:
        import os

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return
    fs, path = open_filesystem(url, storage_options)
    fs.pipe(path, data)
