"""Rebuild the learned PHI detector (``make phi-model``): reproducible, CPU, a few minutes.

Training data: synthetic documents of the TRAIN template/locale family
(:mod:`ai_med_extract.agents.phi.synthetic`) plus the development notes of one patient half
(``learned.DEV_HALF``), each also re-cased (ALL CAPS, lowercase) so letter case is no cue. The other
patient half, the TEST family and every held-out corpus are never seen. The model is written to
``agents/phi/model/`` with its fingerprint in ``meta.json``.

usage: python -m ai_med_extract.agents.phi.training [--dev PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ai_med_extract.agents.phi import synthetic

# what goes into the training set; part of the model's fingerprint
RECIPE = {"synthetic_docs": 6000, "dev_recased_share": 1.0, "validation_docs": 300, "version": 2}

DEV_LABELS = {
    "HCPName": "NAME", "PTName": "NAME", "PTNameInitial": "NAME", "RelativeProxyName": "NAME",
    "Date": "DATE", "DateYear": "DATE", "Location": "LOCATION", "Phone": "PHONE", "Age": "AGE", "Other": "ID",
}  # fmt: skip


def find_dev_data() -> Path:
    """The development notes: $AME_PHI_DEV_DATA, else ``shared/data/phi`` beside the checkout or one up."""
    env = os.environ.get("AME_PHI_DEV_DATA")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[4]
    for base in (root.parent, root.parent.parent):
        candidate = base / "shared" / "data" / "phi" / "deid-dev.jsonl"
        if candidate.is_file():
            return candidate
    return root.parent / "shared" / "data" / "phi" / "deid-dev.jsonl"


def patient_half(docs: Iterable[dict[str, Any]], half: str) -> Iterator[dict[str, Any]]:
    for d in docs:
        if int(d.get("patient", 0)) % 2 == (0 if half == "even" else 1):
            yield d


def dev_docs(path: Path, half: str, recased_share: float, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    with path.open(encoding="utf-8") as fh:
        notes = [json.loads(line) for line in fh]
    for d in patient_half(notes, half):
        spans = [{"start": s["start"], "end": s["end"], "label": DEV_LABELS[s["label"]]} for s in d["spans"]]
        out.append({"text": d["text"], "spans": spans})
        if rng.random() < recased_share:
            recased = d["text"].upper() if rng.random() < 0.5 else d["text"].lower()
            if len(recased) == len(d["text"]):
                out.append({"text": recased, "spans": spans})
    return out


def to_docbin(nlp: Any, docs: Iterable[dict[str, Any]]) -> Any:
    from spacy.tokens import DocBin
    from spacy.util import filter_spans

    db = DocBin(store_user_data=False)
    for d in docs:
        doc = nlp.make_doc(d["text"])
        ents = []
        for s in d["spans"]:
            span = doc.char_span(s["start"], s["end"], label=s["label"], alignment_mode="expand")
            if span is not None and span.text.strip():
                ents.append(span)
        doc.ents = filter_spans(ents)
        db.add(doc)
    return db


def build(dev_path: Path, out_dir: Path) -> dict[str, Any]:
    import spacy
    from spacy.cli.train import train

    from ai_med_extract.agents.phi import learned

    seed = learned.SEED
    train_docs = list(synthetic.generate("train", int(RECIPE["synthetic_docs"]), seed))
    if dev_path.is_file():
        train_docs += dev_docs(dev_path, learned.DEV_HALF, float(RECIPE["dev_recased_share"]), seed)
    random.Random(seed).shuffle(train_docs)
    # validation (best-model choice only): more TRAIN-family documents with another seed
    val_docs = list(synthetic.generate("train", int(RECIPE["validation_docs"]), seed + 1))
    nlp = spacy.blank("en")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        to_docbin(nlp, train_docs).to_disk(work / "train.spacy")
        to_docbin(nlp, val_docs).to_disk(work / "dev.spacy")
        overrides = {"paths.train": str(work / "train.spacy"), "paths.dev": str(work / "dev.spacy"), "system.seed": seed}
        train(learned.CONFIG_PATH, work / "out", overrides=overrides, use_gpu=-1)
        best = work / "out" / "model-best"
        meta = json.loads((best / "meta.json").read_text("utf-8"))
        meta["name"] = "phi_learned"
        meta["ai_med_extract"] = {
            "fingerprint": learned.training_fingerprint(),
            "generator_version": synthetic.VERSION,
            "seed": seed,
            "recipe": RECIPE,
            "dev_half": learned.DEV_HALF if dev_path.is_file() else None,
            "training_documents": len(train_docs),
        }
        (best / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), "utf-8")
        # The string table is not shipped: the model hashes each token's text at run time, so the
        # table would only carry the training tokens (among them the development notes' surrogates).
        (best / "vocab" / "strings.json").write_text("[]", "utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(best, out_dir)
    return meta


def main() -> None:
    from ai_med_extract.agents.phi import learned

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", type=Path, default=None, help="development notes (one patient half is used)")
    ap.add_argument("--out", type=Path, default=learned.MODEL_DIR)
    a = ap.parse_args()
    meta = build(a.dev or find_dev_data(), a.out)
    print(json.dumps({"model": str(a.out), **meta["ai_med_extract"], "performance": meta.get("performance")}))  # noqa: T201


if __name__ == "__main__":
    main()
