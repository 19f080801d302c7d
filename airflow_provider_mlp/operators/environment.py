"""Build a portable environment at execution time and hand its id to downstream tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from env_builder.spec import EnvSpec


def _spec_from(value: Any, store: str | None, storage_options: Mapping[str, Any] | None) -> EnvSpec:
    from env_builder.errors import SpecError
    from env_builder.spec import EnvSpec

    if isinstance(value, EnvSpec):
        return value
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Sequence):
        return EnvSpec(pip=[str(item) for item in value])
    if isinstance(value, Mapping):
        data = dict(value)
        extends = data.pop("extends", None)
        if extends:
            unexpected = set(data) - {"pip", "conda"}
            if unexpected:
                raise SpecError(f"spec with 'extends' takes only pip and conda additions, not {sorted(unexpected)}")
            return EnvSpec.extending(
                str(extends),
                pip=data.get("pip", ()),
                conda=data.get("conda", ()),
                store=store,
                storage_options=storage_options,
            )
        return EnvSpec.from_dict(data)
    raise SpecError(f"spec must be an EnvSpec, a mapping or a list of pip requirements, not {type(value).__name__}")


def env_asset(alias_name: str) -> Any:
    """The ``mlp://env/<team>/<project>/<name>`` Asset of an environment alias (any tag)."""
    from airflow_provider_mlp.assets import create_mlp_asset
    from env_builder.refs import parse_alias

    ref = parse_alias(alias_name)
    return create_mlp_asset(kind="env", team=ref.team, project=ref.project, name=ref.name)


def _automatic_outlet(name: str) -> Any:
    # No validation at parse time: a bad name gets no automatic outlet here and its clear error at run time.
    from env_builder.errors import AliasError
    from env_builder.refs import sanitize_component

    try:
        return env_asset("/".join(sanitize_component(part) for part in name.split("/")))
    except (AliasError, ValueError):
        return None


class BuildEnvironmentOperator(BaseOperator):
    """Resolve, build, pack and store an environment when the task runs; return its env id (XCom).

    ``spec`` is an ``EnvSpec``, a mapping of its fields (``{"python": "3.11", "pip": [...]}``, or
    ``{"extends": "ranking/model-a@latest", "pip": ["shap"]}``) or a list of pip requirements;
    strings inside a mapping or list are templated. ``name`` (templated, e.g.
    ``"explainer-{{ params.model_type }}-{{ run_id }}"``) becomes the alias
    ``team/project/<name>:<tag>``; characters an alias cannot hold (``:`` and ``+`` of a run id)
    become ``-``. The alias is also pushed as XCom ``alias``, the full reference as ``env``. With a
    name that is not templated, the task's outlet is the env's Asset ``mlp://env/<team>/<project>/<name>``
    and its event carries an ``env.built`` payload (``env_id``, ``alias``).

    :param spec: what to build.
    :param name: alias name, optionally prefixed ``team/`` or ``team/project/``.
    :param tag: alias tag (default ``latest``; other tags are immutable).
    :param store: fsspec URL of the environment store; beats the connection's ``url`` (default:
        settings().env_store).
    :param storage_options: fsspec options for the store, merged over the connection's.
    :param mlp_object_store_conn_id: an ``mlp_object_store`` connection: its ``url`` is the store
        when ``store`` is not given, its login/password/endpoint reach an S3-compatible store.
    :param base_python: interpreter to build against (default: ``uv python find`` for the spec's version).
    """

    template_fields: Sequence[str] = ("spec", "name", "tag", "store")
    template_fields_renderers = {"spec": "json"}
    ui_color = "#e8f4e4"

    def __init__(
        self,
        *,
        spec: EnvSpec | Mapping[str, Any] | Sequence[str] | str,
        name: str | None = None,
        tag: str = "latest",
        store: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        base_python: str | None = None,
        mlp_object_store_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs and name and "{{" not in name and "{{" not in tag:
            outlet = _automatic_outlet(name)
            if outlet is not None:
                kwargs["outlets"] = [outlet]
        super().__init__(**kwargs)
        self.spec = spec
        self.name = name
        self.tag = tag
        self.store = store
        self.storage_options = storage_options
        self.base_python = base_python
        self.mlp_object_store_conn_id = mlp_object_store_conn_id

    def alias_name(self) -> str | None:
        """The alias the rendered ``name`` and ``tag`` make (``None`` without a name)."""
        from env_builder.refs import sanitize_component

        if not self.name:
            return None
        parts = [sanitize_component(part) for part in str(self.name).split("/")]
        return f"{'/'.join(parts)}:{sanitize_component(str(self.tag))}"

    def _announce(self, context: Context, alias_name: str, env_id: str) -> None:
        """The env's outlet event carries an ``env.built`` payload (env id, alias)."""
        from airflow_provider_mlp.events.schema import ENV_BUILT

        outlet_events = context.get("outlet_events")
        if outlet_events is None:
            return
        uri = env_asset(alias_name).uri
        for outlet in self.outlets or ():
            if getattr(outlet, "uri", None) == uri:
                extra = ENV_BUILT.envelope(f"{self.dag_id}/{self.task_id}", env_id=env_id, alias=alias_name)
                outlet_events[outlet].extra.update(extra)

    def store_location(self) -> tuple[str | None, dict[str, Any] | None]:
        """The store URL and fsspec options: arguments first, then the connection, then settings."""
        if self.mlp_object_store_conn_id is None:
            return self.store, dict(self.storage_options) if self.storage_options is not None else None
        from airflow_provider_mlp.config import settings
        from airflow_provider_mlp.hooks.object_store import ObjectStoreHook

        hook = ObjectStoreHook(
            self.mlp_object_store_conn_id, url=self.store, storage_options=dict(self.storage_options or {})
        )
        conn_url, _, _ = hook.connection_fields
        url = self.store or conn_url or settings().env_store
        return url, hook.storage_options_for(url)

    def execute(self, context: Context) -> str:
        from env_builder.builder import alias, build
        from env_builder.refs import parse_alias

        alias_name = self.alias_name()
        if alias_name:
            parse_alias(alias_name)  # a bad name fails now, not after a build of many minutes
        store, storage_options = self.store_location()
        spec = _spec_from(self.spec, store, storage_options)
        self.log.info("Building environment %s (req_id %s)", spec.to_dict(), spec.req_id)
        ref = build(
            spec,
            store,
            storage_options=storage_options,
            base_python=self.base_python,
            progress=self.log.info,
        )
        self.log.info("Environment %s: %d bytes at %s", ref.id, ref.size, ref.uri)
        ti = context["ti"]
        if alias_name:
            record = alias(ref, alias_name, store, storage_options=storage_options)
            self.log.info("Alias %s -> %s", record["alias"], ref.id)
            ti.xcom_push(key="alias", value=record["alias"])
            self._announce(context, record["alias"], ref.id)
        ti.xcom_push(key="env", value=ref.to_dict())
        return ref.id
