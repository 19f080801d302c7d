from __future__ import annotations

import pytest

from airflow_provider_mlp.operators.environment import BuildEnvironmentOperator


def test_init_does_no_io_and_templates_name_and_spec(tmp_path: object) -> None:
    op = BuildEnvironmentOperator(
        task_id="build_env",
        spec={"python": "3.11", "pip": ["shap=={{ params.shap_version }}"]},
        name="ranking/explainer-{{ params.model_type }}-{{ run_id }}",
        store="file:///definitely/not/there/{{ params.model_type }}",
    )
    assert isinstance(op.template_fields, tuple) and {"name", "spec"} <= set(op.template_fields)
    context = {"params": {"model_type": "xgb", "shap_version": "0.46.0"}, "run_id": "manual__2026-01-01T00:00:00+00:00"}
    op.render_template_fields(context)  # type: ignore[arg-type]
    assert op.spec == {"python": "3.11", "pip": ["shap==0.46.0"]}
    assert op.store == "file:///definitely/not/there/xgb"
    assert op.alias_name() == "ranking/explainer-xgb-manual__2026-01-01T00-00-00-00-00:latest"


def test_bad_spec_is_named_at_execution_not_at_parse_time() -> None:
    from airflow_provider_mlp.operators.environment import _spec_from
    from env_builder.errors import SpecError

    op = BuildEnvironmentOperator(task_id="t", spec={"python": "3.11", "pip": ["six"], "gpu": True})
    with pytest.raises(SpecError, match=r"unknown fields \['gpu'\]"):
        _spec_from(op.spec, None, None)


def test_a_numeric_python_version_in_the_spec_mapping_is_refused_before_the_build_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    import env_builder.builder
    from env_builder.errors import SpecError

    builds: list[object] = []
    monkeypatch.setattr(env_builder.builder, "build", lambda *args, **kwargs: builds.append(args))
    op = BuildEnvironmentOperator(task_id="t", spec={"python": 3.10, "pip": ["six"]}, store=f"{tmp_path}/store")
    op.render_template_fields({})  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"EnvSpec.python is the number 3.1, not a string; quote the version"):
        op.execute({"ti": None})  # type: ignore[typeddict-item]
    assert builds == []


def test_bad_alias_name_is_refused_before_the_build_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import env_builder.builder
    from env_builder.errors import AliasError

    builds: list[object] = []
    monkeypatch.setattr(env_builder.builder, "build", lambda *args, **kwargs: builds.append(args))
    op = BuildEnvironmentOperator(
        task_id="t", spec={"python": "3.11", "pip": ["six"]}, name="a/b/c/d", store=f"{tmp_path}/store"
    )
    with pytest.raises(AliasError, match="4 path parts"):
        op.execute({"ti": None})  # type: ignore[typeddict-item]
    assert builds == []
