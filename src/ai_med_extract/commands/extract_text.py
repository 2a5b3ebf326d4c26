"""`ai-med-extract extract-text FILE... [-o DIR] [--password PW]` (``-`` reads standard input).

Extracts the text of each file (PDF, DOCX, image, plain text, audio) with the text extraction agent.
With ``--output`` each FILE gives ``DIR/<name>.txt`` (the full text) and ``DIR/<name>.json`` (text,
segments with offsets, methods, confidence, metadata); without it the text goes to standard output.
A file that fails is reported on standard error with its error code and the others go on; the exit
status is 1 if any failed (commands/conventions.py). Outputs are written to a temporary name and renamed, never half-written.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import typer

from ai_med_extract.commands.conventions import check_input, exit_code, is_stdin, read_bytes
from ai_med_extract.config import Settings
from ai_med_extract.errors import AppError


def _write_atomically(path: Path, content: str) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _output_stem(path: Path, used: set[str]) -> str:
    stem = "stdin" if is_stdin(path) else path.name
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}.{n}"
    used.add(candidate)
    return candidate


async def _run(files: list[Path], output: Path | None, password: str | None, settings: Settings) -> int:
    from tqdm import tqdm

    from ai_med_extract.agents.text import DocumentKind, Step, TextExtractionAgent
    from ai_med_extract.agents.text.detect import detect

    pool = None
    needs_speech = False
    contents: dict[Path, bytes] = {}
    if any(is_stdin(p) for p in files):
        contents[Path("-")] = read_bytes(Path("-"))  # read once, before anything else
    for path in files:
        try:
            head = contents[path][: 64 * 1024] if path in contents else read_head(path)
            needs_speech = detect(head).kind is DocumentKind.audio or needs_speech
        except (AppError, OSError):
            continue
    if needs_speech:
        from ai_med_extract.inference.pool import ModelPool

        pool = ModelPool.from_settings(settings)
    agent = TextExtractionAgent(settings.extraction, max_bytes=settings.upload.max_bytes, transcriber=pool)
    failures = 0
    used: set[str] = set()
    try:
        with tqdm(total=len(files), unit="file", desc="extract-text", disable=None) as overall:
            for path in files:
                units = tqdm(desc=path.name[:30], unit="page", leave=False, disable=None)

                async def on_step(step: Step, bar: tqdm = units) -> None:  # type: ignore[type-arg]
                    if bar.total != step.total:
                        bar.total = step.total
                        bar.unit = step.unit
                    bar.update(step.done - bar.n)

                try:
                    data = contents[path] if path in contents else await asyncio.to_thread(path.read_bytes)
                    result = await agent.extract(data, password=password, on_step=on_step)
                except AppError as exc:
                    failures += 1
                    tqdm.write(f"{path}: {exc.code}: {exc.message}", file=sys.stderr)
                    continue
                except OSError as exc:
                    failures += 1
                    tqdm.write(f"{path}: cannot read ({exc.strerror})", file=sys.stderr)
                    continue
                finally:
                    units.close()
                    overall.update(1)
                if output is None:
                    header = f"==> {path} <==\n" if len(files) > 1 else ""
                    tqdm.write(header + result.text, file=sys.stdout)
                    continue
                stem = _output_stem(path, used)
                _write_atomically(output / f"{stem}.json", result.model_dump_json(indent=2))
                _write_atomically(output / f"{stem}.txt", result.text)
                methods = ",".join(m.value for m in result.methods) or "-"
                tqdm.write(
                    f"{path}: {result.metadata.kind.value}, {result.metadata.pages} page(s), "
                    f"{result.metadata.words} words, {methods} -> {stem}.txt",
                    file=sys.stderr,
                )
    finally:
        if pool is not None:
            await pool.close()
    return int(exit_code(failures))


def read_head(path: Path, size: int = 64 * 1024) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def register(app: typer.Typer) -> None:
    @app.command("extract-text")
    def extract_text(
        files: list[Path] = typer.Argument(..., help="Documents or audio; - reads standard input"),
        output: Path | None = typer.Option(
            None, "--output", "-o", file_okay=False, help="Write <name>.txt and <name>.json here (default: text to stdout)"
        ),
        password: str | None = typer.Option(
            None, "--password", envvar="AME_PDF_PASSWORD", help="Password of encrypted PDFs"
        ),
    ) -> None:
        """Extract text from PDFs, scans, DOCX, images, plain text and audio."""
        for path in files:
            check_input(path)
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
        code = asyncio.run(_run(list(files), output, password, Settings()))
        raise typer.Exit(code)
