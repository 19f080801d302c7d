from __future__ import annotations

import sys
from pathlib import Path

import pytest

import env_builder.builder
from env_builder.builder import find_base_python
from env_builder.errors import BaseInterpreterError


def _fake_interpreter(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-python"
    script.write_text(f"#!{sys.executable}\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("answer", ["print('not json')", "print('[1, 2]')", 'print(\'{"version": "3.11.0"}\')'])
def test_base_interpreter_with_a_garbled_probe_answer_is_named(tmp_path: Path, answer: str) -> None:
    candidate = _fake_interpreter(tmp_path, answer)
    with pytest.raises(BaseInterpreterError, match=r"fake-python.*answered the probe"):
        find_base_python("3.11", override=candidate)


def test_base_interpreter_that_hangs_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_builder.builder, "_PROBE_TIMEOUT_S", 0.5)
    candidate = _fake_interpreter(tmp_path, "import time; time.sleep(30)")
    with pytest.raises(BaseInterpreterError, match=r"fake-python.*does not run"):
        find_base_python("3.11", override=candidate)


@pytest.mark.parametrize(
    "line",
    ["{env}/lib/extra", "{env}-sibling/lib", "/opt/elsewhere", "../../../../../outside"],
)
def test_pth_lines_that_would_not_survive_relocation_are_refused(tmp_path: Path, line: str) -> None:
    from env_builder.builder import _refuse_editable
    from env_builder.errors import BuildError

    env_dir = tmp_path / "env"
    site = env_dir / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "extra.pth").write_text(line.format(env=env_dir) + "\n")
    with pytest.raises(BuildError, match="extra.pth adds"):
        _refuse_editable(env_dir)


def test_pth_imports_and_relative_paths_inside_the_environment_are_kept(tmp_path: Path) -> None:
    from env_builder.builder import _refuse_editable

    env_dir = tmp_path / "env"
    site = env_dir / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "ok.pth").write_text("# comment\nimport _virtualenv\nextra\n../../../share/more\n\n")
    _refuse_editable(env_dir)
