"""``mlp-env`` end to end on a real store: every command with --json, errors on stderr with exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from env_builder.cli import main
from tests.integration.env_builder.conftest import PY, BuiltEnv

pytestmark = pytest.mark.integration


def _json(capsys: pytest.CaptureFixture[str], argv: list[str], expect_rc: int = 0) -> dict[str, object]:
    assert main(argv) == expect_rc
    return json.loads(capsys.readouterr().out)


def test_every_command_with_json(
    six_env: BuiltEnv, store_copy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--store", store_copy, "--json"]
    resolved = _json(capsys, ["resolve", "six==1.17.0", "--python", PY, *common])
    assert resolved["env_id"] == six_env.ref.id and resolved["req_id"] == six_env.spec.req_id

    built = _json(capsys, ["build", "six==1.17.0", "--python", PY, "--alias", "ranking/six:v1", *common])
    assert built["id"] == six_env.ref.id and built["alias"] == "ranking/default/six:v1"

    shown = _json(capsys, ["show", "ranking/six:v1", *common])
    assert shown["env_id"] == six_env.ref.id and shown["aliases"] == ["ranking/default/six:v1"]

    assert _json(capsys, ["alias", "ranking/six:v1", "ranking/six:stable", *common])["env_id"] == six_env.ref.id
    listed = _json(capsys, ["list", *common])
    assert listed["environments"][0]["aliases"] == ["ranking/default/six:stable", "ranking/default/six:v1"]  # type: ignore[index]

    fetched = _json(capsys, ["fetch", "ranking/six:stable", "--cache-dir", str(tmp_path / "cache"), *common])
    assert Path(str(fetched["python"])).exists()

    assert _json(capsys, ["gc", "--retention-days", "0", *common])["removed"] == []


def test_errors_are_named_on_stderr_with_exit_status_1(store_copy: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "ranking/nope:v1", "--store", store_copy]) == 1
    assert "mlp-env: error: unknown alias ranking/default/nope:v1" in capsys.readouterr().err
    error = _json(capsys, ["resolve", "mlp-no-such-package-zz", "--json", "--quiet"], expect_rc=1)
    assert error["type"] == "ResolutionError" and "mlp-no-such-package-zz" in str(error["error"])


def test_console_script_entry_point_runs(six_env: BuiltEnv) -> None:
    script = Path(sys.executable).with_name("mlp-env")  # installed from [project.scripts]
    proc = subprocess.run(
        [str(script), "show", six_env.ref.id, "--store", six_env.store, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["env_id"] == six_env.ref.id


def test_run_executes_a_command_inside_a_real_environment(
    six_env: BuiltEnv, store_copy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Path(sys.executable).with_name("mlp-env")
    assert main(["alias", six_env.ref.id[:16], "ranking/six:v1", "--store", store_copy]) == 0  # as `list` prints it
    capsys.readouterr()
    common = ["--store", store_copy, "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    probe = "import os, six, sys; print(six.__version__, sys.prefix == os.environ['VIRTUAL_ENV']); sys.exit(3)"
    for env in (six_env.ref.id[:16], "ranking/six:v1"):
        proc = subprocess.run(
            [str(script), "run", env, *common, "--", "python", "-c", probe], capture_output=True, text=True, check=False
        )
        assert (proc.returncode, proc.stdout, proc.stderr) == (3, "1.17.0 True\n", "")
    shown = subprocess.run(
        [str(script), "show", six_env.ref.id[:16], "--store", store_copy], capture_output=True, text=True, check=True
    )
    assert shown.stdout.startswith(f"env_id     {six_env.ref.id}\n") and " kB (sha256 " in shown.stdout
