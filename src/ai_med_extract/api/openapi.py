"""The OpenAPI document, made to say what the service really answers.

FastAPI's generated schema knows the routes' parameters and success models. This module adds what it
cannot see: the API-key security scheme on every route behind ``authenticate``, the error envelope
``{"error": {"code", "message", "details"}}`` for each 4xx/5xx a route can answer (FastAPI's
``{"detail": ...}`` validation schema is never what this service sends), the request bodies of the
routes that read their JSON themselves, the rate-limit headers, and examples.

What a route can answer beyond the shared statuses is listed once, in ``ROUTE_ERRORS``; the test
suite checks each status a route answers against this document.

``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) are served from assets installed with the package
``fastapi-offline`` (no CDN), under a Content-Security-Policy of their own.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, Field

from ai_med_extract.api import deps
from ai_med_extract.errors import NotFound
from ai_med_extract.security.role import Role

API_KEY_SCHEME = "ApiKey"
BEARER_SCHEME = "Bearer"
ENVELOPE = "ErrorEnvelope"


class ErrorInfo(BaseModel):
    code: str = Field(..., description="Stable machine-readable code, e.g. JOB_NOT_FOUND")
    message: str = Field(..., description="Human-readable; never contains patient data")
    details: dict[str, Any] = Field(default_factory=dict, description="Sizes, limits, ids, field locations")


class ErrorEnvelope(BaseModel):
    """Every error the service answers, whatever the status."""

    error: ErrorInfo


# What each status means here, and the codes every route shares for it.
STATUS_TEXT = {
    400: "The request is malformed",
    401: "No API key, or one that is not valid",
    403: "The API key's role does not allow this",
    404: "The resource does not exist",
    409: "The resource is in a state that does not allow this",
    412: "The resource changed since the version named in If-Match",
    413: "The request or one of its files is larger than the limit",
    415: "The file is not of a supported kind",
    422: "The request does not validate, or its content cannot be processed",
    429: "Rate limit exceeded; retry after Retry-After seconds",
    500: "Internal error; the message never carries exception text",
    503: "A component this request needs is not available",
    504: "The work took longer than its time limit",
}
SHARED_CODES = {
    401: ("AUTH_REQUIRED", "AUTH_INVALID"),
    403: ("ROLE_REQUIRED",),
    413: ("PAYLOAD_TOO_LARGE",),
    422: ("VALIDATION_ERROR",),
    429: ("RATE_LIMITED",),
    500: ("INTERNAL_ERROR",),
}
_MODEL_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("UNSUPPORTED_BY_MODEL",),
    404: ("MODEL_NOT_FOUND",),
    422: ("CONTEXT_OVERFLOW",),
    503: ("MODEL_POOL_UNAVAILABLE", "MODEL_LOAD_FAILED", "MODEL_BUSY", "DOWNLOAD_DISABLED"),
    504: ("GENERATION_TIMEOUT",),
}
_UPLOAD_CONTENT_ERRORS: dict[int, tuple[str, ...]] = {
    413: ("FILE_TOO_LARGE",),
    415: ("UNSUPPORTED_FORMAT",),
    422: ("FILE_REQUIRED", "EMPTY_FILE", "CORRUPT_PDF", "CORRUPT_IMAGE", "CORRUPT_DOCX", "CORRUPT_AUDIO",
          "PDF_ENCRYPTED", "PDF_PASSWORD_INCORRECT", "AUDIO_TOO_LONG", "UNDECODABLE_TEXT"),
}


@dataclass(frozen=True)
class RouteDoc:
    """What one operation can answer beyond the shared statuses, and what the schema cannot infer."""

    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    request_body: type[BaseModel] | None = None
    request_example: dict[str, Any] | None = None
    headers: dict[int, dict[str, str]] = field(default_factory=dict)  # status -> header -> description
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)  # answers that are not the envelope


def _route_docs() -> dict[tuple[str, str], RouteDoc]:
    from ai_med_extract.api.routes.summary import SoapRequest, SummaryRequest

    job_404: dict[int, tuple[str, ...]] = {404: ("JOB_NOT_FOUND",)}
    return {
        ("POST", "/upload"): RouteDoc(
            errors={400: ("TOO_MANY_FILES",), **_UPLOAD_CONTENT_ERRORS, 503: ("OCR_UNAVAILABLE",)},
        ),
        ("GET", "/job/{job_id}"): RouteDoc(errors=job_404),
        ("GET", "/job/{job_id}/events"): RouteDoc(errors={**job_404, 400: ("INVALID_LAST_EVENT_ID",)}),
        ("DELETE", "/job/{job_id}"): RouteDoc(errors={**job_404, 409: ("JOB_NOT_CANCELLABLE",)}),
        ("POST", "/transcribe"): RouteDoc(
            errors={
                400: ("EMPTY_FILE",),
                413: ("FILE_TOO_LARGE",),
                415: ("NOT_AUDIO",),
                422: ("FILE_REQUIRED", "CORRUPT_AUDIO", "AUDIO_TOO_LONG"),
                503: ("SPEECH_UNAVAILABLE", "AUDIO_UNAVAILABLE"),
            },
            responses={202: {"description": "Audio longer than the inline limit, or `background=true`: a job "
                             "(`job_id`, its `events` URL, `Location` header) whose result is the transcript"}},
        ),
        ("POST", "/scrub_phi"): RouteDoc(errors={503: ("PHI_UNAVAILABLE",)}),
        ("POST", "/scrub_phi/reidentify"): RouteDoc(errors={404: ("PHI_MAPPING_NOT_FOUND",)}),
        ("POST", "/extract_medical_data"): RouteDoc(
            errors={
                404: ("DOCUMENT_NOT_FOUND", "MODEL_NOT_FOUND"),
                422: ("DOCUMENT_NOT_PROCESSED", "DOCUMENT_HAS_NO_TEXT"),
                503: ("MEDICAL_UNAVAILABLE", "MEDICAL_LLM_UNAVAILABLE"),
            }
        ),
        ("GET", "/get_updated_medical_data"): RouteDoc(
            errors={400: ("MEDICAL_QUERY_INVALID",), 404: ("MEDICAL_RECORD_NOT_FOUND", "MEDICAL_VERSION_NOT_FOUND")},
            headers={200: {"ETag": "The record's version, for If-Match on PUT /update_medical_data"}},
        ),
        ("GET", "/medical/{record_id}/fhir"): RouteDoc(
            errors={404: ("MEDICAL_RECORD_NOT_FOUND", "MEDICAL_VERSION_NOT_FOUND")},
        ),
        ("PUT", "/update_medical_data"): RouteDoc(
            errors={
                400: ("MEDICAL_VERSION_REQUIRED",),
                404: ("MEDICAL_RECORD_NOT_FOUND",),
                409: ("MEDICAL_VERSION_CONFLICT",),
                412: ("MEDICAL_PRECONDITION_FAILED",),
                422: ("MEDICAL_DATA_INVALID", "MEDICAL_ITEM_NOT_GROUNDED"),
            },
            headers={200: {"ETag": "The new version"}},
        ),
        ("POST", "/generate_patient_summary"): RouteDoc(
            errors={
                400: ("EMPTY_BODY", "INVALID_JSON", "RECORD_MISSING", "NOT_AN_UPLOAD_JOB"),
                404: ("JOB_NOT_FOUND", "MODEL_NOT_FOUND"),
                409: ("JOB_NOT_COMPLETED",),
                413: ("RECORD_TOO_LARGE",),
                422: ("REQUEST_INVALID", "RECORD_MISSING"),
                503: ("SUMMARY_UNAVAILABLE",),
            },
            request_body=SummaryRequest,
            request_example={
                "patient_data": {"resourceType": "Bundle", "type": "collection", "entry": []},
                "model": "template",
                "deidentify": True,
                "grounding": "flag",
            },
        ),
        ("POST", "/generate_soap_note"): RouteDoc(
            errors={
                400: ("EMPTY_BODY", "INVALID_JSON"),
                404: ("MODEL_NOT_FOUND",),
                413: ("RECORD_TOO_LARGE",),
                422: ("REQUEST_INVALID", "TRANSCRIPT_EMPTY", "TRANSCRIPT_INVALID", "TRANSCRIPT_TOO_LONG"),
                503: ("SUMMARY_UNAVAILABLE",),
            },
            request_body=SoapRequest,
            request_example={
                "transcript": {"segments": [
                    {"text": "Doctor: what brings you in today?", "start_s": 0.0, "end_s": 2.1},
                    {"text": "Patient: a dry cough for three days.", "start_s": 2.1, "end_s": 4.8},
                ]},
                "model": "template",
            },
        ),
        ("POST", "/api/load_model"): RouteDoc(errors=_MODEL_ERRORS),
        ("GET", "/api/model_info"): RouteDoc(errors=_MODEL_ERRORS),
        ("POST", "/api/switch_model"): RouteDoc(errors=_MODEL_ERRORS),
        ("POST", "/api/generate_summary"): RouteDoc(errors=_MODEL_ERRORS),
        ("POST", "/api/patient_summary_openvino"): RouteDoc(errors=_MODEL_ERRORS),
        ("GET", "/api/whoami"): RouteDoc(),
        ("GET", "/health/ready"): RouteDoc(responses={503: _NOT_READY}),
    }


_NOT_READY = {
    "description": "A check failed: the same body as the 200, with status `not_ready` (not the error envelope)",
    "content": {"application/json": {
        "schema": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            "timestamp": {"type": "string", "format": "date-time"},
        }},
        "example": {"status": "not_ready", "checks": {"database": "error", "file_storage": "ok"},
                    "timestamp": "2026-01-01T00:00:00+00:00"},
    }},
}

RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "Requests allowed in the current window",
    "RateLimit-Remaining": "Requests left in the current window",
    "RateLimit-Reset": "Seconds until the window resets",
}


def _calls(dependant: Dependant) -> list[Any]:
    found = [dependant.call]
    for sub in dependant.dependencies:
        found.extend(_calls(sub))
    return found


def api_routes(app: FastAPI) -> list[RouteContext]:
    """Every API route of the app with its effective path (included routers' prefixes applied)."""
    return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]


def route_access(route: APIRoute | RouteContext) -> tuple[bool, Role | None]:
    """Whether a route needs an API key, and the role it asks for (read from its dependencies)."""
    calls = _calls(route.dependant)
    needs_key = deps.authenticate in calls
    roles = []
    for call in calls:
        if call is None or getattr(call, "__qualname__", "") != "require_role.<locals>.dependency":
            continue
        needed = inspect.getclosurevars(call).nonlocals.get("needed")
        if isinstance(needed, Role):
            roles.append(needed)
    order = list(Role)
    return needs_key, max(roles, key=order.index) if roles else None


def _error_response(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    example_code = codes[0] if codes else "HTTP_ERROR"
    description = STATUS_TEXT.get(status, "Error")
    if codes:
        description += ". Codes: " + ", ".join(f"`{c}`" for c in codes)
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{ENVELOPE}"},
                "example": {"error": {"code": example_code, "message": STATUS_TEXT.get(status, "error").lower(),
                                      "details": {}}},
            }
        },
    }


def _header_objects(described: dict[str, str]) -> dict[str, Any]:
    return {name: {"description": text, "schema": {"type": "integer" if name != "ETag" else "string"}}
            for name, text in described.items()}


def _merge_codes(target: dict[int, list[str]], extra: dict[int, tuple[str, ...]]) -> None:
    for status, codes in extra.items():
        bucket = target.setdefault(status, [])
        bucket.extend(c for c in codes if c not in bucket)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (ErrorInfo, ErrorEnvelope):
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components["securitySchemes"] = {
        API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": "X-API-Key",
                         "description": "A key made by `ai-med-extract keys create` (shown once)"},
        BEARER_SCHEME: {"type": "http", "scheme": "bearer", "description": "The same key as a bearer token"},
    }
    docs = _route_docs()
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        needs_key, role = route_access(route)
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            doc = docs.get((method, str(route.path_format)), RouteDoc())
            _document_operation(operation, method, needs_key=needs_key, role=role, doc=doc,
                                has_params=bool(route.dependant.path_params or route.dependant.query_params
                                                or route.dependant.header_params or route.body_field))
            if doc.request_body is not None:
                name = doc.request_body.__name__
                key = f"{route.name}_{name}"
                schemas[key] = doc.request_body.model_json_schema(ref_template="#/components/schemas/{model}")
                for sub_name, sub in schemas[key].pop("$defs", {}).items():
                    schemas.setdefault(sub_name, sub)
                media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{key}"}}
                if doc.request_example is not None:
                    media["example"] = doc.request_example
                operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def _document_operation(operation: dict[str, Any], method: str, *, needs_key: bool, role: Role | None,
                        doc: RouteDoc, has_params: bool) -> None:
    errors: dict[int, list[str]] = {500: list(SHARED_CODES[500])}
    if needs_key:
        operation["security"] = [{API_KEY_SCHEME: []}, {BEARER_SCHEME: []}]
        errors[401] = list(SHARED_CODES[401])
        errors[429] = list(SHARED_CODES[429])
        if role is not None and role is not Role.reader:
            errors[403] = list(SHARED_CODES[403])
            operation["description"] = (operation.get("description", "") + f"\n\nNeeds the `{role.value}` role.").strip()
    else:
        operation["security"] = []
    if has_params or method in ("POST", "PUT"):
        errors[422] = list(SHARED_CODES[422])
    if method in ("POST", "PUT"):
        errors[413] = list(SHARED_CODES[413])
    _merge_codes(errors, doc.errors)
    responses = operation.setdefault("responses", {})
    for status in sorted(errors):
        responses[str(status)] = _error_response(status, tuple(errors[status]))
    for status, response in doc.responses.items():
        responses[str(status)] = response
    if needs_key:
        responses["429"]["headers"] = _header_objects(
            {"Retry-After": "Seconds to wait before retrying", **RATE_LIMIT_HEADERS}
        )
    for status_text, response in responses.items():
        if status_text.startswith("2"):
            headers = dict(RATE_LIMIT_HEADERS) if needs_key else {}
            headers.update(doc.headers.get(int(status_text), {}))
            if headers:
                response.setdefault("headers", {}).update(_header_objects(headers))


# -- /docs and /redoc from local assets --------------------------------------------------------------
# Swagger UI and ReDoc render with inline styles (ReDoc's styled-components add <style> elements) and
# ReDoc's search runs in a worker made from a blob: URL, so these two pages get a CSP of their own;
# scripts still come only from this server.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'"
)
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} - Swagger UI</title>
  <link rel="icon" href="/docs/assets/favicon.png">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/static/api-docs.js"></script>
</body>
</html>
"""
_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} - ReDoc</title>
  <link rel="icon" href="/docs/assets/favicon.png">
</head>
<body>
  <redoc spec-url="{openapi_url}"></redoc>
  <script src="/docs/assets/redoc.standalone.js"></script>
</body>
</html>
"""


def assets_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """Serve the truthful schema at /openapi.json and its two viewers at /docs and /redoc."""
    app.openapi = lambda: app.openapi_schema or _cache(app)  # type: ignore[method-assign]
    openapi_url = app.openapi_url or "/openapi.json"
    headers = {"Content-Security-Policy": DOCS_CSP}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(_SWAGGER_PAGE.format(title=app.title, openapi_url=openapi_url), headers=headers)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC_PAGE.format(title=app.title, openapi_url=openapi_url), headers=headers)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise NotFound("no such file", code="STATIC_NOT_FOUND")
        return FileResponse(assets_dir() / name, media_type=ASSETS[name],
                            headers={"Cache-Control": "public, max-age=86400"})


def _cache(app: FastAPI) -> dict[str, Any]:
    app.openapi_schema = build_openapi(app)
    return app.openapi_schema
