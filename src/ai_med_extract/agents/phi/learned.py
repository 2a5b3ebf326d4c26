"""The learned PHI detector: a small spaCy NER pipeline (tok2vec + ner) trained by this project.

It runs on every token of every document (not only on doubtful windows). The model ships in the
package (``agents/phi/model/``, a few MB) and is rebuilt by ``make phi-model``
(:mod:`ai_med_extract.agents.phi.training`) from the project's own synthetic documents plus one
patient half of the development notes, with a fixed seed. Its ``meta.json`` records a fingerprint
of what built it; :func:`training_fingerprint` recomputes it from the current config, generator
version and seed, and a test fails when they disagree.

Decision rule (recall first): a span the model flags is PHI unless the clinical allow-list
(clinical terms, eponyms, drug names) explains every word of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ai_med_extract.agents.phi import synthetic
from ai_med_extract.agents.phi.recognizers import DetectionContext, Recognizer
from ai_med_extract.agents.phi.types import PhiLabel, PhiSpan

if TYPE_CHECKING:
    from ai_med_extract.agents.phi.lexicon import Lexicon

MODEL_DIR = Path(str(resources.files("ai_med_extract.agents.phi").joinpath("model")))
CONFIG_PATH = Path(str(resources.files("ai_med_extract.agents.phi").joinpath("data").joinpath("learned.cfg")))
SEED = 0
DEV_HALF = "even"  # the development notes' patient half used for training; the other half is for scoring
CHUNK = 20_000  # characters per model call, cut at line ends (spaCy handles far more; this bounds memory)

_LABELS = {
    "NAME": PhiLabel.NAME, "HOSPITAL": PhiLabel.HOSPITAL, "LOCATION": PhiLabel.LOCATION, "DATE": PhiLabel.DATE,
    "PHONE": PhiLabel.PHONE, "ID": PhiLabel.ID, "EMAIL": PhiLabel.EMAIL, "AGE": PhiLabel.AGE,
}  # fmt: skip
_WORDY = frozenset({PhiLabel.NAME, PhiLabel.HOSPITAL, PhiLabel.LOCATION})
_MONTH = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|\b(?:19|20)\d\d\b", re.IGNORECASE
)
_NUMERIC_DATE = re.compile(r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b|\b\d{1,2}[.-]\d{1,2}[.-]\d{2,4}\b|\b\d{4}-\d{2}-\d{2}\b")
_MEASURE = re.compile(r"\d\s*(?:mg|mcg|ml|cc|l|lpm|units?|u|meq|mmhg|kg|g|%|hrs?|min)\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_][\w'-]*")
_RANGE_OF_VALUES = re.compile(r"\d+\s*-\s*\d+'?s\b")  # "90-100's", "60-70s": a run of readings
_SHIFT = re.compile(r"(?:[01]\d|2[0-3])[0-5]\d\s*-\s*(?:[01]\d|2[0-3])[0-5]\d")  # "1900-0700": a shift


def training_fingerprint(config_text: str | None = None) -> str:
    """Hash of everything that decides the trained model: config, generator version, seed, data recipe."""
    from ai_med_extract.agents.phi import training

    text = config_text if config_text is not None else CONFIG_PATH.read_text("utf-8")
    recipe = {
        "config": hashlib.sha256(text.encode()).hexdigest(),
        "generator": synthetic.VERSION,
        "labels": list(synthetic.LABELS),
        "seed": SEED,
        "dev_half": DEV_HALF,
        "recipe": training.RECIPE,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def shipped_fingerprint(model_dir: Path = MODEL_DIR) -> str | None:
    meta = model_dir / "meta.json"
    if not meta.is_file():
        return None
    value = json.loads(meta.read_text("utf-8")).get("ai_med_extract", {}).get("fingerprint")
    return str(value) if value else None


def chunks(text: str, size: int = CHUNK) -> Iterable[tuple[int, str]]:
    """(offset, piece) with pieces cut at line ends, so no identifier is split between two calls."""
    pos = 0
    while pos < len(text):
        end = min(len(text), pos + size)
        if end < len(text):
            cut = text.rfind("\n", pos, end)
            end = cut + 1 if cut > pos else end
        yield pos, text[pos:end]
        pos = end


class LearnedRecognizer(Recognizer):
    """Runs the shipped spaCy model over the whole text. Its spans score below the propagation
    threshold (0.75): a word the model alone flagged is not spread over the rest of the document."""

    name = "learned"

    def __init__(self, model_dir: Path = MODEL_DIR, score: float = 0.7) -> None:
        self.model_dir = model_dir
        self.score = score
        self._nlp: Any = None
        self._lock = threading.Lock()

    @property
    def is_available(self) -> bool:
        return (self.model_dir / "meta.json").is_file()

    def load(self) -> Any:
        with self._lock:
            if self._nlp is None:
                import spacy

                self._nlp = spacy.load(self.model_dir)
            return self._nlp

    def find(self, ctx: DetectionContext) -> Iterable[PhiSpan]:
        nlp = self.load()
        lx = ctx.lexicon
        out: list[PhiSpan] = []
        offsets, pieces = zip(*chunks(ctx.text), strict=True) if ctx.text else ((), ())
        for offset, doc in zip(offsets, nlp.pipe(pieces), strict=True):
            for ent in doc.ents:
                label = _LABELS.get(ent.label_)
                if label is None:
                    continue
                # an entity never crosses a line end: judge each line of it on its own
                pos = ent.start_char
                for line in ent.text.split("\n"):
                    a = pos + len(line) - len(line.lstrip())
                    b = pos + len(line.rstrip())
                    pos += len(line) + 1
                    if b > a and keep(doc.text[a:b], label, lx):
                        if label is PhiLabel.LOCATION:
                            b = extend_place(doc.text, b, lx)
                        out.append(PhiSpan(offset + a, offset + b, label, self.score, f"learned.{ent.label_.lower()}"))
        return out


_NEXT_PLACE = re.compile(r",? ((?:[^\W\d_][\w'-]*)(?: [^\W\d_][\w'-]*){0,2})")


def extend_place(text: str, end: int, lx: Lexicon) -> int:
    """A street or postcode is followed by its town ("602 00 Brno", "Avenida Paulista 900, Sao Paulo"):
    take up to three following words on the same line that are not ordinary words."""
    m = _NEXT_PLACE.match(text, end)
    if m is None:
        return end
    taken = end
    for w in re.finditer(r"[^\W\d_][\w'-]*", m.group(1)):
        low = w.group(0).lower()
        caseless = not any(c.islower() for c in text[end : m.end()]) or not any(c.isupper() for c in text[end : m.end()])
        if low in lx.stop or (low in lx.frequent and low not in lx.cities) or low in lx.clinical or low in lx.drugs:
            break
        if not caseless and not w.group(0)[:1].isupper():
            break
        taken = m.start(1) + w.end()
    return taken


_INSTITUTION = frozenset({
    "hospital", "hospitals", "clinic", "clinics", "centre", "center", "infirmary", "klinikum", "klinik", "ospedale",
    "hopital", "hôpital", "szpital", "practice", "medical", "health", "university", "institute", "hospice", "home",
    "hospitalier", "universitario", "sanatorium", "surgery", "memorial", "general", "st", "saint", "royal",
    "care", "nemocnice", "ziekenhuis", "sjukhus", "krankenhaus", "policlinico", "ltd", "inc", "gmbh",
})  # fmt: skip
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _misspelt(word: str, lx: Lexicon) -> bool:
    """A long word that is not a known name and is one edit away from an ordinary word ("moniter")."""
    if len(word) < 6 or not word.isalpha() or lx.is_name_word(word) or word in lx.cities:
        return False
    english = lx.english
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    for a, b in splits:
        if b and a + b[1:] in english:
            return True
        if len(b) > 1 and a + b[1] + b[0] + b[2:] in english:
            return True
        for c in _LETTERS:
            if (b and a + c + b[1:] in english) or a + c + b in english:
                return True
    return False


def _calendar(value: str) -> bool:
    """Day and month in range in either order (7/22, 22.07.2019, 2019-07-22)."""
    parts = [int(p) for p in re.split(r"[/.-]", value)]
    if len(parts) == 3 and parts[0] > 31:
        parts = parts[1:]
    a, b = parts[0], parts[1]
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)


def keep(text: str, label: PhiLabel, lx: Lexicon) -> bool:
    """Recall-first decision on one model span: kept unless it is shown not to be PHI, i.e. every word
    is an ordinary or clinical word that is not also a name or place (the allow-list), or a number
    lacks the shape of its kind (a dose, a range, a vital sign)."""
    if label in _WORDY:
        # hyphenated words are judged part by part ("drip-", "up-infusing"; "Smith-Jones" stays a name)
        whole = _WORD.findall(text)
        words = [p for w in whole for p in w.lower().removesuffix("'s").split("-") if p]
        if not words:
            digits = sum(c.isdigit() for c in text)
            # a postcode on its own has a run of 3+ digits ("602 00", "12-345"; "15-10" is a setting)
            return label is PhiLabel.LOCATION and 4 <= digits <= 7 and bool(re.search(r"\d{3}", text))
        if len(whole) > 6:
            return False
        explained = [
            w in lx.stop or w in lx.clinical or w in lx.drugs
            or (w in lx.english and w not in lx.first_names and w not in lx.cities
                and (w not in lx.surnames or w in lx.frequent or w.removesuffix("s") in lx.frequent))
            or _misspelt(w, lx)
            for w in words
        ]  # fmt: skip
        if all(explained):
            return False
        if label is PhiLabel.HOSPITAL and not any(w in _INSTITUTION for w in words):
            return len(words) <= 3  # an organisation without an institution word: short proper names only
        return True
    digits = sum(c.isdigit() for c in text)
    if label is PhiLabel.EMAIL:
        return "@" in text or "www" in text.lower() or "://" in text
    if label is PhiLabel.AGE:
        return text.strip().isdigit() and 90 <= int(text.strip()) <= 125
    if _MEASURE.search(text) or _RANGE_OF_VALUES.search(text):
        return False
    if label is PhiLabel.DATE and _SHIFT.fullmatch(text.strip()):
        return False
    if label is PhiLabel.PHONE:
        letters = [w.lower() for w in re.findall(r"[A-Za-z]{2,}", text)]
        return digits >= 7 and all(w in ("ext", "tel", "ph", "phone") for w in letters)
    if label is PhiLabel.DATE:
        return bool(_MONTH.search(text)) or any(_calendar(m.group(0)) for m in _NUMERIC_DATE.finditer(text))
    return digits >= 5 or (digits >= 4 and not re.search(r"[/.]", text))  # ID
