"""The BentoML service: ``bentoml serve airflow_provider_mlp.serving.service:MlpModelService``.

::

    MLP_SERVING_MODEL=ranker MLP_MEMCACHED_SERVERS=127.0.0.1:11211 \\
        bentoml serve airflow_provider_mlp.serving.service:MlpModelService --port 3000

BentoML runs the processes (workers, graceful shutdown, the model store, ``bentoml build`` and
``containerize``); the endpoints are answered by :class:`~airflow_provider_mlp.serving.dispatcher.Dispatcher`,
an ASGI app put in front of BentoML's own (see that module for why). ``MLP_SERVING_WORKERS`` sets
the worker processes (default 1). Configuration: :mod:`airflow_provider_mlp.serving.runtime`.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import bentoml
from _bentoml_sdk.service.factory import Service

from airflow_provider_mlp.serving.dispatcher import Dispatcher


@attrs.define
class DispatchedService(Service):
    """A BentoML service whose ASGI app is wrapped by the dispatcher (BentoML's app handles the rest)."""

    def to_asgi(self, is_main: bool = True) -> Any:
        return Dispatcher(Service.to_asgi(self, is_main))


@bentoml.service(
    service_class=DispatchedService,
    name="mlp-model",
    workers=int(os.environ.get("MLP_SERVING_WORKERS", "1")),
    traffic={"timeout": 60},
)
class MlpModelService:
    """Serves the model named by ``MLP_SERVING_MODEL`` (endpoints: the dispatcher's)."""
