"""Use case 5, media features on demand: generated media metadata and a deterministic feature extractor.

``media_metadata`` generates what an ingest pipeline knows about each media file: duration, the length
of every shot, a 12-bin hue histogram with mean saturation and brightness, and the loudness of every
10-second audio segment. ``extract_features`` turns one file's metadata into a fixed feature vector
(``FEATURE_NAMES``): pacing (shots, cut rate, shot length spread), colour (hue entropy, dominant hue,
saturation, brightness) and sound (integrated loudness, loudness range, share of loud segments).

``MediaFeatureExtractor`` is the model the serving endpoint runs for async jobs: published to the
BentoML store by the ``mlp_media_features`` DAG, it reads the metadata table at the snapshot it was
published with and answers ``predict({"media_id": ...})``; ``validate`` refuses an unknown media id
when the request arrives, naming it. Runtime side: no Airflow.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.serving.models import UnknownFeaturesError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

    from airflow_provider_mlp.fastdata import Table

METADATA_TABLE = "media.metadata"
MODEL_NAME = "media-features"
DEFAULT_MEDIA = 500
HUE_BINS = 12
SEGMENT_SECONDS = 10.0
LOUD_LUFS = -16.0

FEATURE_NAMES = (
    "duration_min",
    "shot_count",
    "shot_mean_s",
    "shot_median_s",
    "shot_std_s",
    "cuts_per_min",
    "hue_entropy",
    "dominant_hue_bin",
    "saturation",
    "brightness",
    "loudness_lufs",
    "loudness_range_lu",
    "loud_fraction",
)


class UnknownMediaError(UnknownFeaturesError):
    """No metadata for the media id; the message names it and the table (the service answers 404)."""


def media_id(index: int) -> str:
    return f"m{index:06d}"


def metadata_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("media_id", pa.string(), nullable=False),
            pa.field("kind", pa.string()),
            pa.field("duration_s", pa.float64()),
            pa.field("shot_lengths_s", pa.list_(pa.float64())),
            pa.field("hue_histogram", pa.list_(pa.float64())),
            pa.field("mean_saturation", pa.float64()),
            pa.field("mean_brightness", pa.float64()),
            pa.field("segment_loudness_lufs", pa.list_(pa.float64())),
        ]
    )


def media_metadata(count: int = DEFAULT_MEDIA, seed: int = 16) -> pa.Table:
    """``count`` media files' metadata: trailers (short, fast cuts, loud), episodes and films; deterministic."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    kinds = ("trailer", "episode", "film")
    rows: dict[str, list[Any]] = {name: [] for name in metadata_schema().names}
    for index in range(1, count + 1):
        kind = kinds[int(rng.integers(0, 3))]
        duration = {
            "trailer": rng.uniform(60, 180),
            "episode": rng.uniform(1500, 3600),
            "film": rng.uniform(5000, 9000),
        }
        total = float(duration[kind])
        mean_shot = {"trailer": 1.6, "episode": 4.5, "film": 6.0}[kind] * float(rng.uniform(0.7, 1.3))
        # Enough draws to cover the duration; the shots that start before its end are kept.
        drawn = np.round(rng.gamma(2.0, mean_shot / 2.0, int(total / mean_shot * 2) + 16) + 0.2, 3)
        ends = np.cumsum(drawn)
        kept = int(np.searchsorted(ends, total)) + 1
        shots = [float(v) for v in drawn[:kept]]
        shots[-1] = round(max(0.2, shots[-1] - (float(ends[kept - 1]) - total)), 3)
        hue = rng.dirichlet(np.full(HUE_BINS, float(rng.uniform(0.3, 3.0))))
        segments = max(1, math.ceil(total / SEGMENT_SECONDS))
        base = {"trailer": -12.0, "episode": -20.0, "film": -23.0}[kind] + float(rng.normal(0, 1.5))
        loudness = np.clip(base + rng.normal(0, 4.0, segments), -60.0, -5.0)
        rows["media_id"].append(media_id(index))
        rows["kind"].append(kind)
        rows["duration_s"].append(round(sum(shots), 3))
        rows["shot_lengths_s"].append(shots)
        rows["hue_histogram"].append([round(float(v), 5) for v in hue])
        rows["mean_saturation"].append(round(float(rng.beta(4, 3)), 4))
        rows["mean_brightness"].append(round(float(rng.beta(5, 4)), 4))
        rows["segment_loudness_lufs"].append([round(float(v), 2) for v in loudness])
    return pa.table(rows, schema=metadata_schema())


def create_media_metadata(
    identifier: str = METADATA_TABLE,
    count: int = DEFAULT_MEDIA,
    *,
    seed: int = 16,
    catalog: Catalog | Mapping[str, Any] | None = None,
) -> Table:
    """Fill ``identifier`` with ``count`` generated media files, replacing what it held; idempotent.

    Each (count, seed) is loaded once (a repeated call commits nothing); a new one replaces the rows.
    """
    from pyiceberg.expressions import AlwaysTrue

    from airflow_provider_mlp.fastdata import Table

    rows = media_metadata(count, seed)
    table = Table.create(identifier, rows.schema, catalog=catalog, exist_ok=True)
    load_id = f"media-metadata-{count}-{seed}"
    table.overwrite(rows, AlwaysTrue(), run_id=load_id, shard_id=0, idempotency_key=load_id)
    return table.refresh()


def extract_features(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """One media file's feature vector (``FEATURE_NAMES`` order) from its metadata row; pure and deterministic."""
    import numpy as np

    where = f"media {metadata.get('media_id')!r}"
    shots = np.asarray(metadata.get("shot_lengths_s") or [], dtype=float)
    hue = np.asarray(metadata.get("hue_histogram") or [], dtype=float)
    loudness = np.asarray(metadata.get("segment_loudness_lufs") or [], dtype=float)
    duration = float(metadata.get("duration_s") or 0.0)
    if shots.size == 0 or duration <= 0:
        raise ValueError(f"{where}: metadata has no shots or no duration; cannot extract features")
    if hue.size != HUE_BINS or loudness.size == 0:
        raise ValueError(f"{where}: expected a {HUE_BINS}-bin hue histogram and segment loudness values")
    share = hue / hue.sum() if hue.sum() > 0 else np.full(HUE_BINS, 1.0 / HUE_BINS)
    entropy = float(-(share[share > 0] * np.log2(share[share > 0])).sum())
    # Integrated loudness: the energy mean of the segments; range: 95th - 10th percentile (as EBU R128 LRA).
    integrated = 10 * math.log10(float(np.mean(10 ** (loudness / 10))))
    values = {
        "duration_min": duration / 60,
        "shot_count": float(shots.size),
        "shot_mean_s": float(shots.mean()),
        "shot_median_s": float(np.median(shots)),
        "shot_std_s": float(shots.std()),
        "cuts_per_min": (shots.size - 1) / (duration / 60),
        "hue_entropy": entropy,
        "dominant_hue_bin": float(int(np.argmax(share))),
        "saturation": float(metadata.get("mean_saturation") or 0.0),
        "brightness": float(metadata.get("mean_brightness") or 0.0),
        "loudness_lufs": integrated,
        "loudness_range_lu": float(np.percentile(loudness, 95) - np.percentile(loudness, 10)),
        "loud_fraction": float((loudness > LOUD_LUFS).mean()),
    }
    vector = [round(values[name], 6) for name in FEATURE_NAMES]
    return {"media_id": metadata.get("media_id"), "names": list(FEATURE_NAMES), "vector": vector}


class MediaFeatureExtractor:
    """The serving model: features of a media id, from ``table`` read at ``snapshot_id`` (loaded once, lazily)."""

    def __init__(self, table: str = METADATA_TABLE, snapshot_id: int | None = None) -> None:
        self.table = table
        self.snapshot_id = snapshot_id
        self._rows: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # What is published is where to read, never the rows read nor the lock.
        return {"table": self.table, "snapshot_id": self.snapshot_id}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__init__(state["table"], state.get("snapshot_id"))  # type: ignore[misc]

    def metadata(self) -> dict[str, dict[str, Any]]:
        """media id -> metadata row, read from the table at the snapshot on first use."""
        with self._lock:
            if self._rows is None:
                from airflow_provider_mlp.fastdata import Table

                data = Table(self.table).read(snapshot_id=self.snapshot_id).to_arrow()
                self._rows = {row["media_id"]: row for row in data.to_pylist()}
            return self._rows

    def _row(self, features: Any) -> dict[str, Any]:
        if not isinstance(features, Mapping) or not isinstance(features.get("media_id"), str):
            raise ValueError(f"features must be {{'media_id': '<id>'}}, got {features!r}")
        wanted = features["media_id"]
        row = self.metadata().get(wanted)
        if row is None:
            at = f" at snapshot {self.snapshot_id}" if self.snapshot_id is not None else ""
            raise UnknownMediaError(f"unknown media id {wanted!r}: not in {self.table}{at}")
        return row

    def validate(self, features: Any) -> None:
        """Refuse a request the model cannot answer, before it is queued."""
        self._row(features)

    def predict(self, features: Any) -> dict[str, Any]:
        return extract_features(self._row(features))


def prepare(scale: float = 1.0, *, seed: int = 16) -> dict[str, Any]:
    """What ``mlp demo`` runs before the DAG: ``scale`` x 500 media files' metadata in ``media.metadata``."""
    count = max(10, int(DEFAULT_MEDIA * scale))
    table = create_media_metadata(count=count, seed=seed)
    return {"table": table.identifier, "snapshot_id": table.current_snapshot_id, "media": count}
