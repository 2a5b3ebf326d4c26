"""The page and its static files as the app serves them (no browser)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from ai_med_extract.api.routes.web import static_dir
from tests.support import running_app

STATIC = Path(static_dir())


async def test_index_carries_the_server_limits_and_loads_only_local_assets(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<meta name="ame-auth" content="off">' in page
    assert f'<meta name="ame-max-bytes" content="{50 * 1024 * 1024}">' in page
    assert "server-config" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, "the page references its script and stylesheet"
    assert all(s.startswith(("/static/", "#", "data:")) for s in sources), sources
    assert "content-security-policy" in response.headers


@pytest.mark.parametrize(
    ("name", "media_type"), [("app.js", "text/javascript"), ("app.css", "text/css")]
)
async def test_static_files_are_served_with_their_media_type(
    client: httpx.AsyncClient, name: str, media_type: str
) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.content == (STATIC / name).read_bytes()


@pytest.mark.parametrize("name", ["index.html", "..%2Fapp.py", "missing.js", ".hidden.css", "app.js.map"])
async def test_static_route_serves_nothing_outside_its_whitelist(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] in {"STATIC_NOT_FOUND", "NOT_FOUND"}


def test_the_page_stays_small_and_uses_no_remote_assets() -> None:
    files = sorted(p.name for p in STATIC.iterdir() if p.is_file())
    assert files == ["api-docs.js", "app.css", "app.js", "index.html"]
    total = sum((STATIC / f).stat().st_size for f in files)
    assert total < 100 * 1024, f"{total} bytes"
    for name in files:
        text = (STATIC / name).read_text(encoding="utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), name
        assert not re.search(r"\.(?:innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", text), name


def test_every_form_control_has_a_label() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', page))
    controls = re.findall(r"<(input|select|textarea)\b([^>]*)>", page)
    assert controls
    for tag, attrs in controls:
        ident = re.search(r'\bid="([^"]+)"', attrs)
        assert ident, f"{tag} without id"
        wrapped = re.search(rf'<label[^>]*>[^<]*<{tag}\b[^>]*id="{ident.group(1)}"', page)
        assert ident.group(1) in labelled or wrapped, f"{tag}#{ident.group(1)} has no label"


async def test_whoami_names_the_role_of_a_valid_key_and_refuses_a_missing_one(settings_factory) -> None:
    settings = settings_factory(security={"auth_enabled": True})
    async with running_app(settings) as client:
        page = await client.get("/")
        assert page.status_code == 200, "the page itself needs no key"
        assert '<meta name="ame-auth" content="on">' in page.text
        refused = await client.get("/api/whoami")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "AUTH_REQUIRED"
        services = client.app.state.services  # type: ignore[attr-defined]
        from ai_med_extract.security.role import Role

        async with services.sessionmaker() as session, session.begin():
            _, token = await services.keys.create(session, name="web-test", role=Role.clinician)
        accepted = await client.get("/api/whoami", headers={"X-API-Key": token})
        assert accepted.status_code == 200
        assert accepted.json() == {"role": "clinician", "tenant": None, "auth_enabled": True}
