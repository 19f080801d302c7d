"""Fixtures of the serving tests: a BentoML model store with a published model, real memcached, precomputed rows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pyarrow as pa
import pytest

import tests.support.serving_models as serving_models
from tests.support.memcached import MemcachedProcess, running_memcached

cloudpickle.register_pickle_by_value(serving_models)

# bentoml 1.4.40 builds pathspecs with pathspec's deprecated 'gitwildmatch' factory in several modules
# it imports lazily (models, cloud, analytics); the warning is bentoml's, not ours.
BENTOML_PATHSPEC_WARNING = "ignore:GitWildMatchPattern:DeprecationWarning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(BENTOML_PATHSPEC_WARNING))


TITLES = list(range(1, 201))


@pytest.fixture
def memcached() -> Iterator[MemcachedProcess]:
    with running_memcached(1) as servers:
        yield servers[0]


@pytest.fixture(scope="session")
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One BentoML home per session: BentoML resolves its model store once per process."""
    home = tmp_path_factory.mktemp("bentoml")
    saved = {k: os.environ.get(k) for k in ("BENTOML_HOME", "BENTOML_DO_NOT_TRACK")}
    os.environ.update({"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"})
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def save(model: object, name: str = "ranker", env_id: str = "env-abc123") -> str:
    from airflow_provider_mlp.serving.models import ModelRecord, save_model

    return save_model(
        model,
        ModelRecord(
            name=name,
            dag_id="train",
            run_id="manual__1",
            env_id=env_id,
            metrics={"auc": 0.9},
            inputs={"content.features": 7},
        ),
    )


def publish_rows(servers: str, namespace: str = "ranker") -> None:
    """Predictions (key title_id -> score) and aggregates (views, hours) for TITLES."""
    from airflow_provider_mlp.precompute import publish

    table = pa.table(
        {
            "title_id": TITLES,
            "score": [float(t) / 10 for t in TITLES],
            "views": [t * 100 for t in TITLES],
            "hours": [t * 1.5 for t in TITLES],
        }
    )
    publish(table, key="title_id", values=["score", "views", "hours"], namespace=namespace, servers=servers)


def publish_predictions(servers: str, namespace: str = "ranker") -> None:
    from airflow_provider_mlp.precompute import publish

    table = pa.table({"title_id": TITLES, "score": [float(t) / 10 for t in TITLES]})
    publish(table, key="title_id", values=["score"], namespace=namespace, servers=servers)


def publish_aggregates(servers: str, namespace: str = "ranker-aggregates") -> None:
    from airflow_provider_mlp.precompute import publish

    table = pa.table({"title_id": TITLES, "views": [t * 100 for t in TITLES], "hours": [t * 1.5 for t in TITLES]})
    publish(table, key="title_id", values=["views", "hours"], namespace=namespace, servers=servers)


def service_env(mlp_home: Path, memcached: MemcachedProcess, bentoml_home: Path, **extra: str) -> dict[str, str]:
    return {
        "MLP_HOME": str(mlp_home),
        "BENTOML_HOME": str(bentoml_home),
        "MLP_SERVING_MODEL": "ranker",
        "MLP_SERVING_PREDICT_NAMESPACE": "ranker",
        "MLP_SERVING_LOOKUP_NAMESPACE": "ranker-aggregates",
        "MLP_MEMCACHED_SERVERS": memcached.address,
        "MLP_SERVING_CACHE_RETRY": "0.2",
        **extra,
    }
