"""No exception text in any log stream of a real ``serve`` process, whichever logger writes it.

The service is started as ``ai-med-extract serve`` in a child process, with two extra routes that
raise exceptions whose messages quote a patient's name: one inside a route (the app's handler and
Starlette's error middleware see it; uvicorn logs "Exception in ASGI application"), one in a
streaming body after the response started (only uvicorn sees it). Both streams of the child are read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_ENCRYPTION_KEY, TEST_SECRET
from tests.support import free_port

PLANTED = "Zebulon Quartermaine"
SERVE_WITH_FAILING_ROUTES = f'''
import sys
from fastapi.responses import StreamingResponse
import ai_med_extract.app as app_module

original = app_module.create_app

def create_app(settings=None):
    app = original(settings)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("lookup failed for patient {PLANTED} (SSN 123-45-6789)")

    @app.get("/boom-stream")
    async def boom_stream():
        async def body():
            yield b"partial"
            raise ValueError("row for {PLANTED} could not be encoded")
        return StreamingResponse(body())

    return app

app_module.create_app = create_app
from ai_med_extract.cli import app
app(["serve", "--port", sys.argv[1], "--host", "127.0.0.1"])
'''


@pytest.mark.parametrize("json_format", [True, False], ids=["json", "text"])
def test_exceptions_quoting_a_patient_never_reach_any_log_stream(tmp_path: Path, json_format: bool) -> None:
    port = free_port()
    env = {
        **os.environ,
        "AME_ENVIRONMENT": "test",
        "AME_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/db.sqlite",
        "AME_STORAGE__DIRECTORY": str(tmp_path / "storage"),
        "AME_STORAGE__ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "AME_SECURITY__SECRET_KEY": TEST_SECRET,
        "AME_SECURITY__AUTH_ENABLED": "false",
        "AME_LOGGING__LEVEL": "DEBUG",
        "AME_LOGGING__JSON_FORMAT": "true" if json_format else "false",
    }
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", SERVE_WITH_FAILING_ROUTES, str(port)], env=env,
                                stdout=stdout, stderr=stderr)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.3)
            failed = httpx.get(f"{base}/boom", timeout=30)
            assert failed.status_code == 500 and PLANTED not in failed.text
            assert failed.json()["error"]["code"] == "INTERNAL_ERROR"
            with pytest.raises(httpx.HTTPError):  # the stream breaks off after its first piece
                httpx.get(f"{base}/boom-stream", timeout=30).raise_for_status()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    logs = out.read_text(errors="replace") + err.read_text(errors="replace")
    assert "Exception in ASGI application" in logs  # uvicorn did log both failures ...
    assert "RuntimeError" in logs and "ValueError" in logs  # ... by type ...
    assert PLANTED not in logs and "Quartermaine" not in logs and "123-45-6789" not in logs  # ... never by text
