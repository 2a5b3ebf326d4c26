"""Patient summaries on a Synthea-sized record: grounding measured the way VeriFact does, and speed
against one direct call of the same model.

    nice -n 10 python bench/summary.py [--n-ctx 4096] [--threads 2] [--max-tokens 256] [--models smollm2]

The record is generated here (``tests/agents/summary/synthetic.py``): 314 FHIR R4 entries, 37 of them
notes, twelve years of one patient. For the template summariser and for each catalogue model that
runs on this machine (a GGUF file that resolves offline), in the same process and run:

- **grounding**: every statement of the narrative and the assessment is checked against the record
  (dates, numbers, counts, drugs, diagnoses, each looked up among the facts and the guideline checks). Reported: the share supported,
  the share removed as unsupported, and the statements that cite record ids;
- **omissions**: active problems, active medications and allergies of the record that the summary
  does not name: in the whole summary, and in the written narrative plus assessment alone;
- **invented drugs**: drug names in the summary that no fact of the record names (should be none);
- **speed** (models only): ``PatientSummaryAgent.summarize`` end to end (FHIR parsing, notes read by the
  medical extractor, template sections, guideline checks, the model's narrative and assessment, the
  grounding check) next to one direct ``ModelPool.generate`` call on the same token budget: a prompt
  of record lines filling the context window, asking for ``--max-tokens`` tokens. The direct call runs
  before and after the summary and the two are averaged (a shared CPU slows both alike). Prints the
  ratio end to end / direct.

Results also go to bench/results/summary.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT.parent))

from tests.agents.summary.synthetic import make_synthea_sized_bundle  # noqa: E402

from ai_med_extract.agents.medical.extractor import MedicalExtractor  # noqa: E402
from ai_med_extract.agents.summary import PatientSummaryAgent, SummaryCache, SummaryOptions, load_record  # noqa: E402
from ai_med_extract.agents.summary.facts import Fact, FactKind, PatientRecord  # noqa: E402
from ai_med_extract.agents.summary.generation import SYSTEM, visit_blocks  # noqa: E402
from ai_med_extract.agents.summary.grounding import GroundingIndex, ground_text  # noqa: E402
from ai_med_extract.agents.summary.mentions import DrugDictionary  # noqa: E402
from ai_med_extract.agents.summary.output import GroundingReport, PatientSummary  # noqa: E402
from ai_med_extract.agents.summary.text_facts import read_notes  # noqa: E402
from ai_med_extract.config import ModelSettings, SummarySettings  # noqa: E402
from ai_med_extract.inference.catalogue import Catalogue, ModelType  # noqa: E402
from ai_med_extract.inference.pool import ModelPool  # noqa: E402
from ai_med_extract.inference.sources import resolve  # noqa: E402
from ai_med_extract.inference.types import ChatMessage, GenerationRequest  # noqa: E402

DIRECT_PROMPT = "Patient record, one fact per line:\n{lines}\n\nWrite a concise chronological summary of this record."
WRITTEN = ("narrative", "assessment")
_CLEAN = re.compile(r"\s*\((disorder|finding|situation|procedure)\)\s*$", re.I)


def runnable_models(catalogue_path: Path, wanted: list[str] | None) -> list[tuple[str, Path]]:
    """Catalogue text models whose GGUF file is here (no download)."""
    catalogue = Catalogue.load(catalogue_path)
    out = []
    for entry in catalogue.patient_summary_models:
        if entry.type is not ModelType.gguf or (wanted and entry.name not in wanted):
            continue
        try:
            source = resolve(entry, catalogue.runtime_behavior.model_copy(update={"allow_runtime_downloads": False}),
                             base_dir=catalogue.base_dir, cache_dir=Path("data/models"))
        except Exception:  # noqa: BLE001 - not available offline here
            continue
        out.append((entry.name, source.path))
    return out


def record_expectations(record: PatientRecord, drugs: DrugDictionary) -> dict[str, list[tuple[str, list[str]]]]:
    """What a summary must name: (label, accepted wordings) per active problem, medication, allergy."""
    def condition_terms(f: Fact) -> list[str]:
        label = _CLEAN.sub("", f.label).lower()
        terms = [label, label.split(" ")[-1]]
        if f.concept:
            terms.append(f.concept.replace("_", " "))
        return terms

    problems = [(f.label, condition_terms(f)) for f in record.of_kind(FactKind.condition)
                if (f.status or "active") == "active" and f.source.span is None]
    medications = [(f.label, sorted({g for g, _, _ in drugs.find(f.label)}) or [f.label.lower()])
                   for f in record.of_kind(FactKind.medication) if f.status == "active"]
    allergies = [(f.label, [f.label.lower().replace("allergy to ", "")]) for f in record.of_kind(FactKind.allergy)]
    return {"active_problems": problems, "medications": medications, "allergies": allergies}


def omissions(text: str, expected: dict[str, list[tuple[str, list[str]]]]) -> dict[str, list[str]]:
    low = text.lower()
    return {kind: [label for label, terms in items if not any(t and t in low for t in terms)]
            for kind, items in expected.items()}


def drugs_not_in_record(text: str, record: PatientRecord, drugs: DrugDictionary) -> list[str]:
    """Drug names (generic) the summary text names that no fact of the record names."""
    known = set(GroundingIndex(record, drugs).drug_names)
    return sorted({name for name, _, _ in drugs.find(text)} - known)


def grounding_figures(summary: PatientSummary, record: PatientRecord, drugs: DrugDictionary) -> dict[str, Any]:
    written = [st for key in WRITTEN for st in summary.sections[key].statements]
    if summary.generation.generator == "model":
        g = summary.grounding  # checked by the agent itself (remove mode): removed ones are gone
        checked, supported, removed = g.checked, g.supported, g.removed
    else:  # the template's own sentences, through the same check
        report = GroundingReport(mode="flag")
        index = GroundingIndex(record, drugs, summary.guideline_checks)
        for st in written:
            ground_text(st.text, index, mode="flag", report=report)
        checked, supported, removed = report.checked, report.supported, 0
    return {
        "statements_checked": checked,
        "supported_share": round(supported / checked, 3) if checked else None,
        "removed_share": round(removed / checked, 3) if checked else None,
        "kept_statements_citing_facts": sum(bool(st.citations) for st in written),
        "kept_statements": len(written),
    }


def figures(summary: PatientSummary, record: PatientRecord, drugs: DrugDictionary) -> dict[str, Any]:
    expected = record_expectations(record, drugs)
    written_text = " ".join(st.text for key in WRITTEN for st in summary.sections[key].statements)
    whole = omissions(summary.markdown, expected)
    alone = omissions(written_text, expected)
    return {
        "grounding": grounding_figures(summary, record, drugs),
        "expected": {k: len(v) for k, v in expected.items()},
        "omissions_in_summary": whole,
        "omissions_in_narrative_and_assessment": {k: len(v) for k, v in alone.items()},
        "active_problems_not_named": whole["active_problems"],
        "drugs_not_in_record": drugs_not_in_record(summary.markdown, record, drugs),
        "generation": summary.generation.model_dump(exclude={"fallbacks"}),
    }


async def direct_call(pool: ModelPool, name: str, record: PatientRecord, max_tokens: int) -> tuple[float, Any]:
    lines = "\n".join(f.line() for _, facts in visit_blocks(record) for f in facts)
    fixed = await pool.count_tokens(SYSTEM + DIRECT_PROMPT.format(lines=""), name)
    room = pool.context_window(name) - fixed - max_tokens - 64
    text, n = lines, await pool.count_tokens(lines, name)
    while n > room:
        text = text[: int(len(text) * room / (n + 1) * 0.97)]
        n = await pool.count_tokens(text, name)
    req = GenerationRequest(
        messages=(ChatMessage("system", SYSTEM), ChatMessage("user", DIRECT_PROMPT.format(lines=text))),
        model=name, max_tokens=max_tokens, temperature=0.0, timeout_s=1800,
    )
    t0 = time.perf_counter()
    result = await pool.generate(req)
    return time.perf_counter() - t0, result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bundle, _truth = make_synthea_sized_bundle()
    drugs = DrugDictionary()
    reader = MedicalExtractor()
    reader.warm_up()
    record = load_record(bundle)
    read_notes(record, reader)
    settings = SummarySettings(
        parallel_chunks=args.parallel, chunk_max_tokens=args.chunk_tokens, narrative_max_tokens=args.max_tokens,
        assessment_max_tokens=args.assessment_tokens, cache_size=0, generation_timeout_s=1800,
    )
    out: dict[str, Any] = {
        "record": {"entries": len(bundle["entry"]), "facts": len(record.facts),
                   "notes": len(record.of_kind(FactKind.note))},
        "settings": {"n_ctx": args.n_ctx, "threads": args.threads, "max_tokens": args.max_tokens,
                     "assessment_tokens": args.assessment_tokens, "chunk_tokens": args.chunk_tokens},
        "summarisers": {},
    }
    t0 = time.perf_counter()
    template = await PatientSummaryAgent(None, settings, drugs=drugs, reader=reader,
                                         cache=SummaryCache(0)).summarize(bundle)
    out["summarisers"]["template"] = {"end_to_end_s": round(time.perf_counter() - t0, 2),
                                      **figures(template, record, drugs)}

    tmp = Path(tempfile.mkdtemp(prefix="bench-summary-"))
    for name, path in runnable_models(ROOT.parent / "models_config.json", args.models):
        catalogue = Catalogue.from_dict({
            "default_model": name,
            "patient_summary_models": [{"name": name, "type": "gguf", "path": str(path), "n_ctx": args.n_ctx}],
            "runtime_behavior": {"allow_runtime_downloads": False, "text_fallback": False},
        }, base_dir=tmp)
        pool = ModelPool(catalogue, settings=ModelSettings(cache_dir=tmp / "models", n_threads=args.threads))
        try:
            await pool.generate(GenerationRequest(messages=(ChatMessage("user", "Hello"),), model=name, max_tokens=4))
            before, direct = await direct_call(pool, name, record, args.max_tokens)
            agent = PatientSummaryAgent(pool, settings, drugs=drugs, reader=reader, cache=SummaryCache(0))
            t0 = time.perf_counter()
            summary = await agent.summarize(bundle, SummaryOptions(model=name, grounding="remove"))
            e2e = time.perf_counter() - t0
            after, _ = await direct_call(pool, name, record, args.max_tokens)
        finally:
            await pool.close()
        direct_s = (before + after) / 2
        out["summarisers"][name] = {
            "end_to_end_s": round(e2e, 2),
            "direct_call_s": round(direct_s, 2),
            "direct_call_runs_s": [round(before, 2), round(after, 2)],
            "direct_prompt_tokens": direct.prompt_tokens,
            "direct_completion_tokens": direct.completion_tokens,
            "ratio_end_to_end_to_direct": round(e2e / direct_s, 2),
            **figures(summary, record, drugs),
            "written": [st.text for key in WRITTEN for st in summary.sections[key].statements],
        }
        print(json.dumps({name: out["summarisers"][name]}), flush=True)  # a long run shows each as it ends
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-ctx", type=int, default=4096, help="context window (the cpu profile's default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--assessment-tokens", type=int, default=128)
    parser.add_argument("--models", type=lambda s: s.split(","), default=None, help="catalogue names (default: all here)")
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result, indent=2))
    for name, r in result["summarisers"].items():
        g = r["grounding"]
        missing = {k: len(v) for k, v in r["omissions_in_summary"].items()}
        line = (f"{name}: supported {g['supported_share']}, removed {g['removed_share']} of "
                f"{g['statements_checked']} statements; omitted {missing}; "
                f"drugs not in the record {r['drugs_not_in_record']}")
        if "ratio_end_to_end_to_direct" in r:
            line += (f"; end to end {r['end_to_end_s']} s vs direct call {r['direct_call_s']} s: "
                     f"{r['ratio_end_to_end_to_direct']}x")
        print(line)
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / "summary.json").write_text(json.dumps(result, indent=2))
