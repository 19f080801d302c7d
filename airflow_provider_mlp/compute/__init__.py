"""Compute: run a Python callable inside a portable environment, in a pod or a local process.

The same bootstrap (``python -m airflow_provider_mlp.compute run ...``) runs in both: it rehydrates
the environment, fetches the pickled work from the artifact store, runs it in the environment's
interpreter and writes the result (or the exception with its remote traceback) back. Runtime
side: no Airflow; ``airflow_provider_mlp.operators.compute`` and ``decorators.mlp`` wrap it.
"""

from __future__ import annotations
