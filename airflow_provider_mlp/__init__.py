"""airflow-provider-mlp: ML-platform integrations for Apache Airflow.

This package's root never imports Airflow: its runtime-side subpackages (``fastdata``,
``runtime``, ``kernels``, ``config``) run inside pods and serving processes that have no
Airflow installed. The Airflow-facing parts live in ``hooks``, ``operators``, ``sensors``,
``triggers`` and ``decorators``.
"""

from __future__ import annotations

__version__ = "0.1.0"
