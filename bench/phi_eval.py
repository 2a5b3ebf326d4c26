"""PHI scrubber quality on text the learned detector was not trained on, each figure separately.

Sections (token recall/precision from the shared scorer, span recall per gold label):
  dev        the development notes of the patient half the shipped model was NOT trained on
  generated  synthetic documents of the TEST template and locale family (never used in training)
  upper      both of the above in ALL CAPS
  lower      both of the above in lowercase

  --tune     instead: the sets tuning may look at (the dev half the model WAS trained on, and TRAIN-family
             documents of a seed neither training nor validation used); never report these figures

usage: python bench/phi_eval.py [--sections dev,generated,upper,lower] [--layers patterns,names,...]
                               [--without learned] [--no-ner] [--generated-docs N] [--ablate]
                               [--missed] [--fp] [--data PATH] [--tune]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

from ai_med_extract.agents.phi import learned, synthetic
from ai_med_extract.agents.phi.scrubber import PhiScrubber, ScrubOptions
from ai_med_extract.agents.phi.training import find_dev_data, patient_half

ROOT = Path(__file__).resolve().parents[1]
TEST_SEED = 20240611  # the generated test set: TEST family, its own seed
TUNE_SEED = 7  # TRAIN-family documents for tuning: neither the training (0) nor the validation (1) seed


def find_scorer() -> Path:
    return find_dev_data().parents[2] / "tools" / "phi_score.py"


def load_scorer(path: Path):
    spec = importlib.util.spec_from_file_location("phi_score", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.score


def held_out_half() -> str:
    meta = json.loads((learned.MODEL_DIR / "meta.json").read_text()) if (learned.MODEL_DIR / "meta.json").is_file() else {}
    trained = (meta.get("ai_med_extract") or {}).get("dev_half") or learned.DEV_HALF
    return "odd" if trained == "even" else "even"


def recase(docs: list[dict], case: str) -> list[dict]:
    out = []
    for d in docs:  # offsets stay valid: only notes that keep their length when re-cased
        text = d["text"].upper() if case == "upper" else d["text"].lower()
        if len(text) == len(d["text"]):
            out.append({**d, "id": f"{d['id']}-{case}", "text": text})
    return out


def evaluate(scrubber: PhiScrubber, docs: list[dict], score) -> tuple[dict, dict]:
    t = time.perf_counter()
    preds = {d["id"]: {"spans": [s.to_dict() for s in scrubber.detect(d["text"])]} for d in docs}
    secs = time.perf_counter() - t
    res = score(docs, preds)
    summary = {k: res[k] for k in ("token_recall", "token_precision", "token_f2", "tp", "fn", "fp")}
    summary["span_recall_by_label"] = res["span_recall_by_label"]
    summary["documents"] = len(docs)
    summary["chars_per_s"] = round(sum(len(d["text"]) for d in docs) / secs) if secs else None
    return summary, {"preds": preds, "res": res}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=None, help="development notes (default: shared/data/phi)")
    ap.add_argument("--scorer", type=Path, default=None)
    ap.add_argument("--sections", default="dev,generated,upper,lower")
    ap.add_argument("--layers", help="comma-separated recognizers to run (default: all registered)")
    ap.add_argument("--without", default="", help="comma-separated recognizers to leave out")
    ap.add_argument("--no-ner", action="store_true", help="leave out the general-purpose spaCy NER layer")
    ap.add_argument("--generated-docs", type=int, default=600)
    ap.add_argument("--ablate", action="store_true", help="figures with each recognizer removed in turn")
    ap.add_argument("--missed", action="store_true", help="print missed gold spans")
    ap.add_argument("--fp", action="store_true", help="print false-positive predictions")
    ap.add_argument("--tune", action="store_true", help="score the tuning sets instead of the held-out ones")
    a = ap.parse_args()
    dev_path = a.data or find_dev_data()
    score = load_scorer(a.scorer or find_scorer())
    sections = a.sections.split(",")

    half = held_out_half()
    if a.tune:
        half = "odd" if half == "even" else "even"
    sets: dict[str, list[dict]] = {}
    dev = list(patient_half((json.loads(line) for line in dev_path.open()), half)) if dev_path.is_file() else []
    if a.tune:
        generated = list(synthetic.generate("train", a.generated_docs, TUNE_SEED))
    else:
        generated = list(synthetic.generate("test", a.generated_docs, TEST_SEED))
    if "dev" in sections and dev:
        sets[f"dev ({half} patients, {'TRAINED ON: tuning only' if a.tune else 'not trained on'})"] = dev
    if "generated" in sections:
        sets["generated TRAIN family (tuning only)" if a.tune else "generated TEST family"] = generated
    for case in ("upper", "lower"):
        if case in sections:
            if dev:
                sets[f"dev {case}"] = recase(dev, case)
            sets[f"generated {case}"] = recase(generated, case)

    def build(without: set[str]) -> PhiScrubber:
        scrubber = PhiScrubber.default(ner=not a.no_ner)
        names = set(a.layers.split(",")) if a.layers else set(scrubber.registry.names)
        scrubber.options = ScrubOptions(layers=frozenset(names - without))
        return scrubber

    without = {w for w in a.without.split(",") if w}
    scrubber = build(without)
    print(f"recognizers: {[n for n in scrubber.registry.names if n in (scrubber.options.layers or ())]}")
    results = {}
    for name, docs in sets.items():
        summary, detail = evaluate(scrubber, docs, score)
        results[name] = summary
        print(f"== {name}")
        print(json.dumps(summary, indent=1))
        if a.missed:
            for m in detail["res"]["missed_examples"]:
                print("MISSED", m["label"], repr(m["text"]), m["id"], file=sys.stderr)
        if a.fp:
            for d in docs:
                gold = [(s["start"], s["end"]) for s in d["spans"]]
                for p in detail["preds"][d["id"]]["spans"]:
                    if not any(s < p["end"] and p["start"] < e for s, e in gold):
                        t = d["text"]
                        ctx = t[max(0, p["start"] - 30) : p["start"]] + "[[" + t[p["start"] : p["end"]] + "]]"
                        print("FP", p["recognizer"], p["detector"], re.sub(r"\s+", " ", ctx + t[p["end"] : p["end"] + 20]),
                              file=sys.stderr)
    if a.ablate:
        print("recognizer contribution (figures without it):")
        for layer in sorted(scrubber.options.layers or ()):
            ablated = build(without | {layer})
            for name, docs in sets.items():
                r, _ = evaluate(ablated, docs, score)
                base = results[name]
                print(
                    f"  -{layer:12s} {name:40s} recall {r['token_recall']:.4f} ({r['token_recall'] - base['token_recall']:+.4f})"
                    f"  precision {r['token_precision']:.4f} ({r['token_precision'] - base['token_precision']:+.4f})"
                )


if __name__ == "__main__":
    main()
