"""Install steps read out of the Makefile and the Dockerfiles, normalised so they can be compared.

A step is a tuple: ``("apt", FILE)`` (system packages from a list file, by apt-get or by
``scripts/install-system-packages.sh``), ``("venv",)``,
``("pip", FLAGS, TARGET)`` with TARGET ``-r FILE`` or ``-e .``. Paths are reduced to file names,
interpreters and pips to ``python``/``pip`` whatever their path or version suffix.
"""

from __future__ import annotations

import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from dockerfile_parse import DockerfileParser

Step = tuple[str, ...]
# The project's installer of Debian packages and the lists it reads when given none.
INSTALL_SCRIPT = "install-system-packages.sh"
INSTALL_SCRIPT_DEFAULT_LISTS = ("apt-packages.txt", "apt-packages-test.txt")
_PIP_KEPT_FLAGS = {"--no-deps", "--require-hashes", "--no-build-isolation"}
_TEST_ONLY = re.compile(r"(?:^|[-_.])(?:dev|test|tests|ci|browser)(?:[-_.]|$)")


@dataclass(frozen=True)
class Command:
    text: str
    steps: tuple[Step, ...]


def _file_name(token: str) -> str:
    return Path(token.strip("\"'")).name


def _list_file(command: str) -> str | None:
    """The file an ``apt-get install $(cat FILE)``-style command takes its package names from."""
    match = re.search(r"\$\$?\((?:shell\s+)?(?:cat|grep[^)]*?|sed[^)]*?|xargs[^)]*?)\s+([^\s)]+)\s*\)", command)
    if match:
        return _file_name(match.group(1))
    match = re.search(r"<\s*([^\s;&|]+)", command)  # xargs apt-get install < FILE
    return _file_name(match.group(1)) if match else None


def parse_command(command: str) -> list[Step]:
    """Steps in one shell command line (``&&``/``;`` chains are split)."""
    steps: list[Step] = []
    for part in re.split(r"&&|;|\|\|", command):
        part = part.strip()
        if not part:
            continue
        if re.search(r"\bapt(?:-get)?\s+install\b", part):
            source = _list_file(part)
            if source:
                steps.append(("apt", source))
            continue
        try:
            words = shlex.split(part, posix=True)
        except ValueError:
            words = part.split()
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value cmd ...
            words = words[1:]
        if not words:
            continue
        exe = Path(words[0]).name
        rest = words[1:]
        if exe == "bash" and rest:
            exe, rest = Path(rest[0]).name, rest[1:]
        if exe == INSTALL_SCRIPT:
            lists = [w for w in rest if not w.startswith("-")] or list(INSTALL_SCRIPT_DEFAULT_LISTS)
            steps.extend(("apt", _file_name(name)) for name in lists)
            continue
        if re.fullmatch(r"python[0-9.]*", exe) and rest[:2] == ["-m", "venv"]:
            steps.append(("venv",))
            continue
        if re.fullmatch(r"python[0-9.]*", exe) and rest[:2] == ["-m", "pip"]:
            exe, rest = "pip", rest[2:]
        if re.fullmatch(r"pip[0-9.]*", exe) and rest[:1] == ["install"]:
            steps.append(_pip_step(rest[1:]))
    return steps


def _pip_step(args: list[str]) -> Step:
    flags: set[str] = set()
    target = ""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-r", "--requirement") and i + 1 < len(args):
            target = f"-r {_file_name(args[i + 1])}"
            i += 2
            continue
        if arg in ("-e", "--editable") and i + 1 < len(args):
            target = f"-e {args[i + 1].split('[')[0].rstrip('/') or '.'}"
            i += 2
            continue
        if arg in _PIP_KEPT_FLAGS:
            flags.add(arg)
        elif not arg.startswith("-") and not target:
            target = arg
        i += 1
    return ("pip", " ".join(sorted(flags)), target)


def is_test_only(step: Step) -> bool:
    """Steps that install test tooling (browser, dev requirements): not wanted in images."""
    subject = step[-1]
    name = subject.split()[-1] if subject else ""
    return bool(_TEST_ONLY.search(Path(name).stem))


# -- Makefile --------------------------------------------------------------------------------------
def _make_variables(text: str) -> dict[str, str]:
    variables: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=|::=)\s*(.*)$", line)
        if match and not line.startswith("\t"):
            variables.setdefault(match.group(1), match.group(2).strip())
    return variables


def _expand(text: str, variables: dict[str, str]) -> str:
    for _ in range(10):
        new = re.sub(
            r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]",
            lambda m: variables.get(m.group(1), m.group(0)),
            text,
        )
        if new == text:
            break
        text = new
    return text


def makefile_steps(path: Path) -> list[Step]:
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    variables = _make_variables(text)
    steps: list[Step] = []
    for line in text.splitlines():
        if not line.startswith("\t"):
            continue
        command = _expand(line.strip().lstrip("@-+").strip(), variables)
        steps.extend(parse_command(command))
    return steps


# -- Dockerfiles -----------------------------------------------------------------------------------
def dockerfile_parser(path: Path) -> DockerfileParser:
    """A parser over ``path`` (given as a file object: the library appends /Dockerfile to other names)."""
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    return parser


def dockerfile_steps(path: Path) -> list[Step]:
    parser = dockerfile_parser(path)
    steps: list[Step] = []
    for item in parser.structure:
        if item["instruction"] == "RUN":
            steps.extend(parse_command(item["value"]))
    return steps


def dockerfile_copies(path: Path) -> list[str]:
    """Sources of COPY/ADD instructions that come from the build context (not ``--from``)."""
    parser = dockerfile_parser(path)
    sources: list[str] = []
    for item in parser.structure:
        if item["instruction"] not in ("COPY", "ADD"):
            continue
        words = shlex.split(item["value"])
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources
