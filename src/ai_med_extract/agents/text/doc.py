"""Word 97-2003 (.doc) with antiword (Debian package ``antiword``), run as a child process with a
time limit (``convert_timeout_s``) on a private temporary copy of the file. antiword refuses
documents with very little text; those are read by catdoc (Debian package ``catdoc``) instead.

Errors (stable codes): ``CORRUPT_DOC`` (422, antiword cannot read it), ``CONVERT_TIMEOUT`` (422),
``FORMAT_UNAVAILABLE`` (503, antiword is not installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator

from ai_med_extract.agents.text.base import ExtractionOutput, Extractor, Runner, Source, Step
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import ServiceUnavailable, Unprocessable

ANTIWORD = "antiword"
CATDOC = "catdoc"
_TOO_SMALL = b"too small"  # antiword's complaint about a document with very little text


class DocExtractor(Extractor):
    kind = DocumentKind.doc
    name = "antiword"
    isolated = True

    def __init__(self, settings: ExtractionSettings):
        self._timeout = settings.convert_timeout_s

    def is_available(self) -> bool:
        return shutil.which(ANTIWORD) is not None

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        text = await run(self.convert, source.data)
        out.pages = 1
        out.assembler.add(text, kind=SegmentKind.body, method=Method.text_layer)
        if not text.strip():
            out.warnings.append("PAGE_EMPTY:1")
        yield Step(1, 1, "part")

    def convert(self, data: bytes) -> str:
        """Blocking: the document's text, one paragraph a line (``-w 0``: no wrapping)."""
        binary = shutil.which(ANTIWORD)
        if binary is None:
            raise ServiceUnavailable(
                "this server does not read Word 97-2003 files", code="FORMAT_UNAVAILABLE", details={"kind": "doc"}
            )
        with tempfile.TemporaryDirectory(prefix="ame-doc-") as folder:
            path = os.path.join(folder, "input.doc")
            with open(path, "wb") as handle:
                handle.write(data)
            done = self._run([binary, "-w", "0", "-m", "UTF-8.txt", path], folder)
            catdoc = shutil.which(CATDOC)
            if done.returncode != 0 and _TOO_SMALL in done.stderr and catdoc is not None:
                done = self._run([catdoc, "-w", "-d", "utf-8", path], folder)
        if done.returncode != 0:
            raise Unprocessable("the Word 97-2003 file is corrupt or cannot be read", code="CORRUPT_DOC")
        text = done.stdout.decode("utf-8", errors="replace").replace("\x0c", "\n")
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        return "\n".join(line for line in lines if line.strip())

    def _run(self, command: list[str], folder: str) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                command,
                capture_output=True,
                timeout=self._timeout,
                check=False,
                env={"PATH": os.environ.get("PATH", ""), "HOME": folder},
            )
        except subprocess.TimeoutExpired:
            raise Unprocessable(
                "converting the document took too long", code="CONVERT_TIMEOUT", details={"timeout_s": self._timeout}
            ) from None
