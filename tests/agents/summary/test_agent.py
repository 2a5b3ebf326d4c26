"""The summary agent end to end: template sections, model narrative (real pools), chunking, streaming,
fallback and the result cache."""

from __future__ import annotations

from typing import Any

import pytest

from ai_med_extract.agents.summary import PatientSummaryAgent, SummaryCache, SummaryOptions
from ai_med_extract.agents.summary.generation import Generator
from ai_med_extract.agents.summary.grounding import GroundingIndex, ground_text
from ai_med_extract.agents.summary.inputs import load_record
from ai_med_extract.agents.summary.mentions import DrugDictionary
from ai_med_extract.agents.summary.output import GroundingReport
from ai_med_extract.agents.summary.text_facts import read_notes
from ai_med_extract.config import SummarySettings
from ai_med_extract.inference.pool import ModelPool
from tests.agents.summary.synthetic import Truth, make_bundle, make_synthea_sized_bundle
from tests.agents.summary.test_inputs import PATIENT_MODEL
from tests.inference.tiny_models import write_tiny_gguf

SECTIONS = ["overview", "active_problems", "medications", "allergies", "vitals_labs", "narrative", "assessment",
            "guideline_checks"]


def _all_statements(summary: Any) -> list[Any]:
    return [st for s in summary.sections.values() for st in s.statements]


async def test_template_summary_of_a_multi_year_bundle_has_every_section_and_cites_facts(
    bundle: tuple[dict[str, Any], Truth], drugs: DrugDictionary
) -> None:
    data, truth = bundle
    as_of = truth.hba1c[-1][0]
    summary = await PatientSummaryAgent(None, drugs=drugs).summarize(data, SummaryOptions(as_of=as_of))
    assert list(summary.sections) == SECTIONS
    assert summary.generation.generator == "template" and summary.generation.template_reason == "NO_MODEL"
    fact_ids = {f["id"] for f in summary.facts}
    for st in _all_statements(summary):
        assert set(st.citations) <= fact_ids
    narrative = summary.sections["narrative"].statements
    dates = [st.text[:10] for st in narrative]
    assert dates == sorted(dates) and len(narrative) == truth.encounters
    problems = " ".join(s.text for s in summary.sections["active_problems"].statements)
    assert "hypertension" in problems.lower() and "diabetes" in problems.lower()
    assert "sinusitis" not in problems.lower()  # resolved acute problems are not active
    a1c = next(t for t in summary.trends if t.concept == "hba1c")
    assert a1c.latest == truth.hba1c[-1][1] and a1c.direction == "rising"
    rules = {c.rule: c.status for c in summary.guideline_checks}
    assert rules["diabetes.hba1c_monitoring"] == "met"
    assert rules["diabetes.kidney_monitoring"] == "not_met"
    assert "## Chronological narrative" in summary.markdown and truth.patient_name in summary.markdown
    assert summary.input["ignored"]["Claim"] == truth.unused["Claim"]


async def test_deidentified_overview_leaves_out_name_birth_date_and_mrn(
    bundle: tuple[dict[str, Any], Truth], drugs: DrugDictionary
) -> None:
    data, truth = bundle
    summary = await PatientSummaryAgent(None, drugs=drugs).summarize(data, SummaryOptions(deidentify=True))
    assert summary.overview["deidentified"] is True
    assert "name" not in summary.overview and "mrn" not in summary.overview and "birth_date" not in summary.overview
    assert isinstance(summary.overview["age"], int)
    assert truth.patient_name.split()[-1] not in summary.markdown
    assert truth.birth_date.isoformat() not in summary.markdown


async def test_patient_model_and_notes_inputs_summarise(drugs: DrugDictionary, reader: Any) -> None:
    agent = PatientSummaryAgent(None, drugs=drugs, reader=reader)
    s1 = await agent.summarize(PATIENT_MODEL)
    assert {c.rule for c in s1.guideline_checks} >= {"diabetes.hba1c_control", "hypertension.bp_control"}
    s2 = await agent.summarize(["2022-05-01 Hypertension. BP 150/95. Started amlodipine 5 mg daily."])
    assert "amlodipine" in s2.sections["medications"].statements[0].text


async def test_second_request_with_same_input_model_and_options_is_a_cache_hit(
    bundle: tuple[dict[str, Any], Truth], drugs: DrugDictionary
) -> None:
    agent = PatientSummaryAgent(None, drugs=drugs, cache=SummaryCache(10))
    first = await agent.summarize(bundle[0])
    second = await agent.summarize(bundle[0])
    third = await agent.summarize(bundle[0], SummaryOptions(deidentify=True))
    assert not first.cached and second.cached and not third.cached
    assert second.markdown == first.markdown and second.cache_key == first.cache_key
    assert agent.cache.hits == 1 and agent.cache.misses == 2


async def test_template_is_the_fallback_when_no_model_loads(
    broken_pool: ModelPool, bundle: tuple[dict[str, Any], Truth], drugs: DrugDictionary
) -> None:
    summary = await PatientSummaryAgent(broken_pool, drugs=drugs).summarize(bundle[0])
    assert summary.generation.generator == "template"
    assert summary.generation.template_reason  # the pool's stable error code
    assert summary.sections["narrative"].statements


async def test_small_context_window_forces_chunks_summarised_then_combined(
    tiny_pool: ModelPool, drugs: DrugDictionary
) -> None:
    data, _ = make_bundle(seed=5, years=4, notes=False)
    record = load_record(data)
    gen = Generator(tiny_pool, model_name="tiny", parallel=2)
    budget = await gen.budget(64, "{lines}", None)
    chunks = await gen.plan(record, budget)
    assert len(chunks) > 1
    assert all(c.tokens <= budget for c in chunks)
    starts = [c.start for c in chunks if c.start]
    assert starts == sorted(starts)  # chunked by date
    every = [fid for c in chunks for fid in c.facts]
    assert sorted(every, key=lambda x: int(x[1:])) == sorted({f.id for f in record.facts}, key=lambda x: int(x[1:]))

    settings = SummarySettings(chunk_max_tokens=24, narrative_max_tokens=32, assessment_max_tokens=24)
    summary = await PatientSummaryAgent(tiny_pool, settings, drugs=drugs).summarize(data, SummaryOptions(model="tiny"))
    assert summary.generation.generator == "model", summary.generation
    assert summary.generation.chunks > 1 and summary.generation.combine_rounds >= 1
    assert summary.generation.context_window == 1024


async def test_tokens_stream_while_the_narrative_is_written(
    tiny_pool: ModelPool, drugs: DrugDictionary
) -> None:
    pieces: list[tuple[str, str]] = []

    async def sink(section: str, text: str) -> None:
        pieces.append((section, text))

    settings = SummarySettings(chunk_max_tokens=16, narrative_max_tokens=24, assessment_max_tokens=16)
    agent = PatientSummaryAgent(tiny_pool, settings, drugs=drugs)
    summary = await agent.summarize(PATIENT_MODEL, SummaryOptions(model="tiny"), on_token=sink)
    sections = {s for s, _ in pieces}
    assert {"narrative", "assessment"} <= sections
    assert len(pieces) > 5
    assert summary.grounding.checked == summary.grounding.supported + summary.grounding.unsupported


@pytest.mark.models
async def test_shipped_model_writes_a_grounded_narrative(
    smollm2_pool: ModelPool, bundle: tuple[dict[str, Any], Truth], drugs: DrugDictionary
) -> None:
    settings = SummarySettings(chunk_max_tokens=96, narrative_max_tokens=128, assessment_max_tokens=96,
                               generation_timeout_s=900)  # a shared CPU can be slow; the test is about grounding
    summary = await PatientSummaryAgent(smollm2_pool, settings, drugs=drugs).summarize(
        bundle[0], SummaryOptions(model="smollm2", grounding="remove")
    )
    assert summary.generation.generator == "model" and summary.generation.model == "smollm2"
    report = summary.grounding
    assert report.checked > 0 and report.checked == report.supported + report.removed
    for key in ("narrative", "assessment"):
        for st in summary.sections[key].statements:
            assert st.flags == []  # in remove mode nothing unsupported is left


async def test_a_synthea_sized_bundle_is_summarised_by_a_hosted_model_from_a_compact_fact_list(
    make_pool: Any, tmp_path: Any, drugs: DrugDictionary, reader: Any
) -> None:
    data, truth = make_synthea_sized_bundle()
    resources = [e["resource"] for e in data["entry"]]
    assert len(resources) == 314
    assert sum(r["resourceType"] in ("DocumentReference", "DiagnosticReport") for r in resources) == 37
    model = write_tiny_gguf(tmp_path / "tiny-8k.gguf", context_length=8192)
    pool = make_pool([{"name": "tiny", "type": "gguf", "path": str(model), "n_ctx": 8192,
                       "options": {"n_batch": 512}}], text_fallback=False)
    prompts: list[str] = []
    stream = pool.stream

    def recording_stream(req: Any) -> Any:
        prompts.append(req.messages[-1].content)
        return stream(req)

    pool.stream = recording_stream  # type: ignore[method-assign]

    settings = SummarySettings(chunk_max_tokens=16, narrative_max_tokens=24, assessment_max_tokens=16,
                               parallel_chunks=4, cache_size=0)
    agent = PatientSummaryAgent(pool, settings, drugs=drugs, reader=reader)
    summary = await agent.summarize(data, SummaryOptions(model="tiny"))

    # the template states the facts; the model gets them as one compact list (not the 36 visits in
    # chunks): one narrative call, then the assessment over the same list (a shared prompt prefix)
    info = summary.generation
    assert info.generator == "model", info
    assert info.chunks == 1 and info.calls == 2 and info.combine_rounds == 0
    assert pool.describe_model("tiny")["isolated"] is True
    record_part = [p.split("\n\n")[0] for p in prompts]
    assert len(prompts) == 2 and record_part[0] == record_part[1]
    assert "Timeline" in prompts[0] and "diagnosed diabetes mellitus type 2" in prompts[0].lower()
    assert len(prompts[0]) < 8000  # far less than the record: every visit is not restated

    # quality: every active condition named, no drug the record does not name
    record = load_record(data)
    problems = " ".join(s.text for s in summary.sections["active_problems"].statements).lower()
    assert all(c.split(" (")[0].lower() in problems for c in truth.conditions)
    named = {name for name, _, _ in drugs.find(summary.markdown)}
    assert named and named <= set(GroundingIndex(record, drugs).drug_names)


async def test_the_template_summary_of_a_synthea_sized_bundle_passes_its_own_grounding_check(
    drugs: DrugDictionary, reader: Any
) -> None:
    data, truth = make_synthea_sized_bundle()
    summary = await PatientSummaryAgent(None, SummarySettings(cache_size=0), drugs=drugs, reader=reader).summarize(data)
    record = load_record(data)
    read_notes(record, reader)
    index = GroundingIndex(record, drugs, summary.guideline_checks)
    report = GroundingReport(mode="flag")
    statements = [st for key in ("narrative", "assessment") for st in summary.sections[key].statements]
    for st in statements:
        ground_text(st.text, index, mode="flag", report=report)
    assert report.checked >= len(statements) > 30
    assert report.unsupported == 0, report  # the template only restates the record
    problems = " ".join(s.text for s in summary.sections["active_problems"].statements).lower()
    assert all(c.split(" (")[0].lower() in problems for c in truth.conditions)
