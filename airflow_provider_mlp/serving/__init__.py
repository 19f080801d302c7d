"""BentoML services for models that DAGs publish. Imports without Airflow."""

from __future__ import annotations
