"""Run a DAG on an event and fill its Params from the event's payload (Metaflow's ``@trigger``, on Airflow Assets)::

    models = Asset("mlp://model/ranker")
    on_model = EventTrigger(models, MODEL_PUBLISHED, parameters={"model_version": "version"})


    @on_model
    @dag(schedule=on_model.asset, params={"model_version": Param("", type="string")})
    def score_with_new_model(): ...

When a run was triggered by events of the asset, the newest event's payload is checked against the
schema and its fields fill the mapped Params, validated by each Param's own schema, before any of the
run's templates are rendered; a missing or mistyped field fails the task with an error naming the
field. Manual and REST-triggered runs keep the Params they were given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.events.mapping import EventParams
from airflow_provider_mlp.events.schema import EventPayloadError

if TYPE_CHECKING:
    from airflow.sdk import DAG, Asset

    from airflow_provider_mlp.events.schema import EventSchema

_TRIGGERS_ATTR = "_mlp_event_triggers"


class EventTrigger:
    """``asset``'s events of kind ``event`` fill the Params named in ``parameters`` (Param -> payload field)."""

    def __init__(
        self, asset: Asset, event: EventSchema | None = None, *, parameters: Mapping[str, str] | None = None
    ) -> None:
        self.asset = asset
        self.event = event
        self.mapping = EventParams(event, dict(parameters or {}))

    def __call__(self, dag_or_factory: Any) -> Any:
        """Decorate a ``@dag`` function (or apply to a DAG object)."""
        from airflow.sdk import DAG

        if isinstance(dag_or_factory, DAG):
            return self.apply(dag_or_factory)

        @functools.wraps(dag_or_factory)
        def factory(*args: Any, **kwargs: Any) -> Any:
            return self.apply(dag_or_factory(*args, **kwargs))

        return factory

    def apply(self, dag: DAG) -> DAG:
        params = dag.params
        for name in self.mapping.parameters:
            if name not in params:
                raise EventPayloadError(
                    f"DAG {dag.dag_id!r} maps event field {self.mapping.parameters[name]!r} to Param {name!r}, "
                    f"which the DAG does not declare (params: {sorted(params)})"
                )
        triggers: list[EventTrigger] = getattr(dag, _TRIGGERS_ATTR, None) or []
        if not triggers:
            _hook_template_env(dag)
        triggers.append(self)
        setattr(dag, _TRIGGERS_ATTR, triggers)
        return dag

    def values(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """Param values from the run's triggering events of this asset ({} when none triggered it)."""
        accessor = context.get("triggering_asset_events")
        if not accessor:
            return {}
        uri = self.asset.uri
        extras = [event.extra for asset in accessor if asset.uri == uri for event in accessor[asset]]
        return self.mapping.resolve(extras, where=f"triggering event of {uri}")


def apply_event_params(dag: DAG, context: Any) -> None:
    """Fill ``context["params"]`` from the run's triggering events, each value checked by its Param."""
    triggers: list[EventTrigger] = getattr(dag, _TRIGGERS_ATTR, None) or []
    params = context["params"]
    for trigger in triggers:
        for name, value in trigger.values(context).items():
            param = dag.params.get_param(name)
            try:
                params[name] = param.resolve(value=value)
            except Exception as exc:  # ParamValidationError: Airflow's own message, with our field named first.
                raise EventPayloadError(
                    f"Param {name!r} of DAG {dag.dag_id!r} does not accept field "
                    f"{trigger.mapping.parameters[name]!r} = {value!r} of the triggering event of "
                    f"{trigger.asset.uri}: {exc}"
                ) from exc


def _hook_template_env(dag: DAG) -> None:
    # The Task SDK builds the DAG's Jinja environment right before it renders a task's templates,
    # inside the task's current context: the earliest point at which code of the DAG sees the run's
    # triggering events and can still fill the Params that templates, TaskFlow ``params`` arguments
    # and execute() all read from the same context.
    original: Callable[..., Any] = dag.get_template_env

    @functools.wraps(original)
    def get_template_env(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk import get_current_context

        try:
            context = get_current_context()
        except Exception:  # not running a task (parsing, serialization, the UI): nothing to fill
            context = None
        if context is not None and "params" in context:
            apply_event_params(dag, context)
        return original(*args, **kwargs)

    object.__setattr__(dag, "get_template_env", get_template_env)
