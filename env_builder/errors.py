"""Errors raised by env_builder; each names the package, alias, file or environment at fault."""

from __future__ import annotations

from airflow_provider_mlp.errors import MlpError


class EnvBuilderError(MlpError):
    """Base class of every env_builder error."""


class SpecError(EnvBuilderError, ValueError):
    """An environment spec (or the file it was read from) is malformed or asks for something unsupported."""


class ResolutionError(EnvBuilderError):
    """The resolver could not produce a lock: unknown package or version, or an unsatisfiable spec."""


class BuildError(EnvBuilderError):
    """Building or packing an environment failed (editable or unpackable installs included)."""


class StoreError(EnvBuilderError):
    """The environment store is unreachable, or an environment or manifest is missing from it."""


class EnvNotFoundError(StoreError, LookupError):
    """No environment with that id is in the store."""


class AmbiguousEnvError(EnvBuilderError, LookupError):
    """An id prefix names more than one environment (or also an alias of another one)."""


class AliasError(EnvBuilderError, LookupError):
    """An alias is malformed, unknown, or an immutable tag would be re-pointed."""


class IntegrityError(EnvBuilderError):
    """An archive's sha256 or size does not match its manifest."""


class UnsafeArchiveError(EnvBuilderError):
    """An archive member would escape the target directory or is of a forbidden kind."""


class BaseInterpreterError(EnvBuilderError, LookupError):
    """No base interpreter matching an environment's Python version is available."""
