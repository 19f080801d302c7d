"""``python -m airflow_provider_mlp.compute run ...``: the bootstrap of a pod or local process."""

from __future__ import annotations

from airflow_provider_mlp.compute.bootstrap import main

if __name__ == "__main__":
    raise SystemExit(main())
