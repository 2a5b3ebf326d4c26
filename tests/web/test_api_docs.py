"""Swagger UI (/docs) and ReDoc (/redoc) render in Chromium from local assets, under their CSP."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .opblock-summary-path[data-path='/update_medical_data']"),
        ("/redoc", "[data-section-id^='tag/medical']"),
    ],
)
def test_api_docs_render_without_errors_or_outside_requests(
    live_server: Any, page: Any, shot: Any, path: str, rendered: str
) -> None:
    outside: list[str] = []
    local = ("http://127.0.0.1", "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    with live_server() as server:
        page.goto(server.url + path)
        page.wait_for_selector(rendered, timeout=60_000)
        shot(page, f"api-docs{path.replace('/', '-')}")
    # ReDoc's sidebar footer always asks for Redocly's logo from their CDN; the page's CSP
    # (img-src 'self' data:) refuses it before any request leaves, and ReDoc then hides the image.
    assert [u for u in outside if u != REDOC_LOGO] == []
    refused = [e for e in page.console_errors if "Content Security Policy" in e]
    assert all(REDOC_LOGO in e for e in refused), refused
    assert [e for e in page.console_errors if e not in refused] == [], page.console_errors
