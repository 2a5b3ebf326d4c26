"""What every command shares: ``-`` is standard input, no ``-o`` means standard output, one exit rule.

Exit status: 0 when every input was processed, 1 when some input failed (each failure is reported on
standard error or as an error line, and the others go on), 2 for a usage error (an unknown option, a
choice not in the list, a missing file: typer and click answer those with 2 themselves).
Choices are enums, so ``--help`` lists them and a wrong one is a usage error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import IO, NoReturn

import typer

STDIN = "-"


class ExitCode(IntEnum):
    ok = 0
    some_inputs_failed = 1
    usage = 2


def exit_code(failed: int) -> ExitCode:
    """The one rule: any failed input makes the run's status 1."""
    return ExitCode.some_inputs_failed if failed else ExitCode.ok


def finish(failed: int) -> NoReturn:
    """End a command with the status the rule gives for ``failed`` inputs."""
    raise typer.Exit(int(exit_code(failed)))


def usage_error(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(int(ExitCode.usage))


def is_stdin(path: Path | str) -> bool:
    return str(path) == STDIN


def check_input(path: Path) -> Path:
    """A readable input file, or ``-``; anything else is a usage error (status 2)."""
    if not is_stdin(path) and not path.is_file():
        raise usage_error(f"{path} is not a readable file")
    return path


@contextmanager
def open_text_input(path: Path) -> Iterator[IO[str]]:
    if is_stdin(path):
        yield sys.stdin
        return
    with path.open(encoding="utf-8") as handle:
        yield handle


def read_bytes(path: Path) -> bytes:
    return sys.stdin.buffer.read() if is_stdin(path) else path.read_bytes()


@contextmanager
def open_text_output(path: Path | None) -> Iterator[IO[str]]:
    """The file named by ``-o``, or standard output when there is none (or it is ``-``)."""
    if path is None or is_stdin(path):
        yield sys.stdout
        sys.stdout.flush()
        return
    with path.open("w", encoding="utf-8") as handle:
        yield handle


class Operator(StrEnum):
    redact = "redact"
    mask = "mask"
    surrogate = "surrogate"


class ExtractionMode(StrEnum):
    rules = "rules"
    llm = "llm"


class Grounding(StrEnum):
    remove = "remove"
    flag = "flag"
