"""Use case 4's Streamlit app in a real browser: streamlit run -> real `bentoml serve` (lookup aggregation) -> real
memcached holding a published cube of generated viewing events. A person changes the device and the countries;
the metrics, the daily table and the chart follow, and every number equals a pandas recomputation of the events.
Screenshots are kept as test artifacts (``$MLP_TEST_ARTIFACTS/content-performance``, paths printed).

Needs Debian's ``chromium``; Playwright drives it through ``executable_path`` and never downloads a browser.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.demo.content_performance import (
    CUBE_VALUES,
    DEFAULT_FIRST_DAY,
    DIMENSIONS,
    NAMESPACE,
    aggregate_events,
    app_path,
    build_cube,
    combine_partials,
    create_viewing_events,
    service_env,
)
from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.precompute import publish
from tests.support.browser import artifact_dir, chromium_page
from tests.support.memcached import running_memcached
from tests.support.serving import ServingProcess
from tests.support.streamlit import StreamlitProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with chromium_page(tmp_path / "chromium-profile") as browser_page:
        yield browser_page


def _artifact_dir(tmp_path: Path) -> Path:
    return artifact_dir(tmp_path, "content-performance")


def test_changing_the_slices_changes_the_chart_and_numbers(
    mlp_home: Path, tmp_path: Path, page: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    events_table, titles_table = create_viewing_events(0.1, row_group_rows=5_000)
    events = events_table.read().to_arrow()
    daily = combine_partials([aggregate_events(events)])
    cube = build_cube(
        daily,
        Table(titles_table.identifier).read().to_arrow(),
        first_day=DEFAULT_FIRST_DAY,
        days=60,
        as_of=dt.date(2026, 3, 1),
    )
    frame = events.to_pandas()
    artifacts = _artifact_dir(tmp_path)

    with running_memcached(1) as servers:
        address = servers[0].address
        published = publish(cube, key=list(DIMENSIONS), values=CUBE_VALUES, namespace=NAMESPACE, servers=address)
        service = ServingProcess(
            {
                "MLP_HOME": str(mlp_home),
                "BENTOML_HOME": str(tmp_path / "bentoml"),
                **service_env(address),
            },
            tmp_path / "bentoml-serve.log",
        )
        app = StreamlitProcess(Path(app_path()), tmp_path / "streamlit.log", env={"MLP_LOOKUP_URL": ""})
        app.args = ["--url", service.url]
        with service, app:
            page.goto(app.url)
            metrics = page.get_by_test_id("stMetricValue")
            expect(metrics.first).to_have_text(f"{len(frame):,}")
            expect(page.get_by_text(f"cache version {published.tag}")).to_be_visible()
            chart = page.get_by_test_id("stVegaLiteChart")
            expect(chart).to_be_visible()
            page.wait_for_timeout(500)  # the chart's first draw
            all_chart = chart.screenshot()
            first_shot = artifacts / "01-all-slices.png"
            page.screenshot(path=str(first_shot), full_page=True)

            # A person picks a device: every number follows, recomputed here from the raw events.
            page.get_by_test_id("stRadio").get_by_text("mobile", exact=True).click()
            mobile = frame[frame["device"] == "mobile"]
            expect(metrics.first).to_have_text(f"{len(mobile):,}")
            expect(metrics.nth(2)).to_have_text(f"{int(mobile['completed'].sum()):,}")
            hours = mobile["watch_seconds"].sum() / 3600
            expect(metrics.nth(1)).to_have_text(f"{hours:,.1f}")
            second_shot = artifacts / "02-mobile.png"
            page.screenshot(path=str(second_shot), full_page=True)

            # ... and two countries (a multiselect: type, Enter).
            countries = page.get_by_test_id("stMultiSelect").filter(has_text="Countries").locator("input")
            for country in ("US", "GB"):
                countries.fill(country)
                countries.press("Enter")
            chosen = mobile[mobile["country"].isin(["US", "GB"])]
            expect(metrics.first).to_have_text(f"{len(chosen):,}")
            # The daily table under the chart: the first day's views for these slices.
            day_one = chosen[chosen["event_date"] == DEFAULT_FIRST_DAY]
            first_row = page.get_by_test_id("stTable").locator("tbody tr").first
            expect(first_row.locator("th")).to_have_text("2026-01-01")
            expect(first_row.locator("td").first).to_have_text(f"{len(day_one):,}")
            countries.press("Escape")
            # Every title (one rollup key) x two countries x one device: two cached slices summed.
            expect(page.get_by_text("2 cached slice(s)")).to_be_visible()
            page.wait_for_timeout(500)
            assert chart.screenshot() != all_chart, "the chart did not change with the slices"
            third_shot = artifacts / "03-mobile-us-gb.png"
            page.screenshot(path=str(third_shot), full_page=True)

    for shot in (first_shot, second_shot, third_shot):
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"
    with capsys.disabled():
        print(f"\ncontent performance screenshots: {first_shot} {second_shot} {third_shot}")
