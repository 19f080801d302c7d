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
