"""The provider's one error root, and the errors that belong to no single capability.

Every error the provider raises on purpose derives from :class:`MlpError`, so a caller can catch
"anything this provider refused" in one place. Each subclass also keeps the builtin base it has
always had (``ValueError``, ``LookupError``, ...), so code that catches those keeps working.
Nothing here imports anything but the standard library.
"""

from __future__ import annotations


class MlpError(Exception):
    """Base class of every error airflow-provider-mlp raises on purpose."""


class ConfigurationError(MlpError, ValueError):
    """A setting, connection field or argument that says where things live is malformed."""


class MissingExtraError(MlpError, ImportError):
    """An optional part is used whose extra is not installed; the message names the install line."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{feature} needs the optional package {missing!r}, which is not installed: "
            f"pip install 'airflow-provider-mlp[{extra}]'"
        )
        self.feature = feature
        self.extra = extra
        self.missing = missing
