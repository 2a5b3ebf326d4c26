"""Test helpers shared by the whole suite (import as ``from tests.support import ...``)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jiwer

from ai_med_extract.app import create_app
from ai_med_extract.config import Settings


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan and give an HTTP client bound to it (``client.app`` is the app).

    Every answer the client receives is checked against the app's OpenAPI document when the test
    leaves the block: a status that the route does not document fails the test.
    """
    app = create_app(settings)
    recorder = StatusRecorder(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=120, event_hooks={"response": [recorder]}
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client
    undocumented = recorder.undocumented()
    assert not undocumented, f"answers the OpenAPI document does not list: {undocumented}"


class StatusRecorder:
    """Records (method, route, status) of each answer and names those the OpenAPI document lacks."""

    def __init__(self, app: Any):
        from ai_med_extract.api.openapi import api_routes

        self.app = app
        self.routes = []
        for route in api_routes(app):
            if not route.include_in_schema:
                continue
            pattern = re.sub(r"\{[^}:]+:path\}", ".*", route.path_format)
            pattern = re.sub(r"\{[^}]+\}", "[^/]+", pattern)
            self.routes.append((re.compile(f"^{pattern}$"), route.path_format, set(route.methods or ())))
        self.seen: set[tuple[str, str, int]] = set()

    def route_of(self, method: str, path: str) -> str | None:
        for pattern, template, methods in self.routes:
            if method in methods and pattern.match(path):
                return template
        return None

    async def __call__(self, response: httpx.Response) -> None:
        template = self.route_of(response.request.method, response.request.url.path)
        if template is not None:
            self.seen.add((response.request.method, template, response.status_code))

    def undocumented(self) -> list[str]:
        paths = self.app.openapi()["paths"]
        missing = []
        for method, template, status in sorted(self.seen):
            responses = paths.get(template, {}).get(method.lower(), {}).get("responses", {})
            if str(status) not in responses:
                missing.append(f"{method} {template} -> {status}")
        return missing


async def wait_for_job(client: httpx.AsyncClient, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll GET /job/{id} until the job is terminal."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/job/{job_id}")
        response.raise_for_status()
        body = response.json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {body['status']} after {timeout} s")
        await asyncio.sleep(0.05)


def parse_sse(raw: str) -> list[dict[str, Any]]:
    """Split an SSE body into events: [{"event", "id", "data"}] (comments and pings dropped)."""
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        data_lines = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data_lines.append(value)
            else:
                fields[name] = value
        if data_lines:
            fields["data"] = json.loads("\n".join(data_lines))
            events.append(fields)
    return events


# -- a real HTTP server (for streaming, disconnects and browsers) -----------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, settings: Settings):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)




# -- model output: compared with margins, never word for word --------------------------------------
# Speech and OCR models decode differently on different CPUs (SIMD kernels change greedy decoding),
# so a test compares their output with the text that was spoken or printed, within a bound.
SPEECH_MAX_WER = 0.35  # espeak's robotic voice through Whisper tiny: a pessimistic bound
PIPELINE_MAX_WER = 0.5  # tests of the job plumbing around speech: wider still, any CPU, any codec
OCR_MAX_CER = 0.1  # Tesseract on clean rendered lines
PAGE_MAX_WER = 0.6  # the web page shows what the service heard; speech quality has its own tests


def normalized(text: str) -> str:
    """Lower case, punctuation to spaces, whitespace collapsed: what an error rate is counted on."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after normalisation (1.0 if it is empty)."""
    reference, hypothesis = normalized(reference), normalized(hypothesis)
    if not hypothesis:
        return 0.0 if not reference else 1.0
    return float(jiwer.wer(reference, hypothesis))


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Character error rate after normalisation (1.0 if the hypothesis is empty and the reference not)."""
    reference, hypothesis = normalized(reference), normalized(hypothesis)
    if not hypothesis or not reference:
        return 0.0 if reference == hypothesis else 1.0
    return float(jiwer.cer(reference, hypothesis))


def assert_heard(reference: str, hypothesis: str, max_wer: float = SPEECH_MAX_WER) -> None:
    """The transcript is within ``max_wer`` of the spoken script."""
    rate = word_error_rate(reference, hypothesis)
    assert rate <= max_wer, f"WER {rate:.2f} > {max_wer}: heard {hypothesis!r}"


def assert_read(reference: str, hypothesis: str, max_cer: float = OCR_MAX_CER) -> None:
    """OCR output is within ``max_cer`` of the printed text, page by page (pages joined by a blank line)."""
    expected_pages, read_pages = reference.split("\n\n"), hypothesis.split("\n\n")
    assert len(read_pages) == len(expected_pages), f"{len(read_pages)} pages read, {len(expected_pages)} printed"
    for expected, read in zip(expected_pages, read_pages, strict=True):
        expected_lines = [line for line in expected.split("\n") if line.strip()]
        read_lines = [line for line in read.split("\n") if line.strip()]
        assert len(read_lines) == len(expected_lines), f"lines read {read_lines!r}"
        rate = character_error_rate(expected, read)
        assert rate <= max_cer, f"CER {rate:.2f} > {max_cer}: read {read!r}"
