"""Throughput and latency of POST /upload (1 KB text) and GET /job/{id} under 16 concurrent clients,
against a bare FastAPI app with the same routes doing nothing, in the same run; then documents per
minute through the full pipeline with 1 and 2 workers.

    .venv/bin/python bench/service_throughput.py [--seconds 10] [--clients 16] [--pg DSN] [--embedded]

By default it measures the production shape: the API on PostgreSQL (a fresh database on ``--pg``,
default postgres@127.0.0.1:5432) with jobs delivered by procrastinate to separate ``ai-med-extract
worker`` processes, all started by the bench. ``--embedded`` measures ``make run``'s shape instead
(SQLite, jobs inside the API process). Every server runs in its own process on loopback; the load
comes from this process. The service runs with authentication on (a real key), the audit trail,
encrypted storage and the job queue; rate limits are raised so that they do not refuse the load.
On one machine the workers share the CPU with the API (in production they run on other nodes), so
during the HTTP phase they run at the lowest CPU priority.

    .venv/bin/python bench/service_throughput.py --audit-overhead [--clients 8] [--database URL]

measures the audit trail alone instead: concurrent writers each committing one audit row per short
transaction (what an audited action adds, and what the intent/outcome rows of a generation cost),
against the same writers committing an empty write transaction, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BARE_APP = textwrap.dedent(
    """
    import uuid
    from fastapi import FastAPI, File, UploadFile
    app = FastAPI()

    @app.post("/upload", status_code=202)
    async def upload(files: list[UploadFile] = File(...)):
        for f in files:
            await f.read()
        return {"job_id": str(uuid.uuid4()), "status": "queued"}

    @app.get("/job/{job_id}")
    async def job(job_id: str):
        return {"job_id": job_id, "status": "completed"}
    """
)
NOTE = ("Pt seen in clinic. BP 132/84, HR 72. Continue metformin 500 mg PO BID. " * 15)[:1024].encode()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_worker(env: dict[str, str], nice: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["nice", "-n", str(nice), sys.executable, "-m", "ai_med_extract", "worker"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pg(dsn: str, *statements: str) -> list[Any]:
    import asyncpg

    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            rows: list[Any] = []
            for statement in statements:
                rows = list(await conn.fetch(statement))
            return rows
        finally:
            await conn.close()

    return asyncio.run(run())


def _fresh_database(admin_dsn: str, name: str) -> tuple[str, str]:
    """Create database ``name``; return its asyncpg DSN and its SQLAlchemy URL."""
    _pg(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    return dsn, dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def _prepare(env: dict[str, str]) -> str:
    """Migrate the database and create an admin key; return the key."""
    python = sys.executable
    subprocess.run([python, "-m", "ai_med_extract", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    created = subprocess.run([python, "-m", "ai_med_extract", "keys", "create", "--role", "admin", "--name", "bench"],
                             env=env, cwd=ROOT, check=True, capture_output=True, text=True)  # fmt: skip
    return created.stdout.strip().rsplit(" ", 1)[-1]


def _start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start")


async def _load(
    url: str, headers: dict[str, str], seconds: float, clients: int, kind: str, job_id: str, form: dict[str, str]
) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                if kind == "upload":
                    r = await client.post("/upload", files={"files": ("n.txt", NOTE, "text/plain")}, data=form)
                    ok = r.status_code == 202
                else:
                    r = await client.get(f"/job/{job_id}")
                    ok = r.status_code == 200
                if not ok:
                    raise SystemExit(f"{kind} answered {r.status_code}: {r.text[:200]}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*[worker() for _ in range(clients)])
    return latencies


def _summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "rps": len(ordered) / seconds,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def _documents_per_minute(
    url: str, headers: dict[str, str], dsn: str, workers: int, documents: int, form: dict[str, str]
) -> float:
    """Wait for ``workers`` warmed-up workers, submit ``documents`` uploads, time them to the last."""
    deadline = time.monotonic() + 900
    while _pg(dsn, "SELECT count(*) AS n FROM procrastinate_workers")[0]["n"] < workers:
        if time.monotonic() > deadline:
            raise SystemExit("workers did not start")
        time.sleep(0.5)
    started = time.perf_counter()
    ids = []
    for _ in range(documents):
        r = httpx.post(f"{url}/upload", headers=headers, files={"files": ("n.txt", NOTE, "text/plain")}, data=form,
                       timeout=60)  # fmt: skip
        if r.status_code != 202:
            raise SystemExit(f"upload answered {r.status_code}: {r.text[:200]}")
        ids.append(r.json()["job_id"])
    id_list = ", ".join(f"'{uuid.UUID(i)}'" for i in ids)
    while True:
        [row] = _pg(dsn, f"SELECT count(*) FILTER (WHERE status = 'completed') AS done, "
                         f"count(*) FILTER (WHERE status IN ('failed', 'cancelled')) AS bad "
                         f"FROM jobs WHERE id IN ({id_list})")  # fmt: skip
        if row["bad"]:
            raise SystemExit(f"{row['bad']} job(s) failed")
        if row["done"] == documents:
            return documents / ((time.perf_counter() - started) / 60)
        time.sleep(0.2)


def _http_phase(
    env: dict[str, str], key: str, args: argparse.Namespace, workdir: Path, form: dict[str, str],
    extra: list[subprocess.Popen[bytes]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    python = sys.executable
    (workdir / "bare_app.py").write_text(BARE_APP)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in ("bare", "service"):
        port = _free_port()
        if name == "bare":
            cmd = [python, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--no-access-log",
                   "--app-dir", str(workdir), "--log-level", "warning"]  # fmt: skip
            headers: dict[str, str] = {}
        else:
            cmd = [python, "-m", "ai_med_extract", "serve", "--port", str(port), "--no-upgrade", "--no-bootstrap-key"]
            headers = {"X-API-Key": key}
        proc = _start(cmd, env, port)
        try:
            url = f"http://127.0.0.1:{port}"
            first = httpx.post(f"{url}/upload", headers=headers, files={"files": ("n.txt", NOTE, "text/plain")})
            job_id = first.json()["job_id"]
            results[name] = {}
            for kind in ("upload", "job"):
                asyncio.run(_load(url, headers, 1.0, args.clients, kind, job_id, form))  # warm-up
                lat = asyncio.run(_load(url, headers, args.seconds, args.clients, kind, job_id, form))
                results[name][kind] = _summary(lat, args.seconds)
        finally:
            _stop([proc])
    return results


def _print_http(results: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace, shape: str) -> None:
    print(f"{args.clients} concurrent clients, {args.seconds:g} s per route, {shape}, "
          f"jobs: {'text only' if args.text_only else 'full pipeline'}")  # fmt: skip
    print(f"{'route':<14}{'':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for kind, route in (("upload", "POST /upload"), ("job", "GET /job/{id}")):
        for name in ("bare", "service"):
            r = results[name][kind]
            print(f"{route:<14}{name:>10}{r['rps']:>10.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}")
        ratio = results["service"][kind]["rps"] / results["bare"][kind]["rps"]
        print(f"{route:<14}{'ratio':>10}{ratio:>10.3f}   (service req/s / bare FastAPI req/s)")


# -- audit overhead (a separate measurement: --audit-overhead) ---------------------------------------
async def _audit_writers(url: str, clients: int, seconds: float, audited: bool) -> list[float]:
    from sqlalchemy import text

    from ai_med_extract.audit.trail import AuditEntry, AuditTrail
    from ai_med_extract.config import DatabaseSettings
    from ai_med_extract.db.engine import create_engine, create_sessionmaker
    from ai_med_extract.security.keyring import Keyring

    engine = create_engine(DatabaseSettings(url=url, pool_size=clients))
    sessions = create_sessionmaker(engine)
    trail = AuditTrail(Keyring.from_secret(b"bench-secret-" + b"x" * 32))
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def writer(n: int) -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            async with sessions() as session, session.begin():
                if audited:
                    await trail.append(session, AuditEntry(action="bench.read", resource_type="job",
                                                           resource_id=str(n), user_id="key:1:bench",
                                                           request_data={"status": "completed"},
                                                           response_status=200))
                else:
                    await session.execute(text("SELECT 1"))
            latencies.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*[writer(i) for i in range(clients)])
    finally:
        await engine.dispose()
    return latencies


def audit_overhead(database: str | None, clients: int, seconds: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ame-bench-audit-"))
    url = database or f"sqlite+aiosqlite:///{workdir}/bench.db"
    from ai_med_extract.commands.service import upgrade_database

    upgrade_database(url)
    runs: dict[str, list[dict[str, float]]] = {"empty transaction": [], "audit row": []}
    asyncio.run(_audit_writers(url, clients, 1.0, True))  # warm-up
    for _ in range(3):  # interleaved rounds, so that a busy machine weighs on both alike
        for name, audited in (("empty transaction", False), ("audit row", True)):
            runs[name].append(_summary(asyncio.run(_audit_writers(url, clients, seconds, audited)), seconds))
    results = {name: sorted(rounds, key=lambda r: r["rps"])[1] for name, rounds in runs.items()}  # median round
    print(f"audit overhead: {clients} concurrent writers, 3 rounds of {seconds:g} s each (median shown), database: "
          f"{'PostgreSQL' if database else 'SQLite'}")
    print(f"{'':<20}{'tx/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in results.items():
        print(f"{name:<20}{r['rps']:>10.1f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}")
    ratio = results["audit row"]["rps"] / results["empty transaction"]["rps"]
    extra = results["audit row"]["p50_ms"] - results["empty transaction"]["p50_ms"]
    print(f"{'ratio':<20}{ratio:>10.3f}   (audited tx/s / empty tx/s); the chain adds {extra:.2f} ms at p50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pg", default=os.environ.get("AME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="PostgreSQL server (a DSN with rights to create databases)")  # fmt: skip
    parser.add_argument("--embedded", action="store_true", help="SQLite, jobs in the API process (make run)")
    parser.add_argument("--documents", type=int, default=20, help="documents per worker count (documents/min)")
    parser.add_argument(
        "--text-only",
        action="store_true",
        help="uploads ask for text extraction only (no PHI scrubbing or medical extraction), so the figures "
        "show the API, audit, storage and job overhead apart from the NLP work the jobs do",
    )
    parser.add_argument("--audit-overhead", action="store_true",
                        help="measure the audit trail's write cost instead of the HTTP routes")
    parser.add_argument("--database", default=None, help="--audit-overhead: database URL (default: SQLite)")
    args = parser.parse_args()
    if args.audit_overhead:
        audit_overhead(args.database, args.clients, args.seconds)
        return
    workdir = Path(tempfile.mkdtemp(prefix="ame-bench-"))
    env = {
        **os.environ,
        "AME_ENVIRONMENT": "test",
        "AME_STORAGE__DIRECTORY": str(workdir / "storage"),
        "AME_SECURITY__RATE_LIMIT__PER_IP_PER_MINUTE": "100000000",
        "AME_SECURITY__RATE_LIMIT__PER_KEY_PER_HOUR": "100000000",
        "AME_SECURITY__RATE_LIMIT__BURST": "100000000",
        "AME_LOGGING__LEVEL": "WARNING",
        "AME_JOBS__QUEUE_SIZE": "100000",
        "AME_JOBS__CONCURRENCY": "1",
    }
    form = {"scrub": "false", "extract": "false"} if args.text_only else {}
    if args.embedded:
        env["AME_DATABASE__URL"] = f"sqlite+aiosqlite:///{workdir}/bench.db"
        key = _prepare(env)
        _print_http(_http_phase(env, key, args, workdir, form), args, "database: SQLite, jobs in the API process")
        return

    name = f"ame_bench_{os.getpid()}"
    env["AME_JOBS__ENGINE"] = "procrastinate"
    dsn, env["AME_DATABASE__URL"] = _fresh_database(args.pg, name)
    try:
        key = _prepare(env)
        workers = [_start_worker(env, nice=19)]  # the queue drains while the API takes load, as in production
        try:
            results = _http_phase(env, key, args, workdir, form)
        finally:
            _stop(workers)
        _print_http(results, args, "database: PostgreSQL, jobs on separate workers (procrastinate)")

        rates: dict[int, float] = {}
        for count in (1, 2):
            dsn, env["AME_DATABASE__URL"] = _fresh_database(args.pg, name)  # no backlog from earlier phases
            key = _prepare(env)
            port = _free_port()
            api = _start([sys.executable, "-m", "ai_med_extract", "serve", "--port", str(port), "--no-upgrade",
                          "--no-bootstrap-key"], env, port)  # fmt: skip
            workers = [_start_worker(env, nice=0) for _ in range(count)]
            try:
                rates[count] = _documents_per_minute(
                    f"http://127.0.0.1:{port}", {"X-API-Key": key}, dsn, count, args.documents, form
                )
            finally:
                _stop([api, *workers])
        print(f"documents/min through the {'text-only' if args.text_only else 'full'} pipeline "
              f"({args.documents} 1 KB notes, workers with 1 job slot each on this machine's CPUs)")  # fmt: skip
        for count, rate in rates.items():
            print(f"{count} worker{'s' if count > 1 else ' '}{rate:>12.1f} docs/min")
        print(f"{'scaling':<9}{rates[2] / rates[1]:>12.2f}x   (2 workers / 1 worker)")
    finally:
        _pg(args.pg, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
