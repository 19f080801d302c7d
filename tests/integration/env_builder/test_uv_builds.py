"""Real uv resolutions and builds against the package registry, real packing, stores and rehydration."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from env_builder.builder import _refuse_editable, alias, build
from env_builder.errors import AliasError, BuildError, ResolutionError
from env_builder.rehydrate import ensure
from env_builder.resolve import find_uv, resolve, uv_env
from env_builder.spec import EnvSpec
from env_builder.store import EnvStore
from tests.integration.env_builder.conftest import PY, BuiltEnv
from tests.unit.env_builder.helpers import run_at_once, stored_names

pytestmark = pytest.mark.integration


def test_lock_manifest_and_rehydrated_env_run_the_locked_packages(six_env: BuiltEnv, tmp_path: Path) -> None:
    store = EnvStore.open(six_env.store)
    manifest = store.manifest(six_env.ref.id)
    assert manifest["lock"]["packages"] == [["six", "1.17.0"]]
    assert "--hash=sha256:" in manifest["lock"]["requirements"]
    assert manifest["req_id"] == six_env.spec.req_id
    assert manifest["base_interpreter"]["version"].startswith(PY)
    assert manifest["interpreter_links"] == ["bin/python", "bin/python3", f"bin/python{PY}"]
    assert {"sha256", "size", "unpacked_size", "files"} <= set(manifest["archive"])
    assert manifest["builder"]["uv"].startswith("uv ")
    lock_text = (Path(six_env.store) / "envs" / f"{six_env.ref.id}.lock").read_text()
    assert lock_text == manifest["lock"]["requirements"]

    env = ensure(six_env.ref.id, store=six_env.store, cache_dir=tmp_path / "cache")
    out = subprocess.run(
        [str(env.python), "-c", "import six, sys; print(six.__version__, sys.prefix == sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["1.17.0", "False"]
    # The relocatable scripts run from the cache location, nowhere near where the env was built.
    activate = subprocess.run(
        ["bash", "-c", f". {env.path}/bin/activate && python -c 'import sys; print(sys.prefix)'"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert activate.stdout.strip() == str(env.path)


def test_same_spec_resolves_to_the_same_ids_and_a_rebuild_is_byte_identical(six_env: BuiltEnv, tmp_path: Path) -> None:
    again = EnvSpec(python=PY, pip=["SIX==1.17.0"])
    assert again.req_id == six_env.spec.req_id
    assert resolve(again).env_id == six_env.ref.id
    rebuilt = build(again, str(tmp_path / "other-store"))
    assert rebuilt.id == six_env.ref.id
    assert rebuilt.sha256 == six_env.ref.sha256
    archive_name = f"{rebuilt.id}.{rebuilt.sha256}.tar.zst"
    assert (tmp_path / "other-store" / "envs" / archive_name).read_bytes() == (
        Path(six_env.store) / "envs" / archive_name
    ).read_bytes()
    # Already stored: build returns it without building.
    assert build(again, six_env.store) == six_env.ref


def test_unknown_package_and_unsatisfiable_spec_are_named() -> None:
    with pytest.raises(ResolutionError, match="mlp-no-such-package-zz.*not found"):
        resolve(EnvSpec(python=PY, pip=["mlp-no-such-package-zz"]))
    with pytest.raises(ResolutionError, match=r"six==99.*no version of six==99"):
        resolve(EnvSpec(python=PY, pip=["six==99"]))


def test_extending_an_aliased_env_keeps_its_pins_and_adds_packages(six_env: BuiltEnv, store_copy: str) -> None:
    alias(six_env.ref, "ranking/model-a:latest", store=store_copy)
    spec = EnvSpec.extending("ranking/model-a@latest", pip=["idna==3.10"], store=store_copy)
    assert spec.base == six_env.ref.id and spec.base_ref == "ranking/model-a@latest"
    assert spec.pip == ("idna==3.10", "six==1.17.0")
    lock = resolve(spec)
    assert dict(lock.packages) == {"idna": "3.10", "six": "1.17.0"}
    with pytest.raises(ResolutionError, match="six"):
        resolve(EnvSpec.extending("ranking/model-a@latest", pip=["six<1.17"], store=store_copy))
    with pytest.raises(AliasError, match="unknown alias ranking/default/model-b:latest"):
        EnvSpec.extending("ranking/model-b", pip=["idna"], store=store_copy)


def test_editable_install_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "src" / "editme").mkdir(parents=True)
    (project / "src" / "editme" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "editme"\nversion = "0.1"\n[build-system]\nrequires = ["hatchling"]\n'
        'build-backend = "hatchling.build"\n'
    )
    venv = tmp_path / "venv"
    uv = find_uv()
    subprocess.run([uv, "venv", "--python", PY, str(venv)], check=True, env=uv_env(), capture_output=True)
    subprocess.run(
        [uv, "pip", "install", "--python", str(venv / "bin" / "python"), "-e", str(project)],
        check=True,
        env=uv_env(),
        capture_output=True,
    )
    with pytest.raises(BuildError, match="editable install"):
        _refuse_editable(venv)


def test_two_builders_of_the_same_env_at_once_both_succeed_with_one_archive(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    refs, errors = run_at_once(lambda: build(EnvSpec(python=PY, pip=["six==1.17.0"]), store), [(), ()])
    assert not errors and len(refs) == 2 and refs[0] == refs[1]
    names = sorted(p.name for p in (tmp_path / "store" / "envs").iterdir())
    assert names == stored_names(refs[0].id, refs[0].sha256)
    manifest = json.loads((tmp_path / "store" / "envs" / f"{refs[0].id}.manifest.json").read_text())
    assert manifest["archive"]["sha256"] == refs[0].sha256
