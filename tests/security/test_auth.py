"""API keys, roles and rate limits."""

from __future__ import annotations

import httpx

from ai_med_extract.security.role import Role
from tests.support import running_app


async def _key(client: httpx.AsyncClient, role: Role) -> str:
    services = client.app.state.services
    async with services.sessionmaker() as session, session.begin():
        _, token = await services.keys.create(session, name=f"test-{role.value}", role=role)
    return token


async def test_missing_or_wrong_key_is_401(settings_factory) -> None:
    async with running_app(settings_factory(security={"auth_enabled": True})) as client:
        missing = await client.get("/job/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "AUTH_REQUIRED"
        wrong = await client.get("/job/00000000-0000-0000-0000-000000000000", headers={"X-API-Key": "ame_wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "AUTH_INVALID"


async def test_health_needs_no_key(settings_factory) -> None:
    async with running_app(settings_factory(security={"auth_enabled": True})) as client:
        assert (await client.get("/health/live")).status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "ok"


async def test_a_valid_key_works_in_either_header(settings_factory) -> None:
    async with running_app(settings_factory(security={"auth_enabled": True})) as client:
        token = await _key(client, Role.clinician)
        for headers in ({"X-API-Key": token}, {"Authorization": f"Bearer {token}"}):
            response = await client.post("/upload", files={"files": ("n.txt", b"x", "text/plain")}, headers=headers)
            assert response.status_code == 202


async def test_reader_cannot_upload_403(settings_factory) -> None:
    async with running_app(settings_factory(security={"auth_enabled": True})) as client:
        token = await _key(client, Role.reader)
        response = await client.post(
            "/upload", files={"files": ("n.txt", b"x", "text/plain")}, headers={"X-API-Key": token}
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "ROLE_REQUIRED"


async def test_revoked_key_is_refused(settings_factory) -> None:
    async with running_app(settings_factory(security={"auth_enabled": True})) as client:
        token = await _key(client, Role.admin)
        services = client.app.state.services
        async with services.sessionmaker() as session, session.begin():
            principal = await services.keys.authenticate(session, token)
            assert await services.keys.revoke(session, principal.key_id)
        response = await client.get("/job/00000000-0000-0000-0000-000000000000", headers={"X-API-Key": token})
        assert response.status_code == 401


async def test_the_101st_request_in_a_minute_is_429_with_retry_after(settings_factory) -> None:
    settings = settings_factory(security={"rate_limit": {"enabled": True, "burst": 1000}})
    async with running_app(settings) as client:
        for i in range(100):
            response = await client.get("/job/00000000-0000-0000-0000-000000000000")
            assert response.status_code == 404, (i, response.text)
            assert response.headers["ratelimit-limit"] == "100"
            assert int(response.headers["ratelimit-remaining"]) == 99 - i
            assert 0 <= int(response.headers["ratelimit-reset"]) <= 120
        response = await client.get("/job/00000000-0000-0000-0000-000000000000")
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "RATE_LIMITED"
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["ratelimit-remaining"] == "0"


async def test_a_burst_over_the_cap_is_429(settings_factory) -> None:
    settings = settings_factory(security={"rate_limit": {"enabled": True, "burst": 3}})
    async with running_app(settings) as client:
        # a sliding window counter may let up to twice the cap through across a second boundary
        codes = [(await client.get("/job/00000000-0000-0000-0000-000000000000")).status_code for _ in range(7)]
        assert codes[:3] == [404] * 3 and 429 in codes


async def test_per_key_hourly_limit(settings_factory) -> None:
    settings = settings_factory(
        security={"auth_enabled": True, "rate_limit": {"enabled": True, "per_key_per_hour": 5, "burst": 1000}}
    )
    async with running_app(settings) as client:
        token = await _key(client, Role.reader)
        codes = [
            (await client.get("/job/00000000-0000-0000-0000-000000000000", headers={"X-API-Key": token})).status_code
            for _ in range(6)
        ]
        assert codes == [404] * 5 + [429]


async def test_security_headers_and_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "req-12345678"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-xss-protection"] == "1; mode=block"
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert response.headers["x-request-id"] == "req-12345678"


async def test_cors_allows_only_configured_origins(settings_factory) -> None:
    async with running_app(settings_factory(security={"cors_origins": ["https://ehr.example"]})) as client:
        ok = await client.options(
            "/upload", headers={"Origin": "https://ehr.example", "Access-Control-Request-Method": "POST"}
        )
        assert ok.headers.get("access-control-allow-origin") == "https://ehr.example"
        other = await client.options(
            "/upload", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert other.headers.get("access-control-allow-origin") is None
