"""Use case 5, media features on demand: the metadata table and the feature extractor the service runs.

``mlp_media_features`` writes the generated media metadata (duration, shot lengths, hue histogram,
segment loudness) to ``media.metadata``, checks the extractor on a sample, and publishes it to the
BentoML model store as ``media-features`` (lineage: this run and the metadata snapshot it reads).
A service started with ``MLP_SERVING_MODEL=media-features`` then answers feature requests
asynchronously::

    POST /v1/jobs {"features": {"media_id": "m000042"}}   -> 202 queued (a miss), or 200 with the
                                                             features at once (a hit, from memcached)
    GET  /v1/jobs/<id>/result                              -> 200 {"result": {"names": [...], "vector": [...]}}

An unknown media id is refused when it is submitted (404 naming it). The queue is PostgreSQL when
``MLP_SERVING_QUEUE=postgresql://...`` (several replicas), SQLite otherwise.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_mlp.demo.media_features import DEFAULT_MEDIA, METADATA_TABLE, MODEL_NAME
from airflow_provider_mlp.operators.serving import PublishModelOperator


@dag(
    dag_id="mlp_media_features",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlp", "example", "use-case", "serving"],
    doc_md=__doc__,
    params={
        "media": Param(DEFAULT_MEDIA, type="integer", minimum=1, description="media files to generate metadata for"),
        "seed": Param(16, type="integer", description="seed of the generated metadata"),
        "sample": Param(5, type="integer", minimum=1, description="media files the extractor is checked on"),
    },
)
def mlp_media_features() -> None:
    @task
    def generate_metadata(params: dict | None = None) -> int:
        from airflow_provider_mlp.demo.media_features import create_media_metadata

        params = params or {}
        table = create_media_metadata(METADATA_TABLE, int(params["media"]), seed=int(params["seed"]))
        snapshot = table.current_snapshot_id
        if snapshot is None:
            raise ValueError(f"{METADATA_TABLE} has no snapshot after the load")
        return int(snapshot)

    @task
    def build_extractor(snapshot_id: int, params: dict | None = None, run_id: str | None = None) -> str:
        import cloudpickle
        import fsspec

        from airflow_provider_mlp.config import settings
        from airflow_provider_mlp.demo.media_features import MediaFeatureExtractor

        params = params or {}
        extractor = MediaFeatureExtractor(METADATA_TABLE, snapshot_id)
        rows = extractor.metadata()
        # The published model must answer: try it on the first media files before publishing.
        for media_id in sorted(rows)[: int(params["sample"])]:
            vector = extractor.predict({"media_id": media_id})["vector"]
            if any(value != value for value in vector):
                raise ValueError(f"feature extractor gives NaN for {media_id!r}: {vector}")
        path = f"{settings().artifact_store.rstrip('/')}/media_features/{run_id}/extractor.pkl"
        with fsspec.open(path, "wb", auto_mkdir=True) as handle:
            cloudpickle.dump(extractor, handle)
        print(f"feature extractor over {len(rows)} media files at snapshot {snapshot_id}: {path}")
        return path

    snapshot = generate_metadata()
    PublishModelOperator(
        task_id="publish_extractor",
        model_name=MODEL_NAME,
        model_path=build_extractor(snapshot),
        # Recorded as the table's current snapshot: the one generate_metadata committed and the extractor reads.
        inputs=[METADATA_TABLE],
    )


mlp_media_features()
