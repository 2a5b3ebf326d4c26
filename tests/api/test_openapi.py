"""The OpenAPI document says what the service answers; /docs and /redoc work without a CDN.

Besides these tests, every client made by ``tests.support.running_app`` checks each status it
received against the document when its test ends, so the whole API suite keeps the document honest.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ai_med_extract.api.openapi import api_routes, route_access
from ai_med_extract.config import Settings
from ai_med_extract.security.role import Role
from tests.support import running_app

ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"


async def _key(client: httpx.AsyncClient, role: Role) -> str:
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session, session.begin():
        _, token = await services.keys.create(session, name=f"docs-{role.value}", role=role)
    return str(token)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


@pytest.fixture
async def schema(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def test_schema_declares_the_api_key_scheme_on_every_route_that_needs_a_key(
    client: httpx.AsyncClient, schema: dict[str, Any]
) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    by_path = {(m, r.path_format): r for r in api_routes(client.app) for m in r.methods or ()}  # type: ignore[attr-defined]
    for method, path, operation in _operations(schema):
        needs_key, _ = route_access(by_path[(method, path)])
        if needs_key:
            assert {"ApiKey": []} in operation["security"], (method, path)
            assert {"401", "429"} <= set(operation["responses"]), (method, path)
        else:
            assert operation["security"] == [], (method, path)
    public = {p for m, p, op in _operations(schema) if not op["security"]}
    assert public == {"/health/live", "/health/ready", "/metrics"}


async def test_every_error_response_is_the_envelope_never_fastapis_detail(schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    for method, path, operation in _operations(schema):
        assert "500" in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if int(status) < 400 or (path, status) == ("/health/ready", "503"):
                continue
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": ENVELOPE_REF}, (method, path, status)
            assert set(media["example"]["error"]) == {"code", "message", "details"}


async def test_rate_limit_headers_are_documented_beside_retry_after(schema: dict[str, Any]) -> None:
    upload = schema["paths"]["/upload"]["post"]["responses"]
    assert {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(upload["429"]["headers"])
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(upload["202"]["headers"])


@pytest.mark.parametrize("path", ["/generate_patient_summary", "/generate_soap_note"])
async def test_summary_endpoints_document_their_request_body_with_an_example(
    schema: dict[str, Any], path: str
) -> None:
    media = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    body_schema = schema["components"]["schemas"][media["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(media["example"]) <= set(body_schema["properties"])
    assert "model" in body_schema["properties"]


async def test_docs_and_redoc_are_served_from_local_assets_under_a_csp(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert "http://" not in response.text and "https://" not in response.text  # no CDN
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "http" not in csp and "unsafe-eval" not in csp
        assets = re.findall(r'(?:src|href)="(/[^"]+)"', response.text)
        assert assets
        for asset in assets:
            served = await client.get(asset)
            assert served.status_code == 200 and len(served.content) > 100, asset
    assert (await client.get("/docs/assets/elsewhere.js")).status_code == 404


async def test_documented_errors_are_answered_as_documented(
    settings_factory: Callable[..., Settings],
) -> None:
    """Walk every operation: without a key, with a key whose role is too low, with a malformed request.

    Each answer is an envelope whose status the operation documents (running_app checks the
    statuses; this test checks the bodies and that each kind of answer was provoked).
    """
    async with running_app(settings_factory(security={"auth_enabled": True})) as client:
        schema = client.app.openapi()  # type: ignore[attr-defined]
        reader = {"X-API-Key": await _key(client, Role.reader)}
        admin = {"X-API-Key": await _key(client, Role.admin)}
        provoked: dict[str, set[int]] = {"no key": set(), "role": set(), "malformed": set()}
        for method, path, operation in _operations(schema):
            if not operation["security"]:
                continue
            url = _fill(path)
            bodies: list[dict[str, Any]] = [{}]
            if method in ("POST", "PUT"):
                bodies = [{"json": {"unexpected": True}} if "requestBody" in operation
                          and "application/json" in operation["requestBody"]["content"] else {}]
            attempts = [("no key", {}), ("malformed", admin)]
            if "403" in operation["responses"]:
                attempts.append(("role", reader))
            for kind, headers in attempts:
                for body in bodies:
                    response = await client.request(method, url, headers=headers, **body)
                    if response.status_code >= 400:
                        error = response.json()["error"]
                        assert set(error) == {"code", "message", "details"}, (method, path)
                        provoked[kind].add(response.status_code)
    assert provoked["no key"] == {401}
    assert provoked["role"] == {403}
    assert provoked["malformed"] >= {404, 422}
