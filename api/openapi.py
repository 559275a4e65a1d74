"""The OpenAPI document, completed with what every operation shares so clients can be generated
from it: problem+json error bodies, the errors that authentication, validation and rate
limiting can give any operation, the `Idempotency-Key` header of POSTs and the `X-Request-ID`
header of every response. Routes declare only their own errors (`errors(404, 409)`)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from .problems import PROBLEM_JSON


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; `type` is stable per kind of error."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:metalplane:problem:not-found"])
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Validation errors (422): location, message, type"
    )


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own problem answers (bodies are filled in below)."""
    return {code: {"description": HTTPStatus(code).phrase} for code in codes}


_PROBLEM = {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
_REQUEST_ID = {
    "X-Request-ID": {
        "description": "Our id of the request: in the logs and the audit log",
        "schema": {"type": "string"},
    },
    "X-Client-Request-ID": {
        "description": "The caller's X-Request-ID, echoed (recorded beside ours)",
        "schema": {"type": "string"},
    },
}
_AUTHENTICATED = {
    "401": "Missing, invalid or expired bearer token",
    "403": "Denied by the policy",
    "429": "Rate limit of the caller exceeded; retry after `Retry-After` seconds",
    "503": "The token issuer cannot be reached; retry after `Retry-After` seconds",
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes the POST safe to retry: the same key and body replay the first "
    "answer (`Idempotent-Replayed: true`); the same key with another body is a 422.",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}


def _complete(operation: dict[str, Any], method: str) -> None:
    answers: dict[str, Any] = operation.setdefault("responses", {})
    if operation.get("security"):
        for code, description in _AUTHENTICATED.items():
            answers.setdefault(code, {"description": description})
    answers.setdefault("422", {"description": "The request is not valid"})
    answers.setdefault(
        "400", {"description": "A path, query or header value is not UTF-8, has control "
                "characters or is too long; or the body is not JSON"},
    )  # fmt: skip
    if "requestBody" in operation:
        answers.setdefault("413", {"description": "The body is larger than the API takes"})
    if method == "post":
        operation.setdefault("parameters", []).append(_IDEMPOTENCY_KEY)
        answers.setdefault("400", {"description": "Malformed Idempotency-Key"})
        answers.setdefault("409", {"description": "A request with this Idempotency-Key runs"})
    for code, answer in answers.items():
        if code.isdigit() and int(code) >= 400:
            answer["content"] = {PROBLEM_JSON: _PROBLEM}
            if code in ("429", "503", "409"):
                answer.setdefault("headers", {}).update(_RETRY_AFTER)
        answer.setdefault("headers", {}).update(_REQUEST_ID)


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            for path_item in document.get("paths", {}).values():
                for method, operation in path_item.items():
                    _complete(operation, method)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["ProblemDetails"] = ProblemDetails.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
