"""Conda environments for real: a local channel, py-rattler's solver and installer, conda-pack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from env_builder.builder import build
from env_builder.errors import ResolutionError
from env_builder.rehydrate import ensure
from env_builder.resolve import resolve
from env_builder.spec import EnvSpec
from env_builder.store import EnvStore
from tests.integration.env_builder.conda_channel import build_channel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def conda_channel(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_channel(tmp_path_factory.mktemp("conda")))


def test_solver_locks_urls_and_sha256_and_names_bad_packages(conda_channel: str) -> None:
    lock = resolve(EnvSpec(conda=["mlp-greeter"], channels=[conda_channel]))
    assert lock.kind == "conda" and dict(lock.conda_packages) == {"mlp-base": "2.0", "mlp-greeter": "1.0"}
    assert all(line.startswith("file://") and "#" in line for line in lock.conda)
    older = resolve(EnvSpec(conda=["mlp-greeter", "mlp-base <2"], channels=[conda_channel]))
    assert dict(older.conda_packages)["mlp-base"] == "1.0" and older.env_id != lock.env_id
    with pytest.raises(ResolutionError, match="mlp-no-such-thing"):
        resolve(EnvSpec(conda=["mlp-no-such-thing"], channels=[conda_channel]))
    with pytest.raises(ResolutionError, match=r"mlp-base >5"):
        resolve(EnvSpec(conda=["mlp-greeter", "mlp-base >5"], channels=[conda_channel]))


def test_conda_pack_build_rehydrates_with_conda_unpack(conda_channel: str, mlp_home: Path, tmp_path: Path) -> None:
    spec = EnvSpec(conda=["mlp-greeter"], channels=[conda_channel])
    ref = build(spec, str(tmp_path / "store"))
    manifest = EnvStore.open(str(tmp_path / "store")).manifest(ref.id)
    assert manifest["kind"] == "conda" and manifest["lock"]["conda_packages"] == [
        ["mlp-base", "2.0"],
        ["mlp-greeter", "1.0"],
    ]

    env = ensure(ref.id, store=str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    assert (env.path / "bin" / "conda-unpack").exists()
    out = subprocess.run([str(env.path / "bin" / "mlp-greet")], capture_output=True, text=True, check=True)
    # conda-unpack rewrote the build prefix to where the environment landed.
    assert out.stdout.split() == [f"prefix={env.path}", "2.0"]
    assert ensure(ref.id, store=str(tmp_path / "gone"), cache_dir=tmp_path / "cache") == env

    # Same lock, built again into another store: byte-identical archive.
    again = build(spec, str(tmp_path / "store2"))
    assert (again.id, again.sha256) == (ref.id, ref.sha256)


def test_a_package_failing_to_install_is_a_build_error(mlp_home: Path, tmp_path: Path) -> None:
    from env_builder.errors import BuildError

    channel = build_channel(tmp_path / "channel")
    spec = EnvSpec(conda=["mlp-greeter"], channels=[str(channel)])
    # The repodata still announces it, with its sha256; the file itself is damaged after publishing.
    (package,) = channel.rglob("mlp-greeter-*.*")
    package.write_bytes(b"not a conda package")
    with pytest.raises(BuildError, match="installing the conda packages of .* failed"):
        build(spec, str(tmp_path / "store"))
