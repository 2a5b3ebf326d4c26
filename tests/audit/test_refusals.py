"""Refused requests in the audit trail: each 401, and 429s sampled so that a flood stays small."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ai_med_extract.audit.refusals import RefusalSampler
from ai_med_extract.db.tables import AuditLog
from tests.support import running_app

MISSING_JOB = "/job/00000000-0000-0000-0000-000000000000"


def test_the_sampler_keeps_powers_of_two_per_client_and_a_global_cap() -> None:
    sampler = RefusalSampler(max_rows_per_minute=6, clock=lambda: 120.0)
    kept = [sampler.decide("203.0.113.1", "ip") for _ in range(40)]
    assert [k["refused_this_minute"] for k in kept if k] == [1, 2, 4, 8, 16, 32]
    others = [sampler.decide(f"198.51.100.{i}", "ip") for i in range(5)]
    assert others == [None] * 5  # the minute's cap of 6 rows is spent
    sampler.clock = lambda: 180.0  # the next minute
    first = sampler.decide("198.51.100.9", "ip")
    assert first is not None and first["not_logged_before"] == 8 + 5  # the 33rd to 40th, and the five others


async def test_a_flood_of_rate_limited_requests_leaves_a_few_audit_rows(settings_factory: Any) -> None:
    settings = settings_factory(security={"auth_enabled": True,
                                          "rate_limit": {"enabled": True, "per_ip_per_minute": 2, "burst": 1000}})
    async with running_app(settings) as client:
        client.app.state.refusals.clock = lambda: 60.0  # type: ignore[attr-defined]  # one minute throughout
        codes = [(await client.get(MISSING_JOB, headers={"X-API-Key": "ame_wrong"})).status_code for _ in range(20)]
        async with client.app.state.services.sessionmaker() as session:  # type: ignore[attr-defined]
            rows = list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())
    assert codes == [401, 401] + [429] * 18
    failed = [r for r in rows if r.action == "auth.failed"]
    limited = [r for r in rows if r.action == "request.rate_limited"]
    assert [r.error_message for r in failed] == ["AUTH_INVALID", "AUTH_INVALID"]
    assert [r.request_data["refused_this_minute"] for r in limited] == [1, 2, 4, 8, 16]
    assert {str(r.ip_address) for r in failed + limited} == {"127.0.0.1"}
