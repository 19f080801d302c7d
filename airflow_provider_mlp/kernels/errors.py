"""The one exception type of the Arrow kernels, shared by the C extension and the references."""

from __future__ import annotations

from airflow_provider_mlp.errors import MlpError


class ArrowKernelError(MlpError, ValueError, TypeError):
    """A kernel refused its input: wrong argument type, unsupported Arrow type, bad lengths.

    It subclasses both ``TypeError`` (wrong kind of argument) and ``ValueError`` (right kind,
    wrong contents) so that callers can catch whichever fits. The message names the argument,
    the Arrow format string received and what was expected; for invalid Arrow data it carries
    nanoarrow's own error message.
    """
