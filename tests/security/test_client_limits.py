"""Client identity and request limits: trusted proxies, the shared limiter, bodies refused unread."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from limits import RateLimitItemPerSecond
from sqlalchemy import select

from ai_med_extract.config import RateLimitSettings
from ai_med_extract.db.tables import AuditLog
from ai_med_extract.security.clients import resolve_client
from ai_med_extract.security.ratelimit import BoundedMemoryStorage, RateLimiter
from ai_med_extract.security.role import Role
from tests.support import running_app

MISSING_JOB = "/job/00000000-0000-0000-0000-000000000000"
MB = 1024 * 1024


async def _audit_rows(client: httpx.AsyncClient) -> list[AuditLog]:
    async with client.app.state.services.sessionmaker() as session:  # type: ignore[attr-defined]
        return list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())


# -- who the client is ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "header", "trusted", "expected"),
    [
        ("127.0.0.1", ["6.6.6.6"], [], "127.0.0.1"),  # loopback is not trusted by default
        ("203.0.113.9", ["6.6.6.6"], ["10.0.0.0/8"], "203.0.113.9"),  # untrusted peer: header ignored
        ("10.1.2.3", ["198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),
        # a client-written first hop is skipped: the right-most untrusted hop is the client
        ("10.1.2.3", ["6.6.6.6, 198.51.100.7, 10.9.9.9"], ["10.0.0.0/8"], "198.51.100.7"),
        ("10.1.2.3", ["6.6.6.6", "198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),  # several headers
        ("10.1.2.3", ["not-an-ip"], ["10.0.0.0/8"], "10.1.2.3"),
        ("::ffff:10.1.2.3", ["2001:db8::5"], ["10.0.0.0/8"], "2001:db8::5"),
        ("10.1.2.3", [], ["10.0.0.0/8"], "10.1.2.3"),
    ],
)
def test_forwarded_for_is_read_only_from_trusted_proxies(
    peer: str, header: list[str], trusted: list[str], expected: str
) -> None:
    assert resolve_client(peer, header, trusted) == expected


async def test_a_forged_forwarded_for_from_an_untrusted_peer_neither_escapes_the_limit_nor_reaches_the_audit(
    settings_factory: Any,
) -> None:
    settings = settings_factory(security={"rate_limit": {"enabled": True, "per_ip_per_minute": 3, "burst": 100}})
    async with running_app(settings) as client:
        codes = [
            (await client.get(MISSING_JOB, headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
            for i in range(4)
        ]
        rows = await _audit_rows(client)
    assert codes == [404, 404, 404, 429]
    assert {str(r.ip_address) for r in rows} == {"127.0.0.1"}


async def test_clients_behind_a_trusted_proxy_get_their_own_limits_and_addresses(settings_factory: Any) -> None:
    settings = settings_factory(security={
        "trusted_proxies": ["127.0.0.1/32"],
        "rate_limit": {"enabled": True, "per_ip_per_minute": 2, "burst": 100},
    })
    async with running_app(settings) as client:
        first = [(await client.get(MISSING_JOB, headers={"X-Forwarded-For": "198.51.100.1"})).status_code
                 for _ in range(3)]
        second = (await client.get(MISSING_JOB, headers={"X-Forwarded-For": "198.51.100.2"})).status_code
        rows = await _audit_rows(client)
    assert first == [404, 404, 429] and second == 404
    assert {str(r.ip_address) for r in rows if r.response_status == 404} == {"198.51.100.1", "198.51.100.2"}


# -- the limiter ----------------------------------------------------------------------------------
async def test_the_in_memory_limiter_forgets_clients_whose_windows_expired() -> None:
    storage = BoundedMemoryStorage()
    limiter = RateLimiter(RateLimitSettings(), storage, key_prefix="t")
    limiter.add_scope("tick", RateLimitItemPerSecond(5, namespace="t-tick"))
    for i in range(20_000):
        assert (await limiter.hit_all([("tick", f"client-{i}")])).allowed
    assert 0 < storage.counters() <= 40_000  # at most two counters a client (fewer once some expired)
    await asyncio.sleep(2.2)  # let every 1-s window (kept for two spans) expire
    await limiter.hit_all([("tick", "late-client")])
    assert storage.counters() <= 2


@pytest.fixture
async def redis_limiters() -> AsyncIterator[tuple[RateLimiter, RateLimiter]]:
    settings = RateLimitSettings(
        per_ip_per_minute=3, burst=100, redis_url="redis://127.0.0.1:6379/15",
        redis_key_prefix=f"ame-test-{uuid.uuid4().hex[:8]}",
    )
    one, two = RateLimiter.from_settings(settings), RateLimiter.from_settings(settings)
    yield one, two
    await one.reset()
    await one.close()
    await two.close()


async def test_replicas_share_their_counts_through_redis(redis_limiters: tuple[RateLimiter, RateLimiter]) -> None:
    one, two = redis_limiters
    decisions = [await one.hit("203.0.113.5", None), await two.hit("203.0.113.5", None),
                 await one.hit("203.0.113.5", None), await two.hit("203.0.113.5", None)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after >= 1 and decisions[3].headers()["Retry-After"]
    assert (await two.hit("203.0.113.6", None)).allowed  # another client is not affected


async def test_the_service_uses_redis_when_configured(settings_factory: Any) -> None:
    prefix = f"ame-test-{uuid.uuid4().hex[:8]}"
    rate = {"enabled": True, "per_ip_per_minute": 2, "burst": 100,
            "redis_url": "redis://127.0.0.1:6379/15", "redis_key_prefix": prefix}
    async with running_app(settings_factory(security={"rate_limit": rate})) as a, \
            running_app(settings_factory(security={"rate_limit": rate})) as b:
        codes = [(await a.get(MISSING_JOB)).status_code, (await b.get(MISSING_JOB)).status_code,
                 (await a.get(MISSING_JOB)).status_code]
        await a.app.state.services.limiter.reset()  # type: ignore[attr-defined]
    assert codes == [404, 404, 429]


# -- bodies ---------------------------------------------------------------------------------------
class BodyMeter:
    """Wraps an ASGI app and counts the body bytes the app actually pulled from the client."""

    def __init__(self, app: Any):
        self.app = app
        self.consumed = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.consumed += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


async def _chunks(total: int, piece: bytes = b"a" * MB) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = piece[: total - sent]
        sent += len(chunk)
        yield chunk


def _multipart(boundary: str, size: int) -> tuple[bytes, AsyncIterator[bytes], bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, _chunks(size), tail


async def _multipart_stream(boundary: str, size: int) -> AsyncIterator[bytes]:
    head, body, tail = _multipart(boundary, size)
    yield head
    async for chunk in body:
        yield chunk
    yield tail


@pytest.fixture
async def metered(settings_factory: Any) -> AsyncIterator[tuple[httpx.AsyncClient, BodyMeter, str]]:
    settings = settings_factory(security={"auth_enabled": True}, upload={"max_bytes": 2 * MB},
                                summary={"max_record_bytes": 1000})
    async with running_app(settings) as plain:
        services = plain.app.state.services  # type: ignore[attr-defined]
        async with services.sessionmaker() as session, session.begin():
            _, token = await services.keys.create(session, name="uploader", role=Role.clinician)
        meter = BodyMeter(plain.app)  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=meter, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as client:
            client.app = plain.app  # type: ignore[attr-defined]
            yield client, meter, token


async def test_an_unauthenticated_40_mb_upload_is_refused_before_its_body_is_read(
    metered: tuple[httpx.AsyncClient, BodyMeter, str],
) -> None:
    client, meter, _ = metered
    boundary = "b" + uuid.uuid4().hex
    response = await client.post(
        "/upload", content=_multipart_stream(boundary, 40 * MB),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "AUTH_REQUIRED"
    assert meter.consumed == 0
    rows = await _audit_rows(client)
    assert rows[-1].action == "auth.failed" and rows[-1].response_status == 401
    assert rows[-1].request_data["path"] == "/upload"


async def test_a_file_over_the_limit_is_refused_while_it_streams(
    metered: tuple[httpx.AsyncClient, BodyMeter, str],
) -> None:
    client, meter, token = metered
    boundary = "b" + uuid.uuid4().hex
    response = await client.post(
        "/upload", content=_multipart_stream(boundary, 30 * MB),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "X-API-Key": token},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "FILE_TOO_LARGE"
    assert meter.consumed < 4 * MB  # stopped just past the 2 MB file limit, not at the 30 MB end


async def test_a_chunked_json_body_over_the_cap_is_413_and_not_read_to_the_end(
    metered: tuple[httpx.AsyncClient, BodyMeter, str],
) -> None:
    client, meter, token = metered
    response = await client.post(
        "/generate_patient_summary", content=_chunks(50 * MB, b"[" * MB),
        headers={"Content-Type": "application/json", "X-API-Key": token},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert meter.consumed < 3 * MB


def test_a_real_server_answers_401_to_an_anonymous_40_mb_upload_without_waiting_for_the_body(
    live_server: Any,
) -> None:
    with live_server(security={"auth_enabled": True}) as server:
        boundary = "b" + uuid.uuid4().hex
        request = (
            f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {40 * MB}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
            conn.sendall(request + b"a" * 65536)  # a sliver of the 40 MB: the answer must not wait for more
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                piece = conn.recv(65536)
                if not piece:
                    break
                answer += piece
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 401 " in status_line
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "AUTH_REQUIRED"
