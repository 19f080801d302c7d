"""Typed event payloads and the payload -> Params mapping."""

from __future__ import annotations

import pytest

from airflow_provider_mlp.events import MODEL_PUBLISHED, EventField, EventParams, EventPayloadError, EventSchema
from airflow_provider_mlp.events.emit import emit


def test_envelope_checks_fields_and_names_the_missing_one() -> None:
    extra = MODEL_PUBLISHED.envelope("ranking/train", model="ranker", version="7")
    assert extra["mlp.event"] == "model.published" and extra["mlp.schema"] == 1 and extra["version"] == "7"
    with pytest.raises(EventPayloadError, match="missing required field 'version'"):
        MODEL_PUBLISHED.envelope("ranking/train", model="ranker")
    with pytest.raises(EventPayloadError, match="field 'version' of type int .* expected string"):
        MODEL_PUBLISHED.envelope("ranking/train", model="ranker", version=7)


def test_booleans_are_not_integers_and_optional_fields_may_be_absent() -> None:
    schema = EventSchema("counts", 2, {"n": int, "note": "string?", "ok": EventField("boolean")})
    assert schema.check({"n": 1, "ok": True})["n"] == 1
    with pytest.raises(EventPayloadError, match="'n' of type bool"):
        schema.check({"n": True, "ok": True})
    with pytest.raises(EventPayloadError, match="schema version 1 of 'counts', expected 2"):
        schema.check({"mlp.schema": 1, "n": 1, "ok": True})
    assert schema.json_schema()["required"] == ["n", "ok"]


def test_mapping_reads_watcher_and_outlet_extras_and_names_missing_fields() -> None:
    mapping = EventParams(MODEL_PUBLISHED, {"model_version": "version", "where": "uri"})
    outlet_extra = {"model": "ranker", "version": "3"}
    watcher_extra = {"from_trigger": True, "payload": {"model": "ranker", "version": "4"}}
    assert mapping.resolve([outlet_extra, watcher_extra]) == {"model_version": "4", "where": None}
    assert mapping.resolve([]) == {}
    with pytest.raises(EventPayloadError, match="missing required field 'version'"):
        mapping.resolve([{"model": "ranker"}])
    with pytest.raises(EventPayloadError, match="Param 'x' maps payload field 'nope'"):
        EventParams(MODEL_PUBLISHED, {"x": "nope"})
    untyped = EventParams(None, {"day": "partition.day"})
    assert untyped.resolve([{"partition": {"day": "2026-01-01"}}]) == {"day": "2026-01-01"}
    with pytest.raises(EventPayloadError, match="missing field 'partition.day' for Param 'day'"):
        untyped.resolve([{}])


class _Accessor:
    def __init__(self) -> None:
        self.extra: dict[str, object] = {}


class _Outlet:
    def __init__(self, uri: str) -> None:
        self.uri = uri


def test_emit_attaches_to_the_outlet_and_refuses_other_assets() -> None:
    outlet = _Outlet("mlp://model/ranker")
    events: dict[object, _Accessor] = {outlet: _Accessor()}
    context = {"outlets": [outlet], "outlet_events": events}
    extra = emit("mlp://model/ranker", MODEL_PUBLISHED, producer="t", context=context, model="ranker", version="1")
    assert events[outlet].extra == extra
    with pytest.raises(EventPayloadError, match="is not an outlet"):
        emit("mlp://model/other", MODEL_PUBLISHED, producer="t", context=context, model="o", version="1")
    with pytest.raises(EventPayloadError, match="emit\\(\\) runs inside an Airflow task"):
        import sys

        saved = sys.modules.pop("airflow.sdk", None)
        try:
            emit(outlet, MODEL_PUBLISHED, model="x", version="1")
        finally:
            if saved is not None:
                sys.modules["airflow.sdk"] = saved
