# The model-serving image: `bentoml serve` of airflow_provider_mlp.serving.service:MlpModelService.
# Models come from the BentoML model store under $BENTOML_HOME (a volume, or `bentoml models pull`
# in an init container); MLP_SERVING_MODEL names the one to serve (see docker/k8s/serving.yaml).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG PROVIDER_VERSION=0.1.0

COPY docker/serving-requirements.txt /tmp/serving-requirements.txt
RUN pip install --no-cache-dir --requirement /tmp/serving-requirements.txt \
    && pip install --no-cache-dir --no-deps "airflow-provider-mlp==${PROVIDER_VERSION}" \
    && rm /tmp/serving-requirements.txt \
    && groupadd --gid 1000 mlp \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/mlp mlp \
    && mkdir -p /mlp/bentoml /mlp/home \
    && chown -R 1000:1000 /mlp

ENV BENTOML_HOME=/mlp/bentoml \
    MLP_HOME=/mlp/home \
    BENTOML_DO_NOT_TRACK=true \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

USER 1000:1000
WORKDIR /tmp
EXPOSE 3000

ENTRYPOINT ["bentoml", "serve", "airflow_provider_mlp.serving.service:MlpModelService", "--host", "0.0.0.0", "--port", "3000"]
