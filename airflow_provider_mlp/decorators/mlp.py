"""``@task.mlp``: a TaskFlow function run by ``MlpPodOperator`` in a portable environment.

::

    @task.mlp(env="ranking/model-a:latest", cpu=2, memory="8Gi", gpu=0, retries=2)
    def train(shard: dict) -> dict: ...

Registered in provider info under ``task-decorators``, so ``from airflow.sdk import task`` has
``task.mlp`` once the provider is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from airflow_provider_mlp.operators.compute import MlpPodOperator

if TYPE_CHECKING:
    from airflow.sdk.bases.decorator import TaskDecorator


class _MlpDecoratedOperator(DecoratedOperator, MlpPodOperator):
    custom_operator_name = "@task.mlp"
    template_fields: Sequence[str] = MlpPodOperator.template_fields
    shallow_copy_attrs: Sequence[str] = ("python_callable",)

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        task_id: str,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", f"mlp-{task_id}")
        super().__init__(
            python_callable=python_callable,
            task_id=task_id,
            op_args=op_args,
            op_kwargs=op_kwargs,
            # DecoratedOperator keeps the call for itself; MlpPodOperator needs it too.
            kwargs_to_upstream={"python_callable": python_callable, "op_args": op_args, "op_kwargs": op_kwargs},
            **kwargs,
        )


def mlp_task(
    python_callable: Callable[..., Any] | None = None, multiple_outputs: bool | None = None, **kwargs: Any
) -> TaskDecorator:
    """Wrap a function to run through ``MlpPodOperator`` (takes every argument it takes)."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_MlpDecoratedOperator,
        **kwargs,
    )
