"""Use case 5's generated metadata and feature extractor (served end to end in tests/integration)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from airflow_provider_mlp.demo import media_features as media


def test_metadata_is_deterministic_and_consistent() -> None:
    data = media.media_metadata(40)
    assert data.equals(media.media_metadata(40)) and data.schema == media.metadata_schema()
    assert data["media_id"].to_pylist()[:2] == ["m000001", "m000002"]
    for row in data.to_pylist():
        # Shots tile the whole duration; one loudness value per 10 s segment; a histogram sums to 1.
        assert abs(sum(row["shot_lengths_s"]) - row["duration_s"]) < 1e-6 * row["duration_s"] + 0.01
        assert len(row["segment_loudness_lufs"]) >= row["duration_s"] // media.SEGMENT_SECONDS
        assert abs(sum(row["hue_histogram"]) - 1) < 1e-3 and len(row["hue_histogram"]) == media.HUE_BINS


def test_features_are_a_fixed_vector_that_tells_trailers_from_films() -> None:
    rows = media.media_metadata(60).to_pylist()
    features = [media.extract_features(row) for row in rows]
    assert all(f["names"] == list(media.FEATURE_NAMES) and len(f["vector"]) == 13 for f in features)
    assert media.extract_features(rows[0]) == features[0]
    index = {name: i for i, name in enumerate(media.FEATURE_NAMES)}

    def mean(kind: str, name: str) -> float:
        values = [f["vector"][index[name]] for f, r in zip(features, rows, strict=True) if r["kind"] == kind]
        return sum(values) / len(values)

    assert mean("trailer", "cuts_per_min") > 2 * mean("film", "cuts_per_min")
    assert mean("trailer", "loudness_lufs") > mean("film", "loudness_lufs")
    assert mean("trailer", "duration_min") < 5 < mean("film", "duration_min")
    row = dict(rows[0], shot_lengths_s=[])
    with pytest.raises(ValueError, match="media 'm000001': metadata has no shots"):
        media.extract_features(row)


def test_extractor_reads_its_snapshot_names_unknown_ids_and_pickles_without_rows(mlp_home: Path) -> None:
    table = media.create_media_metadata(count=20)
    again = media.create_media_metadata(count=20)
    assert again.current_snapshot_id == table.current_snapshot_id  # idempotent load
    extractor = media.MediaFeatureExtractor(media.METADATA_TABLE, table.current_snapshot_id)
    expected = media.extract_features(media.media_metadata(20).to_pylist()[4])
    assert extractor.predict({"media_id": "m000005"}) == expected
    extractor.validate({"media_id": "m000020"})
    with pytest.raises(media.UnknownMediaError) as raised:
        extractor.validate({"media_id": "m000021"})
    assert str(raised.value) == (
        f"unknown media id 'm000021': not in media.metadata at snapshot {table.current_snapshot_id}"
    )
    assert isinstance(raised.value, KeyError)
    with pytest.raises(ValueError, match="features must be \\{'media_id': '<id>'\\}"):
        extractor.predict({"id": 5})
    copy = pickle.loads(pickle.dumps(extractor))
    assert copy._rows is None and copy.snapshot_id == table.current_snapshot_id
    assert copy.predict({"media_id": "m000005"}) == expected
    # Another size replaces the rows: no media id twice.
    assert media.prepare(scale=0.02)["media"] == 10
    assert table.refresh().read().to_arrow()["media_id"].to_pylist() == [media.media_id(i) for i in range(1, 11)]
