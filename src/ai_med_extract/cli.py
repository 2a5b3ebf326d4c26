"""The one console entry point: ``ai-med-extract``."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(name="ai-med-extract", help="Self-hosted medical document AI", no_args_is_help=True)

# Command modules under ai_med_extract.commands, each exposing register(app).
COMMAND_MODULES = [
    "service",
    "scrub",
    "extract_text",
    "extract",
    "models",
    "summarize",
    "worker",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"ai_med_extract.commands.{_name}").register(app)


def main() -> None:
    app()
