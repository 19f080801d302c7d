"""Headless Debian Chromium driven by Playwright (never a downloaded browser), and where tests keep
their screenshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
# Headless and quiet: no GPU, no QUIC, no first-run pages, no calls home (tests reach only 127.0.0.1).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 60_000


@contextmanager
def chromium_page(profile_dir: Path) -> Iterator[Any]:
    """A page of a headless Chromium with a fresh profile (``--user-data-dir``), closed afterwards."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found: this test drives Debian's Chromium "
            "(apt-get install -y --no-install-recommends chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(profile_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def artifact_dir(tmp_path: Path, name: str) -> Path:
    """Where screenshots go: ``$MLP_TEST_ARTIFACTS/<name>`` (CI collects it) or the test's tmp dir."""
    folder = Path(os.environ.get("MLP_TEST_ARTIFACTS") or tmp_path) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
