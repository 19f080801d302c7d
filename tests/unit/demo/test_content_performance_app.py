"""The Streamlit app's plumbing without a browser: where it finds the service, how answers become its frames,
and an unreachable service named in the error. (The app itself runs in a real browser in the integration test.)"""

from __future__ import annotations

import pytest

from airflow_provider_mlp.demo.content_performance_app import (
    ServiceError,
    lookup,
    series_frame,
    service_url,
    table_frame,
)
from tests.support.memcached import free_port


def test_service_url_from_argument_env_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLP_LOOKUP_URL", raising=False)
    assert service_url([]) == "http://127.0.0.1:3000"
    monkeypatch.setenv("MLP_LOOKUP_URL", "http://127.0.0.1:4000/")
    assert service_url([]) == "http://127.0.0.1:4000"
    assert service_url(["--url", "http://127.0.0.1:5000", "--other"]) == "http://127.0.0.1:5000"


def test_an_answer_becomes_the_chart_and_table_frames() -> None:
    result = {
        "dates": ["2026-01-01", "2026-01-02"],
        "views": [4, 0],
        "watch_seconds": [7200, 0],
        "completions": [1, 0],
        "slices": 1,
    }
    frame = series_frame(result)
    assert list(frame["views"]) == [4, 0] and list(frame["watch_hours"]) == [2.0, 0.0]
    assert list(frame["completion_rate"]) == [0.25, 0.0]
    table = table_frame(frame)
    assert list(table.index) == ["2026-01-01", "2026-01-02"]
    assert table.loc["2026-01-01"].to_dict() == {
        "views": "4",
        "watch hours": "2.0",
        "completions": "1",
        "completion rate": "25.0%",
    }
    assert series_frame({"dates": []}).empty


def test_an_unreachable_service_is_named_in_the_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceError, match=f"{url}/v1/lookup"):
        lookup(url, {}, timeout=2)
