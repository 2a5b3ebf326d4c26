"""Precision/recall/F1 of medical extraction per entity type, attribute F1 and context accuracy.

    python bench/medical_eval.py [--data bench/data/medical_eval.jsonl] [--build] [--show-errors]

The labelled set (``bench/data/medical_eval.src``, converted to JSONL with ``--build``) is text written
for this project. A predicted item matches a gold item of the same type when their character spans
overlap. Attribute F1 (medication name/dose/frequency/route, lab name/value, vital kind/value) counts
a true positive only when the matched item also has the right value. Context accuracy is measured on
matched problems, medications, procedures and allergies.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

TYPES = {"P": "problem", "M": "medication", "R": "procedure", "L": "lab", "V": "vital", "A": "allergy"}
LISTS = {"problem": "problems", "medication": "medications", "procedure": "procedures", "lab": "labs",
         "vital": "vitals", "allergy": "allergies"}
FLAGS = {"neg": "negated", "unc": "uncertain", "hist": "historical", "fam": "family"}


def build(src: Path, out: Path) -> int:
    notes = []
    blocks = re.split(r"^=== ", src.read_text("utf-8"), flags=re.M)[1:]
    for block in blocks:
        note_id, rest = block.split("\n", 1)
        text, gold_lines = rest.split("\n---\n", 1)
        text = text.strip("\n") + "\n"
        cursor = 0
        entities = []
        for line in gold_lines.strip().splitlines():
            kind, surface, attrs = (line.split("|") + [""])[:3]
            # gold items are listed in reading order: each is searched from the previous one's start
            start = text.find(surface, cursor)
            if start < 0:
                raise SystemExit(f"{note_id}: surface not found after offset {cursor}: {surface!r}")
            cursor = start + len(surface)
            entity: dict[str, object] = {"type": TYPES[kind], "start": start, "end": start + len(surface),
                                         "text": surface}
            for attr in filter(None, (a.strip() for a in attrs.split(";"))):
                key, _, value = attr.partition("=")
                if key in FLAGS:
                    entity[FLAGS[key]] = True
                elif key in ("prn", "nka"):
                    entity[key] = True
                elif key in ("dose", "value"):
                    entity[key] = float(value)
                else:
                    entity[key] = value
            entities.append(entity)
        notes.append({"id": note_id.strip(), "text": text, "entities": entities})
    out.write_text("".join(json.dumps(n) + "\n" for n in notes), "utf-8")
    return len(notes)


def _name(value: object) -> str:
    return re.sub(r"[\s-]+", " ", str(value or "").lower()).strip()


def attribute_values(kind: str, item: dict) -> dict[str, object]:
    """The attributes scored for a type, from a predicted item (model_dump) or a gold entity."""

    if kind == "medication":
        dose = item.get("dose")
        return {
            "name": _name(item.get("name")) or None,
            "dose": (round(float(dose), 3), item.get("unit")) if dose is not None else None,
            "frequency": item.get("freq", item.get("frequency")),
            "route": item.get("route"),
            "status": item.get("status"),
        }
    if kind == "lab":
        return {"name": _name(item.get("name")) or None,
                "value": round(float(item["value"]), 3) if item.get("value") is not None else None,
                "flag": item.get("flag")}
    if kind == "vital":
        return {"kind": item.get("kind"), "value": item.get("value")}
    if kind == "allergy":
        if item.get("nka") or item.get("no_known_allergies"):
            return {}
        return {"substance": _name(item.get("substance")) or None}
    return {}


def same(attr: str, gold: object, pred: object) -> bool:
    if attr == "dose" and gold is not None and pred is not None:
        g, p = gold, pred  # (value, unit); a gold dose without unit compares the value only
        return g[0] == p[0] and (g[1] is None or g[1] == p[1])  # type: ignore[index]
    if attr == "value" and gold is not None and pred is not None:
        return abs(float(gold) - float(pred)) <= 0.15  # type: ignore[arg-type]
    if attr in ("name", "substance") and gold is not None and pred is not None:
        return gold == pred or str(gold).rstrip("s") == str(pred).rstrip("s")
    return gold == pred


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def evaluate(notes: list[dict], extractor, show_errors: bool = False) -> dict:  # noqa: ANN001
    counts = {t: [0, 0, 0] for t in LISTS}
    attr_counts: dict[str, list[int]] = {}
    flag_counts = {f: [0, 0] for f in FLAGS.values()}
    errors: list[str] = []
    elapsed = 0.0
    for note in notes:
        t0 = time.perf_counter()
        result = extractor.extract(note["text"])
        elapsed += time.perf_counter() - t0
        for kind, list_name in LISTS.items():
            preds = [p.model_dump() for p in getattr(result, list_name)]
            golds = [g for g in note["entities"] if g["type"] == kind]
            used: set[int] = set()
            pairs = []
            for g in golds:
                best, best_overlap = None, 0
                for i, p in enumerate(preds):
                    if i in used:
                        continue
                    overlap = min(g["end"], p["end"]) - max(g["start"], p["start"])
                    if overlap > best_overlap:
                        best, best_overlap = i, overlap
                if best is None:
                    counts[kind][2] += 1
                    errors.append(f"{note['id']} FN {kind}: {g['text']!r}")
                else:
                    used.add(best)
                    counts[kind][0] += 1
                    pairs.append((g, preds[best]))
            for i, p in enumerate(preds):
                if i not in used:
                    counts[kind][1] += 1
                    errors.append(f"{note['id']} FP {kind}: {p['text']!r} ({p.get('name') or p.get('kind')})")
            # attribute slot F1
            matched_preds = {id(p) for _, p in pairs}
            for g, p in pairs:
                gv, pv = attribute_values(kind, g), attribute_values(kind, p)
                for attr, gold_value in gv.items():
                    if kind == "medication" and attr == "status" and gold_value is None:
                        gold_value = "active" if not g.get("negated") else "not-taken"
                    c = attr_counts.setdefault(f"{kind}.{attr}", [0, 0, 0])
                    pred_value = pv.get(attr)
                    if gold_value is None and pred_value is None:
                        continue
                    if gold_value is not None and pred_value is not None and same(attr, gold_value, pred_value):
                        c[0] += 1
                    else:
                        if pred_value is not None:
                            c[1] += 1
                        if gold_value is not None:
                            c[2] += 1
                        errors.append(f"{note['id']} ATTR {kind}.{attr}: {g['text']!r} gold={gold_value!r} "
                                      f"pred={pred_value!r}")
                if kind in ("problem", "medication", "procedure", "allergy") and not g.get("nka"):
                    ctx = p["context"]
                    predicted = {"negated": ctx["negated"], "uncertain": ctx["uncertain"],
                                 "historical": ctx["historical"], "family": ctx["subject"] == "family"}
                    for flag, value in predicted.items():
                        flag_counts[flag][1] += 1
                        if bool(g.get(flag)) == value:
                            flag_counts[flag][0] += 1
                        else:
                            errors.append(f"{note['id']} CTX {flag}: {g['text']!r} gold={bool(g.get(flag))}")
            for p in preds:
                if id(p) in matched_preds:
                    continue
                for attr, value in attribute_values(kind, p).items():
                    if value is not None and not (kind == "medication" and attr == "status"):
                        attr_counts.setdefault(f"{kind}.{attr}", [0, 0, 0])[1] += 1
    if show_errors:
        print("\n".join(errors))
    report = {
        "notes": len(notes),
        "seconds": round(elapsed, 3),
        "entities": {k: dict(zip(("precision", "recall", "f1"), map(lambda x: round(x, 4), prf(*v)), strict=True))
                     | {"tp": v[0], "fp": v[1], "fn": v[2]} for k, v in counts.items()},
        "attributes": {k: dict(zip(("precision", "recall", "f1"), map(lambda x: round(x, 4), prf(*v)), strict=True))
                       for k, v in sorted(attr_counts.items())},
        "context_accuracy": {k: round(v[0] / v[1], 4) if v[1] else None for k, v in flag_counts.items()},
    }
    tp, fp, fn = (sum(v[i] for v in counts.values()) for i in range(3))
    report["micro"] = dict(zip(("precision", "recall", "f1"), map(lambda x: round(x, 4), prf(tp, fp, fn)), strict=True))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "medical_eval.jsonl")
    parser.add_argument("--build", action="store_true", help="rebuild the JSONL from its .src file")
    parser.add_argument("--holdout", action="store_true",
                        help="use the held-out notes (medical_eval_holdout), never used to tune the rules")
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if args.holdout:
        args.data = ROOT / "data" / "medical_eval_holdout.jsonl"
    if args.build or not args.data.exists():
        n = build(args.data.with_suffix(".src"), args.data)
        print(f"built {n} notes into {args.data}")
    notes = [json.loads(line) for line in args.data.read_text("utf-8").splitlines() if line.strip()]

    from ai_med_extract.agents.medical.extractor import MedicalExtractor

    extractor = MedicalExtractor()
    extractor.warm_up()  # build the lexicons and pipeline outside the timed part
    report = evaluate(notes, extractor, args.show_errors)
    print(f"\n{report['notes']} notes, rules mode, {report['seconds']} s")
    print(f"{'type':<12}{'P':>8}{'R':>8}{'F1':>8}{'tp':>6}{'fp':>6}{'fn':>6}")
    for kind, m in report["entities"].items():
        print(f"{kind:<12}{m['precision']:>8.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{m['tp']:>6}{m['fp']:>6}{m['fn']:>6}")
    print(f"{'micro':<12}{report['micro']['precision']:>8.3f}{report['micro']['recall']:>8.3f}"
          f"{report['micro']['f1']:>8.3f}")
    print("\nattribute F1 (strict: matched item with the right value)")
    for attr, m in report["attributes"].items():
        print(f"  {attr:<22} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}")
    print("\ncontext accuracy on matched items")
    for flag, acc in report["context_accuracy"].items():
        print(f"  {flag:<12} {acc}")
    gates = {
        "medication.name F1": report["attributes"].get("medication.name", {}).get("f1", 0),
        "medication.dose F1": report["attributes"].get("medication.dose", {}).get("f1", 0),
        "medication.frequency F1": report["attributes"].get("medication.frequency", {}).get("f1", 0),
        "negation accuracy": report["context_accuracy"]["negated"] or 0,
    }
    print("\nquality bar (>= 0.95)")
    ok = True
    for name, value in gates.items():
        passed = value >= 0.95
        ok &= passed
        print(f"  {name:<26} {value:.3f} {'ok' if passed else 'BELOW'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), "utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
