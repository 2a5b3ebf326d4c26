"""`pip install .` gives a working ai-med-extract: the wheel carries the migrations and declares greenlet.

The wheel is built from a copy of the checkout (so the build leaves nothing behind in it), then
unpacked as an installer would into a folder outside any checkout, where `db upgrade` must create
the schema of an empty SQLite database from the migrations inside the package.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = "ai_med_extract/db/migrations"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        check=True,
        timeout=600,
    )
    [built] = out.glob("ai_med_extract-*.whl")
    return built


def test_wheel_carries_every_migration_and_the_alembic_environment(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = sorted(p.name for p in (ROOT / "src" / MIGRATIONS / "versions").glob("2*.py"))

    assert revisions, "the checkout has migrations"
    assert {f"{MIGRATIONS}/env.py", f"{MIGRATIONS}/script.py.mako"} <= names
    assert {f"{MIGRATIONS}/versions/{name}" for name in revisions} <= names


def test_wheel_declares_sqlalchemy_with_its_asyncio_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist") or []
    sqlalchemy = [Requirement(r) for r in requires if Requirement(r).name.lower() == "sqlalchemy"]

    assert sqlalchemy and "asyncio" in sqlalchemy[0].extras  # the extra that pulls greenlet


def test_db_upgrade_runs_from_the_unpacked_wheel_outside_a_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    database = tmp_path / "fresh.db"
    env = {
        **os.environ,
        "PYTHONPATH": str(site),  # ahead of the editable checkout: only the wheel's code is imported
        "AME_DATABASE__URL": f"sqlite+aiosqlite:///{database}",
        "AME_STORAGE__DIRECTORY": str(tmp_path / "data"),
    }
    env.pop("DATABASE_URL", None)
    code = "import sys, ai_med_extract; print(ai_med_extract.__file__); sys.argv[1:] = ['db', 'upgrade']; "
    code += "from ai_med_extract.cli import main; main()"

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0].startswith(str(site))
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master where type='table'")}
    assert {"alembic_version", "jobs", "audit_logs", "api_keys"} <= tables
