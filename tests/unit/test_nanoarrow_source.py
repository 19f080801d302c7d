from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "native"))

import nanoarrow_source


def test_a_mismatching_archive_is_a_clear_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nanoarrow-0.9.0.tar.gz"
    fake.write_bytes(b"not the real archive")
    monkeypatch.setenv("MLP_NANOARROW_SDIST", str(fake))
    with pytest.raises(nanoarrow_source.NanoarrowSourceError, match="sha256 .* expected"):
        nanoarrow_source.sdist_path()


def test_a_missing_archive_is_a_clear_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLP_NANOARROW_SDIST", str(tmp_path / "absent.tar.gz"))
    with pytest.raises(nanoarrow_source.NanoarrowSourceError, match="is not a file"):
        nanoarrow_source.sdist_path()


def test_extracts_a_namespaced_c_library_from_the_cached_sdist(tmp_path: Path) -> None:
    # The build already cached and verified the archive; extraction works offline from it.
    sources, include_dirs = nanoarrow_source.extract_sources(tmp_path)
    assert sorted(Path(s).name for s in sources) == ["array.c", "array_stream.c", "schema.c", "utils.c"]
    config = Path(include_dirs[0], "nanoarrow", "nanoarrow_config.h").read_text()
    assert "#define NANOARROW_NAMESPACE MlpNanoarrow" in config
    assert '#define NANOARROW_VERSION "0.9.0"' in config


def test_every_nanoarrow_symbol_of_the_extension_is_namespaced() -> None:
    import subprocess

    from airflow_provider_mlp.kernels import _native

    out = subprocess.run(["nm", "-D", "--defined-only", _native.__file__], capture_output=True, text=True, check=True)
    exported = [line.split()[-1] for line in out.stdout.splitlines()]
    assert "PyInit__native" in exported
    assert any(name.startswith("MlpNanoarrowArrowArrayViewInitFromSchema") for name in exported)
    assert [name for name in exported if name != "PyInit__native" and not name.startswith("MlpNanoarrow")] == []
