"""Request bodies of the serving endpoints (pydantic), their OpenAPI document, and 4xx messages naming the field."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

Scalar = StrictInt | StrictStr
Key = Scalar | Annotated[list[Scalar], Field(min_length=1, max_length=16)]
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_LOOKUP_KEYS = 1000


class PredictRequest(BaseModel):
    """Answer from the precompute cache by ``key``; compute from ``features`` with the model on a miss."""

    model_config = ConfigDict(extra="forbid")
    key: Key | None = Field(default=None, description="Cache key (a scalar, or a list for a multi-column key).")
    features: dict[str, Any] | None = Field(default=None, description="Model input, used when the cache cannot answer.")
    request_id: Annotated[str, Field(pattern=JOB_ID_PATTERN)] | None = None


class LookupRequest(BaseModel):
    """Precomputed aggregates of ``keys`` with a final score computed from ``weights`` (or the model's finalize,
    or the service's lookup aggregation, which may also choose the keys from ``params``)."""

    model_config = ConfigDict(extra="forbid")
    keys: Annotated[list[Key], Field(min_length=1, max_length=MAX_LOOKUP_KEYS)] | None = Field(
        default=None, description="Cache keys; optional when the service's lookup aggregation derives them from params."
    )
    weights: dict[StrictStr, StrictInt | StrictFloat] | None = Field(
        default=None, description="score = sum(weight * aggregate column); rows ranked by score."
    )
    top: Annotated[int, Field(ge=1, le=MAX_LOOKUP_KEYS)] | None = None
    params: dict[str, Any] | None = Field(
        default=None, description="Passed to the lookup aggregation (keys, aggregate) or the model's finalize."
    )


class JobRequest(BaseModel):
    """Async work: computed by a worker from ``features``; ``request_id`` makes a resubmission idempotent."""

    model_config = ConfigDict(extra="forbid")
    features: dict[str, Any]
    request_id: Annotated[str, Field(pattern=JOB_ID_PATTERN)] | None = None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in error.get("loc", ())) or "body"
        out.append({"field": loc, "message": str(error.get("msg", "invalid"))})
    return out


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }


def _answers(*codes: int) -> dict[str, Any]:
    text = {
        200: "OK",
        202: "Accepted",
        400: "Malformed JSON",
        401: "Missing or wrong bearer token",
        404: "Not found",
        409: "Job failed",
        413: "Body too large",
        415: "Not JSON",
        422: "Invalid field",
        503: "Cache unavailable",
    }
    return {str(c): {"description": text.get(c, "")} for c in codes}


def openapi(title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the endpoints the dispatcher serves."""
    from pydantic.json_schema import models_json_schema

    _, defs = models_json_schema(
        [(m, "validation") for m in (PredictRequest, LookupRequest, JobRequest)],
        ref_template="#/components/schemas/{model}",
    )
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}
    common = (400, 401, 413, 415, 422)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": {
            "/v1/predict": {
                "post": {
                    "operationId": "predict",
                    "requestBody": _body(PredictRequest),
                    "responses": _answers(200, *common, 503),
                }
            },
            "/v1/lookup": {
                "post": {
                    "operationId": "lookup",
                    "requestBody": _body(LookupRequest),
                    "responses": _answers(200, *common, 503),
                }
            },
            "/v1/jobs": {
                "post": {
                    "operationId": "submit_job",
                    "requestBody": _body(JobRequest),
                    "responses": _answers(200, 202, *common, 404),
                }
            },
            "/v1/jobs/{job_id}": {
                "get": {"operationId": "job_status", "parameters": [job_id], "responses": _answers(200, 401, 404, 422)}
            },
            "/v1/jobs/{job_id}/result": {
                "get": {
                    "operationId": "job_result",
                    "parameters": [job_id],
                    "responses": _answers(200, 202, 401, 404, 409, 422),
                }
            },
            "/healthz": {"get": {"operationId": "health", "responses": _answers(200)}},
            "/readyz": {
                "get": {"operationId": "ready", "responses": {**_answers(200), "503": {"description": "Not ready"}}}
            },
        },
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
