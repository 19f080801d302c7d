"""emit(): a partition key on the outlet event, through Airflow's own outlet event accessor."""

from __future__ import annotations

import pytest

from airflow_provider_mlp.events import MODEL_PUBLISHED, EventPayloadError
from airflow_provider_mlp.events.emit import emit


def test_emit_adds_the_partition_key_to_airflows_outlet_event() -> None:
    from airflow.sdk import Asset
    from airflow.sdk.definitions.asset import AssetUniqueKey
    from airflow.sdk.execution_time.context import OutletEventAccessor

    asset = Asset("mlp://model/demand")
    accessor = OutletEventAccessor(key=AssetUniqueKey.from_asset(asset))
    context = {"outlets": [asset], "outlet_events": {asset: accessor}}
    extra = emit(asset, MODEL_PUBLISHED, producer="t", context=context, partition_key="2026-06-14",
                 model="demand", version="2026-06-14")  # fmt: skip
    assert accessor.partition_keys == {"2026-06-14"}
    assert accessor.extra == extra and extra["version"] == "2026-06-14"
    # Without one, the event keeps whatever key the run gives it (none here).
    plain = OutletEventAccessor(key=AssetUniqueKey.from_asset(asset))
    emit(asset, MODEL_PUBLISHED, producer="t", context={"outlets": [asset], "outlet_events": {asset: plain}},
         model="demand", version="1")  # fmt: skip
    assert plain.partition_keys == set()


def test_emit_refuses_a_partition_key_the_outlet_event_cannot_carry() -> None:
    class OldAccessor:
        def __init__(self) -> None:
            self.extra: dict[str, object] = {}

    class Outlet:
        uri = "mlp://model/demand"

    outlet = Outlet()
    events = {outlet: OldAccessor()}
    with pytest.raises(EventPayloadError, match="partition_key='2026-06-14'.*Airflow 3.3"):
        emit(outlet, MODEL_PUBLISHED, producer="t", context={"outlets": [outlet], "outlet_events": events},
             partition_key="2026-06-14", model="demand", version="1")  # fmt: skip
    assert events[outlet].extra == {}
