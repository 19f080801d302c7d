"""Errors of the precompute layer; all derive from :class:`~airflow_provider_mlp.errors.MlpError`.

Serving code catches :class:`CacheVersionError` (a torn or missing version) to fall back to another
source instead of answering with part of one version; publishers see :class:`PublishError`.
"""

from __future__ import annotations

from airflow_provider_mlp.errors import MlpError


class CacheError(MlpError, RuntimeError):
    """Base class of the precompute layer's errors."""


class CacheInputError(CacheError, ValueError):
    """Bad input to a publish or a read: a missing column, an unsupported type, a null or malformed key."""


class DuplicateKeyError(CacheInputError):
    """The input holds the same key more than once; the publish is abandoned and the pointer stays."""

    def __init__(self, message: str, keys: list[object], count: int) -> None:
        super().__init__(message)
        self.keys = keys
        self.count = count


class PublishError(CacheError):
    """A publish failed before switching the pointer; readers keep the previous version."""

    def __init__(self, message: str, server: str | None = None) -> None:
        super().__init__(message)
        self.server = server


class PublishServerError(PublishError, ConnectionError):
    """A memcached server refused, dropped or failed writes of a publish; the message names it."""


class VerificationError(PublishError):
    """The written version did not read back as written (count or sampled values)."""


class CacheServerError(CacheError, ConnectionError):
    """A reader or admin command could not talk to a memcached server; the message names it."""

    def __init__(self, message: str, server: str | None = None) -> None:
        super().__init__(message)
        self.server = server


class CacheVersionError(CacheError, LookupError):
    """The version a reader needs is not (wholly) on the servers: serving should fall back."""


class MissingVersionError(CacheVersionError):
    """No current version, or its metadata or a server's part of it is gone (e.g. a server restarted empty)."""


class TornVersionError(CacheVersionError):
    """A value of the version is incomplete or corrupt (a chunk missing or not matching its checksum)."""
