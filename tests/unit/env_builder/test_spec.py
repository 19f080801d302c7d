from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from env_builder.errors import SpecError
from env_builder.spec import EnvSpec
from tests.unit.env_builder.helpers import Publish


def test_canonical_form_ignores_order_duplicates_and_name_spelling() -> None:
    a = EnvSpec(python="3.11", pip=["Scikit_Learn==1.5.*", "pandas", "pandas"])
    b = EnvSpec(python="3.11", pip=("pandas", "scikit-learn==1.5.*"))
    assert a == b and a.req_id == b.req_id
    assert a.pip == ("pandas", "scikit-learn==1.5.*")
    assert EnvSpec(python="3.12", pip=["pandas"]).req_id != EnvSpec(python="3.11", pip=["pandas"]).req_id
    assert EnvSpec.from_dict(a.to_dict()) == a
    assert a.kind == "pip" and EnvSpec(python="3.11", conda=["numpy=1.26"]).kind == "conda"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"python": "three"}, "EnvSpec.python 'three' is not a Python version"),
        ({"pip": []}, "EnvSpec has no packages"),
        ({"pip": ["-e ./src"]}, "editable requirement '-e ./src' is refused"),
        ({"pip": ["pkg @ file:///src/pkg"]}, "points at a local path"),
        ({"pip": ["--index-url https://x"]}, "pip option"),
        ({"pip": ["pandas>>2"]}, "'pandas>>2' is not a valid requirement"),
        ({"pip": ["six"], "channels": ["conda-forge"]}, "channels is set but EnvSpec.conda is empty"),
        ({"conda": ["numpy; rm -rf /"]}, "is not a conda match spec"),
    ],
)
def test_bad_specs_are_named(kwargs: dict[str, object], message: str) -> None:
    kwargs.setdefault("python", "3.11")
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("[", r"\[")):
        EnvSpec(**kwargs)  # type: ignore[arg-type]


QUOTE_IT = 'EnvSpec.python is the number 3.1, not a string; quote the version \\(python: "3.10" in YAML'


@pytest.mark.parametrize(
    "data",
    [
        {"python": 3.1, "pip": ["six"]},
        yaml.safe_load("python: 3.10\npip: [six]"),  # what YAML makes of an unquoted 3.10
        json.loads('{"python": 3.10, "pip": ["six"]}'),  # and JSON
    ],
)
def test_a_numeric_python_version_is_refused_with_a_hint_to_quote_it(data: dict[str, object]) -> None:
    with pytest.raises(SpecError, match=QUOTE_IT):
        EnvSpec.from_dict(data)
    with pytest.raises(SpecError, match=QUOTE_IT):
        EnvSpec(python=data["python"], pip=["six"])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match='EnvSpec.python must be a string such as "3.11", got NoneType'):
        EnvSpec(python=None, pip=["six"])  # type: ignore[arg-type]
    assert EnvSpec.from_dict({"python": "3.10", "pip": ["six"]}).python == "3.10"


def test_from_requirements_follows_includes_and_names_the_bad_line(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("six==1.17.0  # pinned\n")
    (tmp_path / "req.txt").write_text("# comment\n-r base.txt\n\nidna>=3\n")
    spec = EnvSpec.from_requirements(tmp_path / "req.txt", python="3.11")
    assert spec.pip == ("idna>=3", "six==1.17.0")
    (tmp_path / "bad.txt").write_text("six\n-e .\n")
    with pytest.raises(SpecError, match=r"bad.txt:2: editable requirement"):
        EnvSpec.from_requirements(tmp_path / "bad.txt")


def test_from_environment_yml_splits_conda_pip_and_python(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text(
        "name: x\nchannels: [conda-forge, nodefaults]\ndependencies:\n"
        "  - python=3.11\n  - numpy=1.26\n  - pip\n  - pip:\n      - six==1.17.0\n"
    )
    spec = EnvSpec.from_environment_yml(tmp_path / "environment.yml")
    assert (spec.python, spec.conda, spec.pip, spec.channels) == (
        "3.11",
        ("numpy=1.26",),
        ("six==1.17.0",),
        ("conda-forge",),
    )


def test_from_pyproject_reads_dependencies_and_extras(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "m"\nversion = "1"\nrequires-python = ">=3.9"\n'
        'dependencies = ["six"]\n[project.optional-dependencies]\nnet = ["idna"]\n'
    )
    assert EnvSpec.from_pyproject(tmp_path / "pyproject.toml", extras=["net"]).pip == ("idna", "six")
    with pytest.raises(SpecError, match="has no optional-dependencies group 'gpu'"):
        EnvSpec.from_pyproject(tmp_path / "pyproject.toml", extras=["gpu"])


def test_extending_a_base_with_a_direct_url_requirement_pins_it_by_url(tmp_path: Path, publish: Publish) -> None:
    import json

    from env_builder.store import EnvStore

    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    manifest_path = tmp_path / "store" / "envs" / f"{env_id}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    wheel = "https://files.example.org/foo-1.0-py3-none-any.whl"
    manifest["lock"]["packages"] = [["foo", wheel], ["six", "1.16.0"]]
    manifest_path.write_text(json.dumps(manifest))
    spec = EnvSpec.extending(env_id, pip=["idna"], store=store.url)
    assert {f"foo @ {wheel}", "six==1.16.0", "idna"} <= set(spec.pip)
    assert not any(req.startswith("foo==") for req in spec.pip)
