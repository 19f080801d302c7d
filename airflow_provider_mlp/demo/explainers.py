"""Use case 2, model explainers: generated content features, the DAGs' names, and what a run left behind.

``content_features`` makes a deterministic table of titles' content features and a label
``is_hit``: whether the title became a hit. The label depends strongly on ``trailer_completion``,
less on ``cast_popularity`` and ``franchise``, a little on ``runtime_minutes``; the other columns
are noise. An explainer that works therefore ranks ``trailer_completion`` first and the noise
columns last, whatever model it explains.

Two training DAGs (``mlp_train_gradient_boosting``, ``mlp_train_logistic_regression``) fit a model
each in their own environment and publish it as ``mlp://model/<name>``; the explainer DAG
(``mlp_model_explainer``) runs on either event. ``prepare`` writes the table; ``summary`` reads
back the models, their lineage and the environments' sizes for a report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_provider_mlp.fastdata.table import Table

FEATURES_TABLE = "content.title_features"
FEATURES = (
    "trailer_completion",
    "cast_popularity",
    "franchise",
    "runtime_minutes",
    "release_month",
    "synopsis_words",
    "poster_brightness",
)
INFORMATIVE_FEATURE = "trailer_completion"
NOISE_FEATURES = ("release_month", "synopsis_words", "poster_brightness")
LABEL = "is_hit"
DEFAULT_ROWS = 20_000
SEED = 216

# model type -> (training DAG id, published model name, the training environment's packages).
# The teams pin different scikit-learn releases: a pickled model loads only with the release it was
# fitted with, which is why an explainer's environment extends the model's own.
MODEL_TYPES: dict[str, dict[str, Any]] = {
    "gradient_boosting": {
        "dag_id": "mlp_train_gradient_boosting",
        "model_name": "content-gradient-boosting",
        "pip": ["scikit-learn==1.9.1", "pyarrow"],
    },
    "logistic_regression": {
        "dag_id": "mlp_train_logistic_regression",
        "model_name": "content-logistic-regression",
        "pip": ["scikit-learn==1.8.0", "pyarrow"],
    },
}
EXPLAINER_DAG_ID = "mlp_model_explainer"
# The example DAG file holding the training DAGs and the explainer.
DAGS_FILE = "mlp_model_explainers"
# What the explainer adds to the model's environment: eli5's permutation importances (its
# dependencies are small and pure Python); the surrogate tree is scikit-learn's own.
EXPLAINER_PIP = ("eli5==0.16.0",)
EXPLAINER_ALIAS = "mlp-model-explainers"


def explainer_model_name(model_name: str) -> str:
    """The published name of the explainer of model ``model_name``."""
    return f"{model_name}-explainer"


def content_features(rows: int = DEFAULT_ROWS, seed: int = SEED) -> pa.Table:
    """``rows`` titles: ``title_id``, the ``FEATURES`` and the label ``is_hit`` (the same for the same seed)."""
    import numpy as np
    import pyarrow as pa

    if rows < 100:
        raise ValueError(f"content_features needs at least 100 rows to train and explain on, got {rows}")
    rng = np.random.default_rng(seed)
    trailer = rng.beta(2.0, 2.0, rows)
    cast = rng.gamma(2.0, 1.5, rows)
    franchise = (rng.random(rows) < 0.25).astype(np.int64)
    runtime = np.clip(rng.normal(105.0, 20.0, rows), 60.0, 200.0).round(0)
    month = rng.integers(1, 13, rows)
    synopsis = rng.poisson(60, rows)
    brightness = rng.random(rows)
    logit = (
        7.0 * (trailer - 0.5)
        + 0.45 * (cast - 3.0)
        + 0.9 * franchise
        - 0.012 * (runtime - 105.0)
        - 0.4
        + rng.logistic(0.0, 0.35, rows)
    )
    return pa.table(
        {
            "title_id": pa.array(np.arange(rows, dtype=np.int64)),
            "trailer_completion": pa.array(trailer.round(4)),
            "cast_popularity": pa.array(cast.round(3)),
            "franchise": pa.array(franchise),
            "runtime_minutes": pa.array(runtime),
            "release_month": pa.array(month.astype(np.int64)),
            "synopsis_words": pa.array(synopsis.astype(np.int64)),
            "poster_brightness": pa.array(brightness.round(4)),
            LABEL: pa.array((logit > 0).astype(np.int64)),
        }
    )


def create_content_features(
    identifier: str = FEATURES_TABLE,
    rows: int = DEFAULT_ROWS,
    seed: int = SEED,
    *,
    row_group_rows: int | None = None,
    catalog: Any = None,
) -> Table:
    """Fill ``identifier`` with ``content_features(rows, seed)``; a second call adds nothing, other
    ``rows`` or ``seed`` replace what it held."""
    from pyiceberg.expressions import AlwaysTrue

    from airflow_provider_mlp.fastdata.table import Table

    data = content_features(rows, seed)
    table = Table.create(identifier, data.schema, catalog=catalog, exist_ok=True)
    run_id = f"content-features-{rows}-{seed}"
    staged = table.stage(data, shard_id=0, run_id=run_id, row_group_rows=row_group_rows)
    table.overwrite([staged], AlwaysTrue(), run_id=run_id, idempotency_key=run_id)
    return table.refresh()


def prepare(scale: float = 1.0, identifier: str = FEATURES_TABLE) -> dict[str, Any]:
    """Generate the features table for ``mlp demo`` (``DEFAULT_ROWS * scale`` titles).

    Returns the table, its rows and snapshot id, and the DAG runs to make in order: the two training
    DAGs, then the explainer (``airflow dags test`` does not follow asset events, so the explainer is
    given the models by its ``models`` param; a running scheduler starts it on each model's event).
    """
    if not scale > 0 or math.isinf(scale):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    rows = max(1_000, int(DEFAULT_ROWS * scale))
    table = create_content_features(identifier, rows)
    return {
        "table": table.identifier,
        "rows": rows,
        "snapshot_id": table.current_snapshot_id,
        "runs": demo_runs(table.identifier),
    }


def demo_runs(identifier: str = FEATURES_TABLE) -> list[dict[str, Any]]:
    """The DAG runs ``mlp demo`` makes, in order: the two training DAGs, then the explainer of both models."""
    models = [spec["model_name"] for spec in MODEL_TYPES.values()]
    return [
        *({"dag_id": spec["dag_id"], "conf": {"table": identifier}} for spec in MODEL_TYPES.values()),
        {"dag_id": EXPLAINER_DAG_ID, "conf": {"models": models}},
    ]


def _env_size(env_id: str, sizes: dict[str, int | None]) -> int | None:
    if env_id not in sizes:
        try:
            from env_builder.store import EnvStore

            store = EnvStore.open()
            sizes[env_id] = int(store.ref(env_id).size)
        except Exception:  # a model whose environment is in another store: report it without a size
            sizes[env_id] = None
    return sizes[env_id]


def summary(model_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The latest version of each use-case model in the BentoML model store (training models, then their
    explainers): tag, type, env id and packed env size, metrics, and what an explainer explains.

    Runs in the process that has the store (BENTOML_HOME); models not published yet are left out.
    """
    from airflow_provider_mlp.serving.models import ModelLoadError, find_model

    names = list(model_names or [])
    if not names:
        for spec in MODEL_TYPES.values():
            names += [spec["model_name"], explainer_model_name(spec["model_name"])]
    sizes: dict[str, int | None] = {}
    rows = []
    for name in names:
        try:
            stored = find_model(name)
        except ModelLoadError:
            continue
        env_id = stored.labels.get("env_id", "")
        rows.append(
            {
                "tag": stored.tag,
                "model_type": stored.labels.get("model_type", ""),
                "run_id": stored.labels.get("run_id", ""),
                "env_id": env_id,
                "env_bytes": _env_size(env_id, sizes) if env_id else None,
                "metrics": dict(stored.metadata.get("metrics") or {}),
                "explains": stored.labels.get("upstream_model", ""),
            }
        )
    return rows


def format_summary(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per model for a report: tag, env id (16 digits) and packed size, then the model's scores or,
    for an explainer, the model it explains, its three most important features and the surrogate's fidelity."""
    lines = []
    for row in rows:
        size = row.get("env_bytes")
        env = f"env {str(row['env_id'])[:16]} ({size / 1e6:.0f} MB packed)" if size else "env -"
        metrics = dict(row["metrics"])
        importances = {k.removeprefix("importance."): v for k, v in metrics.items() if k.startswith("importance.")}
        if row.get("explains"):
            top = sorted(importances.items(), key=lambda item: -item[1])[:3]
            shown = ", ".join(f"{name} {value:.3f}" for name, value in top)
            fidelity = metrics.get("surrogate_fidelity")
            tail = f"explains {row['explains']}; importances {shown}" + (
                f"; surrogate fidelity {fidelity:.3f}" if fidelity is not None else ""
            )
        else:
            tail = ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()) if not k.endswith("rows"))
        lines.append(f"{row['tag']}: {env}; {tail}")
    return lines
