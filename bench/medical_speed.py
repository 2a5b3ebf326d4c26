"""Notes per second: the rules-mode extractor against a plain medspaCy pipeline, same notes, same run.

    python bench/medical_speed.py [--rounds 3] [--data bench/data/medical_eval.jsonl]

The peer is ``medspacy.load()`` (tokenizer, PyRuSH sentences, target matcher, ConText with the default
rules), built once and run on each note; it finds no entities of its own (no target rules), so it is the
floor cost of a medspaCy pass. Ours adds lexicons, attribute rules, sections, codes and the pydantic
output. Both pipelines are built before timing starts; the best of ``--rounds`` passes is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))


def best_rate(run, notes: list[str], rounds: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for text in notes:
            run(text)
        best = min(best, time.perf_counter() - t0)
    return len(notes) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "medical_eval.jsonl")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    notes = [json.loads(line)["text"] for line in args.data.read_text("utf-8").splitlines() if line.strip()]

    from loguru import logger

    logger.disable("PyRuSH")  # PyRuSH logs every sentence at DEBUG
    import medspacy

    from ai_med_extract.agents.medical.extractor import MedicalExtractor

    t0 = time.perf_counter()
    peer = medspacy.load()
    peer_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = MedicalExtractor()
    ours.warm_up()
    ours_build = time.perf_counter() - t0

    for text in notes[:3]:  # warm caches of both
        peer(text)
        ours.extract(text)
    peer_rate = best_rate(peer, notes, args.rounds)
    ours_rate = best_rate(ours.extract, notes, args.rounds)
    chars = sum(len(t) for t in notes)
    print(f"{len(notes)} notes, {chars / len(notes):.0f} characters on average, best of {args.rounds}")
    print(f"  plain medspaCy (medspacy.load())   {peer_rate:8.1f} notes/s   built in {peer_build:.1f} s")
    print(f"  ai-med-extract rules mode          {ours_rate:8.1f} notes/s   built in {ours_build:.1f} s")
    print(f"  ratio ours / medspaCy              {ours_rate / peer_rate:8.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "notes": len(notes), "peer_notes_per_s": peer_rate, "ours_notes_per_s": ours_rate,
            "ratio": ours_rate / peer_rate, "peer_build_s": peer_build, "ours_build_s": ours_build,
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
