# The runtime image every MlpPodOperator / @task.mlp pod runs. An organisation builds and publishes
# it once (see README, "The runtime image"); DAG authors never touch it: their packages come from
# portable environments rehydrated at task start, not from this image.
#
# The base's Python must match the env builder's base interpreter (the Python your environments
# are built for): pip environments are relinked to it when they are rehydrated.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG PROVIDER_VERSION=0.1.0

COPY docker/runtime-requirements.txt /tmp/runtime-requirements.txt
# The bootstrap needs the provider's runtime side, fsspec, zstandard and cloudpickle; Fast Data needs
# pyarrow and pyiceberg. No build tools.
RUN pip install --no-cache-dir --requirement /tmp/runtime-requirements.txt \
    && pip install --no-cache-dir --no-deps "airflow-provider-mlp==${PROVIDER_VERSION}" \
    && rm /tmp/runtime-requirements.txt \
    && groupadd --gid 1000 mlp \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/mlp mlp \
    && mkdir -p /mlp/env-cache \
    && chown 1000:1000 /mlp/env-cache

ENV MLP_ENV_CACHE_DIR=/mlp/env-cache \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

USER 1000:1000
WORKDIR /tmp

ENTRYPOINT ["python", "-m", "airflow_provider_mlp.compute"]
