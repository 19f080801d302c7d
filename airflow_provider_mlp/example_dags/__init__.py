"""Example DAGs shipped with the provider; `mlp demo` runs them and `mlp example-dags` prints this folder.

Point ``AIRFLOW__CORE__DAGS_FOLDER`` here (or copy a file into your own DAGs folder) to try them.
"""

from __future__ import annotations
