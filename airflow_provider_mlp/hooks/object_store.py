"""Object storage (any fsspec URL) for environments and task artifacts."""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_mlp.config import settings
from airflow_provider_mlp.errors import ConfigurationError
from airflow_provider_mlp.stores import open_filesystem, storage_options_for

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


class ObjectStoreHook(BaseHook):
    """
    A root URL in object storage plus the fsspec options to reach it.

    Precedence: the ``url``/``storage_options`` arguments, then the connection's fields, then
    the embedded default (``[mlp] artifact_store`` / ``MLP_ARTIFACT_STORE``, a ``file://`` URL
    under ``MLP_HOME``). For S3-compatible stores the connection's login and password become
    the access key and secret, and ``endpoint_url`` points at a non-AWS endpoint.

    :param mlp_object_store_conn_id: connection of type ``mlp_object_store``; ``None`` uses
        the embedded default.
    :param url: root URL, e.g. ``s3://bucket/mlp``; beats the connection's ``url`` field.
    :param storage_options: fsspec options merged over the connection's.
    """

    conn_name_attr = "mlp_object_store_conn_id"
    default_conn_name = "mlp_object_store_default"
    conn_type = "mlp_object_store"
    hook_name = "MLP Object Store"

    def __init__(
        self,
        mlp_object_store_conn_id: str | None = None,
        *,
        url: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.mlp_object_store_conn_id = mlp_object_store_conn_id
        self._url = url
        self._storage_options = storage_options or {}

    @cached_property
    def connection_fields(self) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
        """The connection's url, storage options and S3 credentials (key, secret, endpoint_url)."""
        if self.mlp_object_store_conn_id is None:
            return None, {}, {}
        conn = self.get_connection(self.mlp_object_store_conn_id)
        extra = conn.extra_dejson or {}
        options = extra.get("storage_options") or {}
        if isinstance(options, str):
            try:
                options = json.loads(options) if options.strip() else {}
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"connection {self.mlp_object_store_conn_id!r}: field 'storage_options' must be a JSON "
                    f"object, got {options!r} ({exc})"
                ) from exc
        if not isinstance(options, dict):
            raise ConfigurationError(
                f"connection {self.mlp_object_store_conn_id!r}: field 'storage_options' must be a JSON object, "
                f"got {type(options).__name__}"
            )
        credentials = {
            "key": conn.login or None,
            "secret": conn.password or None,
            "endpoint_url": extra.get("endpoint_url") or None,
        }
        return extra.get("url") or None, dict(options), {k: v for k, v in credentials.items() if v}

    @property
    def url(self) -> str:
        """The root URL this hook stores under."""
        conn_url, _, _ = self.connection_fields
        return (self._url or conn_url or settings().artifact_store).rstrip("/")

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options for :attr:`url`: see :meth:`storage_options_for`."""
        return self.storage_options_for(self.url)

    def storage_options_for(self, url: str) -> dict[str, Any]:
        """fsspec options for ``url``: the connection's (with its key, secret and endpoint for S3),
        overridden by the hook's ``storage_options`` argument."""
        _, conn_options, credentials = self.connection_fields
        return storage_options_for(url, {**conn_options, **self._storage_options}, **credentials)

    @cached_property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem of :attr:`url`."""
        fs, _ = open_filesystem(self.url, self.storage_options)
        return fs

    def get_conn(self) -> AbstractFileSystem:
        return self.fs

    def test_connection(self) -> tuple[bool, str]:
        try:
            exists = self.fs.exists(self.url)
        except Exception as exc:
            return False, f"{self.url}: {exc}"
        return True, f"{self.url} {'exists' if exists else 'is reachable (not created yet)'}"
