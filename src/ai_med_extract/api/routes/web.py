"""The demo web page: ``GET /`` (index.html with the server's limits filled in) and ``GET /static/...``.

The page is three files under ``ai_med_extract/web/static`` (HTML, one script, one stylesheet) with no
third-party assets, so it works on a network without internet access and under the strict
Content-Security-Policy the middleware sends. ``GET /api/whoami`` lets the page check an API key.
"""

from __future__ import annotations

import html
import re
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from ai_med_extract.api.deps import ReaderDep, SettingsDep
from ai_med_extract.errors import NotFound

router = APIRouter()

_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\.(?:js|css|svg|ico|png)$")
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
}


def static_dir() -> Path:
    return Path(str(resources.files("ai_med_extract") / "web" / "static"))


def page_config(settings: Any) -> dict[str, str]:
    """What the page needs to know before its first request (no secrets)."""
    return {
        "auth": "on" if settings.security.auth_enabled else "off",
        "max-bytes": str(settings.upload.max_bytes),
        "max-files": str(settings.upload.max_files),
    }


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(settings: SettingsDep) -> HTMLResponse:
    page = (static_dir() / "index.html").read_text(encoding="utf-8")
    metas = "\n".join(
        f'  <meta name="ame-{name}" content="{html.escape(value)}">' for name, value in page_config(settings).items()
    )
    return HTMLResponse(page.replace("  <!-- server-config -->", metas, 1))


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    path = static_dir() / name
    if not _STATIC_NAME.match(name) or not path.is_file():
        raise NotFound("no such file", code="STATIC_NOT_FOUND")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix])


@router.get("/api/whoami", tags=["web"])
async def whoami(principal: ReaderDep, settings: SettingsDep) -> dict[str, Any]:
    """The caller's role: lets a client check an API key without touching patient data."""
    return {"role": principal.role.value, "tenant": principal.tenant, "auth_enabled": settings.security.auth_enabled}
