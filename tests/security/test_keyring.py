"""One key per purpose, and rotating each purpose's key without breaking what was made before."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from typer.testing import CliRunner

from ai_med_extract.audit.trail import AuditEntry, AuditTrail
from ai_med_extract.cli import app as cli_app
from ai_med_extract.config import Settings
from ai_med_extract.db.tables import ApiKey, AuditLog
from ai_med_extract.security.keyring import Key, Keyring, Purpose, derive, fingerprint
from ai_med_extract.security.keys import KEY_PREFIX, KeyService
from ai_med_extract.security.role import Role
from tests.conftest import TEST_SECRET
from tests.support import running_app, wait_for_job

MASTER = TEST_SECRET.encode()


def test_every_purpose_gets_its_own_key_and_none_is_the_master_secret() -> None:
    ring = Keyring.from_secret(MASTER)
    keys = {p: ring.current(p) for p in Purpose}
    assert len({k.secret for k in keys.values()}) == len(Purpose)
    assert MASTER not in {k.secret for k in keys.values()}
    assert len({k.kid for k in keys.values()}) == len(Purpose)
    # the checkpoint key is the one checkpoints were signed with before key ids existed
    assert keys[Purpose.audit_checkpoint].secret == derive(MASTER, Purpose.audit_checkpoint, 1)


def test_a_rotated_key_differs_and_the_previous_one_is_still_found_by_its_id() -> None:
    ring = Keyring.from_secret(MASTER)
    old = ring.current(Purpose.audit_chain)
    new_ring = ring.rotated([Purpose.audit_chain])
    new = new_ring.current(Purpose.audit_chain)
    assert new.secret != old.secret and new.kid != old.kid and new.kid.startswith("v2-")
    assert new_ring.current(Purpose.phi) == ring.current(Purpose.phi)  # other purposes untouched
    assert new_ring.candidates(Purpose.audit_chain, old.kid) == [old]
    assert new_ring.candidates(Purpose.audit_chain, None) == [Key(None, MASTER)]  # rows from before key ids
    assert new_ring.candidates(Purpose.audit_chain, "v1-0000000000") == []  # a made-up id names no key
    other = Keyring.from_secret(b"another-master-secret-" + b"y" * 20)
    assert other.candidates(Purpose.audit_chain, old.kid) == []


def test_configured_keys_sign_with_the_first_and_verify_with_all(settings_factory: Callable[..., Settings]) -> None:
    first, second = "a" * 40, "b" * 40
    settings = settings_factory(security={"keys": {"audit_chain": [first, second]},
                                          "previous_secret_keys": ["p" * 40]})
    ring = Keyring.from_settings(settings, MASTER)
    current = ring.current(Purpose.audit_chain)
    assert current.secret == first.encode() and current.kid.startswith("c-")
    previous = Key(f"c-{fingerprint(second.encode())}", second.encode())
    assert ring.candidates(Purpose.audit_chain, previous.kid) == [previous]  # the older key still verifies
    assert [k.secret for k in ring.candidates(Purpose.api_keys, None)] == [MASTER, b"p" * 40]
    with pytest.raises(ValueError, match="32\\+ characters"):
        settings_factory(security={"keys": {"phi": ["short"]}})
    assert isinstance(settings.security.keys.audit_chain[0], SecretStr)


class _BeforeKeyIds(Keyring):
    """Makes data as the service did before key ids: with the master secret itself."""

    def current(self, purpose: Purpose) -> Key:
        return Key(None, self.masters[0])


async def _legacy_data(client: httpx.AsyncClient) -> str:
    services = client.app.state.services  # type: ignore[attr-defined]
    token = KEY_PREFIX + "legacy-" + "z" * 30
    async with services.sessionmaker() as session, session.begin():
        session.add(ApiKey(name="legacy", prefix=token[:12], role=Role.clinician.value,
                           key_hash=hmac.new(MASTER, token.encode(), hashlib.sha256).hexdigest()))
        for n in range(2):
            await AuditTrail(_BeforeKeyIds(masters=(MASTER,))).append(session, AuditEntry(action=f"legacy.{n}"))
    return token


async def _upload(client: httpx.AsyncClient, token: str) -> dict[str, object]:
    client.headers["X-API-Key"] = token
    response = await client.post("/upload", files={"files": ("n.txt", b"note", "text/plain")},
                                 data={"scrub": "false", "extract": "false"})
    assert response.status_code == 202, response.text
    return await wait_for_job(client, response.json()["job_id"])


async def _key_ids(client: httpx.AsyncClient) -> tuple[dict[str, str | None], list[str | None]]:
    services = client.app.state.services  # type: ignore[attr-defined]
    async with services.sessionmaker() as session:
        keys = {r.name: r.key_id for r in (await session.execute(select(ApiKey))).scalars()}
        chain = list((await session.execute(select(AuditLog.key_id).order_by(AuditLog.id))).scalars())
    return keys, chain


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_rotating_each_purpose_keeps_keys_working_and_the_trail_verifiable(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    settings = settings_factory(security={"auth_enabled": True})
    for name, value in (("AME_ENVIRONMENT", "test"), ("AME_DATABASE__URL", database_url),
                        ("AME_STORAGE__DIRECTORY", str(settings.storage.directory)),
                        ("AME_STORAGE__ENCRYPTION_KEY", settings.storage.encryption_key.get_secret_value()),
                        ("AME_SECURITY__SECRET_KEY", TEST_SECRET)):
        monkeypatch.setenv(name, value)

    async def before() -> tuple[str, str, str | None]:
        async with running_app(settings) as client:
            legacy = await _legacy_data(client)
            services = client.app.state.services  # type: ignore[attr-defined]
            async with services.sessionmaker() as session, session.begin():
                _, token = await services.keys.create(session, name="v1", role=Role.clinician)
            assert (await _upload(client, legacy))["status"] == "completed"  # the old hash still authenticates
            assert (await _upload(client, token))["status"] == "completed"
            keys, chain = await _key_ids(client)
            phi_before = services.agents.phi.key_id
        v1 = Keyring.from_secret(MASTER).current(Purpose.api_keys).kid
        assert keys == {"legacy": v1, "v1": v1}  # the legacy key moved to the current hashing key on use
        assert chain[:2] == [None, None] and set(chain[2:]) == {Keyring.from_secret(MASTER).current(
            Purpose.audit_chain).kid}
        return legacy, token, phi_before

    legacy, token, phi_before = asyncio.run(before())
    _cli("audit", "checkpoint")
    assert "consistent with the checkpoint" in _cli("audit", "verify")

    for purpose in ("api-keys", "audit", "phi"):
        out = _cli("keys", "rotate", "--purpose", purpose)
        assert "-> v2-" in out and "restart" in out
    status = _cli("keys", "status")
    assert "api-keys: key v2-" in status and "(derived, version 2)" in status and "previous key" in status

    async def after() -> None:
        async with running_app(settings) as client:  # the restart that picks up the new keys
            services = client.app.state.services  # type: ignore[attr-defined]
            ring = services.keyring
            assert (await _upload(client, token))["status"] == "completed"  # issued before the rotation
            keys, chain = await _key_ids(client)
            assert keys["v1"] == ring.current(Purpose.api_keys).kid != keys["legacy"]  # re-hashed on use
            assert chain[-1] == ring.current(Purpose.audit_chain).kid and chain[-1].startswith("v2-")
            assert services.agents.phi.key_id.startswith("v2-") and services.agents.phi.key_id != phi_before
            rotations = [r for r in (await _rows(client)) if r.action == "keys.rotate"]
            assert [r.resource_id for r in rotations] == ["api-keys", "audit", "phi"]
            assert rotations[1].key_id == chain[-1]  # the audit rotation's row is the first of the new segment

    asyncio.run(after())
    verified = _cli("audit", "verify")
    assert "audit trail intact" in verified and "consistent with the checkpoint" in verified

    async def tamper(row_filter: str) -> None:
        async with running_app(settings) as client:
            async with client.app.state.services.engine.begin() as conn:  # type: ignore[attr-defined]
                if database_url.startswith("postgresql"):
                    await conn.execute(text("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only"))
                else:
                    await conn.execute(text("DROP TRIGGER IF EXISTS audit_logs_no_update"))
                await conn.execute(text(f"UPDATE audit_logs SET user_id = 'someone else' WHERE {row_filter}"))
                if database_url.startswith("postgresql"):
                    await conn.execute(text("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only"))

    asyncio.run(tamper("key_id LIKE 'v1-%' AND action = 'document.upload'"))  # the segment before rotation
    result = CliRunner().invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 1 and "the row was edited" in result.output and "TAMPERED" in result.output


async def _rows(client: httpx.AsyncClient) -> list[AuditLog]:
    async with client.app.state.services.sessionmaker() as session:  # type: ignore[attr-defined]
        return list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())


def test_a_configured_key_is_not_rotated_by_the_command(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    settings = settings_factory()
    monkeypatch.setenv("AME_DATABASE__URL", database_url)
    monkeypatch.setenv("AME_STORAGE__DIRECTORY", str(settings.storage.directory))
    monkeypatch.setenv("AME_SECURITY__SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("AME_SECURITY__KEYS__PHI", '["' + "q" * 40 + '"]')
    result = CliRunner().invoke(cli_app, ["keys", "rotate", "--purpose", "phi"])
    assert result.exit_code == 2 and "AME_SECURITY__KEYS__PHI" in result.output


def test_a_key_service_without_the_right_key_authenticates_nothing() -> None:
    async def run() -> None:
        service = KeyService(Keyring.from_secret(MASTER))
        row = ApiKey(name="x", prefix="ame_abcdefgh", key_hash="0" * 64, key_id="v1-0000000000", role="reader")
        assert service._matches(row, "ame_abcdefgh" + "x" * 30) is False

    asyncio.run(run())
