"""PHI scrubber quality on the development notes, scored by the shared token-level scorer.

usage: python bench/phi_eval.py [--data PATH] [--layers patterns,names,...] [--ablate] [--no-ner]
                               [--case upper|lower]
                               [--half even|odd]
Prints token recall/precision, span recall per gold label, and with --ablate the contribution of
each layer (the figures with that layer removed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from ai_med_extract.agents.phi.scrubber import ALL_LAYERS, PhiScrubber, ScrubOptions

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "phi" / "deid-dev.jsonl"
SCORER = ROOT.parent / "shared" / "tools" / "phi_score.py"


def load_scorer(path: Path):
    spec = importlib.util.spec_from_file_location("phi_score", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.score


def run(docs, layers, ner: bool):
    scrubber = PhiScrubber.default(ner=ner and "ner" in layers, options=ScrubOptions(layers=frozenset(layers)))
    t = time.perf_counter()
    preds = {d["id"]: {"spans": [s.to_dict() for s in scrubber.detect(d["text"])]} for d in docs}
    return preds, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--scorer", type=Path, default=SCORER)
    ap.add_argument("--layers", default=",".join(sorted(ALL_LAYERS)))
    ap.add_argument("--ablate", action="store_true")
    ap.add_argument("--no-ner", action="store_true")
    ap.add_argument("--missed", action="store_true", help="print missed gold spans (development only)")
    ap.add_argument("--fp", action="store_true", help="print false-positive predictions (development only)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--case", choices=["as-is", "upper", "lower"], default="as-is",
                    help="re-case every note first (robustness to ALL CAPS / lowercase notes)")
    ap.add_argument("--half", choices=["all", "even", "odd"], default="all",
                    help="only the notes of patients with an even / odd number (tune on one, check on the other)")
    a = ap.parse_args()
    score = load_scorer(a.scorer)
    docs = [json.loads(line) for line in a.data.open()]
    if a.half != "all":
        docs = [d for d in docs if int(d.get("patient", 0)) % 2 == (0 if a.half == "even" else 1)]
    if a.case != "as-is":
        for d in docs:  # offsets stay valid: these notes keep their length when re-cased
            recased = d["text"].upper() if a.case == "upper" else d["text"].lower()
            if len(recased) == len(d["text"]):
                d["text"] = recased
    layers = set(a.layers.split(","))
    preds, secs = run(docs, layers, not a.no_ner)
    res = score(docs, preds)
    chars = sum(len(d["text"]) for d in docs)
    summary = {k: res[k] for k in ("token_recall", "token_precision", "token_f2", "tp", "fn", "fp")}
    summary["span_recall_by_label"] = res["span_recall_by_label"]
    summary["seconds"] = round(secs, 2)
    summary["chars_per_s"] = round(chars / secs)
    print(json.dumps(summary, indent=1))
    if a.out:
        with a.out.open("w") as fh:
            for k, v in preds.items():
                fh.write(json.dumps({"id": k, **v}) + "\n")
    if a.missed:
        for m in res["missed_examples"]:
            print("MISSED", m["label"], repr(m["text"]), m["id"], file=sys.stderr)
    if a.fp:
        import re

        for d in docs:
            gold = [(s["start"], s["end"]) for s in d["spans"]]
            for p in preds[d["id"]]["spans"]:
                if not any(s < p["end"] and p["start"] < e for s, e in gold):
                    t = d["text"]
                    ctx = t[max(0, p["start"] - 30) : p["start"]] + "[[" + t[p["start"] : p["end"]] + "]]"
                    ctx += t[p["end"] : p["end"] + 20]
                    print("FP", p["detector"], re.sub(r"\s+", " ", ctx), file=sys.stderr)
    if a.ablate:
        print("layer contribution (figures without the layer):")
        for layer in sorted(layers):
            p, _ = run(docs, layers - {layer}, not a.no_ner)
            r = score(docs, p)
            print(
                f"  -{layer:12s} recall {r['token_recall']:.4f} ({r['token_recall'] - res['token_recall']:+.4f})"
                f"  precision {r['token_precision']:.4f} ({r['token_precision'] - res['token_precision']:+.4f})"
            )


if __name__ == "__main__":
    main()
