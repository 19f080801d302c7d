"""``mlp-env`` on bad input: a clear error naming the thing, never a traceback (no builds here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from env_builder.cli import main
from env_builder.store import EnvStore
from tests.unit.env_builder.helpers import Publish


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "--storage-options", "[1]"], "expected a JSON object, got list"),
        (["list", "--storage-options", "{nope"], "not JSON"),
        (["gc", "--retention-days", "nan"], "'nan': expected a number of days from 0 to 36500"),
        (["gc", "--retention-days", "-3"], "'-3': expected a number of days from 0 to 36500"),
        (["gc", "--retention-days", "1e10"], "'1e10': expected a number of days from 0 to 36500"),
        (["gc", "--retention-days", "soon"], "'soon' is not a number of days"),
    ],
)
def test_bad_options_are_refused_by_the_parser(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_alias_is_refused_before_anything_is_built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No resolution or build happens: the package does not even exist.
    argv = ["build", "mlp-no-such-package-zz", "--alias", "bad!name", "--store", str(tmp_path / "s"), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "mlp-env: error:" in err and "bad!name" in err and "mlp-no-such-package-zz" not in err


def test_list_skips_an_unreadable_manifest_and_says_so(
    tmp_path: Path, publish: Publish, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    good, broken = publish(store), publish(store)
    (tmp_path / "store" / "envs" / f"{broken}.manifest.json").write_text(json.dumps({"archive": "oops"}))
    assert main(["list", "--store", store.url, "--json"]) == 0
    captured = capsys.readouterr()
    assert [e["env_id"] for e in json.loads(captured.out)["environments"]] == [good]
    assert f"skipping {broken}: manifest" in captured.err


def test_fetch_into_an_unusable_cache_directory_is_named(
    tmp_path: Path, publish: Publish, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    assert main(["fetch", env_id, "--store", store.url, "--cache-dir", "/dev/null", "--quiet"]) == 1
    assert "environment cache directory /dev/null is not usable" in capsys.readouterr().err
