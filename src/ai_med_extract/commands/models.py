"""`models list|pull|load|info`: the model catalogue from the command line."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from ai_med_extract.config import Settings


def _catalogue(settings: Settings):  # type: ignore[no-untyped-def]
    from ai_med_extract.inference.catalogue import Catalogue

    return Catalogue.load(settings.models.config_path)


def _fail(exc: Exception) -> typer.Exit:
    from ai_med_extract.errors import AppError

    message = exc.message if isinstance(exc, AppError) else f"{type(exc).__name__}"
    code = exc.code if isinstance(exc, AppError) else "ERROR"
    typer.echo(f"error [{code}]: {message}", err=True)
    return typer.Exit(1)


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="Model catalogue: list, pull, load, info", no_args_is_help=True)
    app.add_typer(models, name="models")

    @models.command("list")
    def list_models() -> None:
        """Every model of the catalogue, its source, and whether its backend is installed here."""
        from ai_med_extract.errors import AppError
        from ai_med_extract.inference.backends.factory import available_backends

        settings = Settings()
        try:
            catalogue = _catalogue(settings)
        except AppError as exc:
            raise _fail(exc) from None
        backends = available_backends()
        defaults = {catalogue.default_text_model(), catalogue.default_speech()}
        rows = [("NAME", "TYPE", "ACTIVE", "BACKEND", "SOURCE")]
        for entry in catalogue.entries():
            if entry.path:
                source = f"path:{entry.path}"
            elif entry.package:
                source = f"package:{entry.package}"
            elif entry.repo_id:
                source = f"hub:{entry.repo_id}" + (f"/{entry.filename}" if entry.filename else "")
            elif entry.base_url:
                source = f"server:{entry.base_url}"
            else:
                source = f"checkpoint:{entry.checkpoint}" if entry.checkpoint else "-"
            name = entry.name + (" *" if entry.name in defaults else "")
            rows.append(
                (
                    name,
                    entry.type.value,
                    "yes" if entry.is_active else "no",
                    "ok" if backends.get(entry.type.value) else "missing",
                    source,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            typer.echo("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
        typer.echo("(* default)")

    @models.command("pull")
    def pull(
        name: str = typer.Argument(None, help="Model name (default: every hub model of the catalogue)"),
    ) -> None:
        """Download hub models into the model cache (run where the hub is reachable)."""
        from ai_med_extract.errors import AppError
        from ai_med_extract.inference.sources import resolve

        settings = Settings()
        try:
            catalogue = _catalogue(settings)
            entries = [catalogue.get(name)] if name else [e for e in catalogue.entries() if e.repo_id]
        except AppError as exc:
            raise _fail(exc) from None
        failed = False
        for entry in entries:
            if entry.path or entry.package or not entry.repo_id:
                typer.echo(f"{entry.name}: nothing to download (local or packaged weights, or a server)")
                continue
            try:
                found = resolve(
                    entry,
                    catalogue.runtime_behavior,
                    base_dir=catalogue.base_dir,
                    cache_dir=settings.models.cache_dir,
                    force_download=True,
                )
            except AppError as exc:
                failed = True
                typer.echo(f"{entry.name}: [{exc.code}] {exc.message}", err=True)
                continue
            typer.echo(f"{entry.name}: {found.path} ({found.size_bytes() / 1e6:.1f} MB, {found.origin})")
        if failed:
            raise typer.Exit(1)

    @models.command("load")
    def load(
        name: str = typer.Argument(..., help="Model name"),
        prompt: str = typer.Option(None, help="Generate from this prompt after loading"),
        max_tokens: int = typer.Option(64, min=1, help="Tokens to generate with --prompt"),
    ) -> None:
        """Load a model the way the service does and report device, memory and load time."""
        from ai_med_extract.errors import AppError
        from ai_med_extract.inference.pool import ModelPool
        from ai_med_extract.inference.types import ChatMessage, GenerationRequest

        async def run() -> dict[str, Any]:
            pool = ModelPool.from_settings(Settings())
            try:
                info = await pool.load(name)
                if prompt:
                    result = await pool.generate(
                        GenerationRequest(
                            messages=(ChatMessage("user", prompt),), model=name, max_tokens=max_tokens
                        )
                    )
                    info["sample"] = {
                        "text": result.text,
                        "completion_tokens": result.completion_tokens,
                        "tokens_per_s": round(result.completion_tokens / max(result.duration_s, 1e-9), 1),
                    }
                return info
            finally:
                await pool.close()

        try:
            info = asyncio.run(run())
        except AppError as exc:
            raise _fail(exc) from None
        typer.echo(json.dumps(info, indent=2, default=str))

    @models.command("info")
    def info(name: str = typer.Argument(None, help="Model name (default: the pool and its profile)")) -> None:
        """The catalogue entry of one model, or the pool's profile, limits and backends (loads nothing)."""
        from ai_med_extract.errors import AppError
        from ai_med_extract.inference.pool import ModelPool

        try:
            pool = ModelPool.from_settings(Settings())
            body = pool.describe_model(name) if name else {**pool.health(), "limits": pool.limits()}
        except AppError as exc:
            raise _fail(exc) from None
        typer.echo(json.dumps(body, indent=2, default=str))
