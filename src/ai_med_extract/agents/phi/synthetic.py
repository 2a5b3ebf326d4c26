"""Synthetic clinical documents with surrogate PHI, written by this project to train and test the
learned PHI detector.

Every document comes from a *template* (a kind of document: discharge summary, ED note, letter,
telephone note, radiology report, billing header, chat transcript, ...) filled with Faker values of
one *locale*, then written in one *style* (as-is, ALL CAPS legacy, lowercase dictation without
punctuation). Templates and locales are split into two families: TRAIN builds the training data,
TEST builds a test set from templates and locales that training never saw. Hard negatives (drug
names, eponyms, doses, units, scores, times) are written into the clinical text so that the model
learns what is *not* PHI. Nothing here comes from an evaluation corpus.

A document is ``{"id", "text", "spans": [{"start", "end", "label"}], "template", "locale", "style"}``.
Labels are the learned detector's classes (:data:`LABELS`).
"""

from __future__ import annotations

import logging
import random
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

VERSION = "2"  # bump when the generator's output changes: the shipped model records it

LABELS = ("NAME", "HOSPITAL", "LOCATION", "DATE", "PHONE", "ID", "EMAIL", "AGE")

TRAIN_LOCALES = (
    "en_US", "en_US", "en_US", "en_GB", "en_IN", "en_CA", "en_IE", "de_DE", "de_AT", "fr_FR", "es_ES",
    "it_IT", "nl_NL", "pl_PL", "pt_BR", "cs_CZ", "sv_SE", "no_NO", "tr_TR", "en_PH", "id_ID", "sk_SK",
)  # fmt: skip
TEST_LOCALES = ("en_AU", "en_NZ", "es_MX", "pt_PT", "da_DK", "fi_FI", "hu_HU", "ro_RO", "hr_HR", "de_CH", "nl_BE")

# --- hard negatives: look like names, places or numbers, are not PHI -----------------------------
DRUGS = (
    "metoprolol", "lisinopril", "furosemide", "heparin", "warfarin", "apixaban", "insulin glargine",
    "metformin", "atorvastatin", "amlodipine", "vancomycin", "piperacillin", "ceftriaxone", "morphine",
    "hydromorphone", "ondansetron", "pantoprazole", "levetiracetam", "propofol", "fentanyl", "Lasix",
    "Coumadin", "Zosyn", "Tylenol", "Dilaudid", "Keppra", "Lovenox", "Protonix", "albuterol", "prednisone",
    "amoxicillin", "clopidogrel", "digoxin", "haloperidol", "lorazepam", "norepinephrine", "Levophed",
)  # fmt: skip
EPONYMS = (
    "Parkinson's disease", "Crohn's disease", "Foley catheter", "Glasgow Coma Scale", "Babinski sign",
    "Hodgkin lymphoma", "Bell's palsy", "Cushing syndrome", "Graves disease", "Murphy's sign",
    "Apgar score", "Alzheimer's dementia", "Hashimoto thyroiditis", "Swan-Ganz catheter", "Whipple procedure",
    "Nissen fundoplication", "Trendelenburg position", "Barrett's esophagus", "Addison's disease",
    "Wilson's disease", "Guillain-Barre syndrome", "Kaposi sarcoma", "Meniere's disease", "Raynaud phenomenon",
    "Sjogren syndrome", "Tourette syndrome", "Wernicke encephalopathy", "Korsakoff syndrome", "Hartmann pouch",
)  # fmt: skip
FINDINGS = (
    "no acute distress", "lungs clear to auscultation", "mild bibasilar crackles", "abdomen soft, non-tender",
    "2+ pitting edema bilaterally", "regular rate and rhythm", "alert and oriented x3", "afebrile overnight",
    "tolerating diet", "ambulating with walker", "wound clean and dry", "no focal deficits",
    "sinus rhythm on monitor", "urine output adequate", "pain controlled", "skin intact",
)  # fmt: skip
UNITS = ("mg", "mcg", "g", "mL", "units", "mg/kg", "mcg/min", "mEq", "L")


def _dose(rng: random.Random) -> str:
    amount = rng.choice(["0.5", "1", "2", "2.5", "5", "10", "12.5", "20", "25", "40", "50", "100", "250", "500"])
    freq = rng.choice(["daily", "BID", "TID", "q6h", "q8h", "PRN", "at bedtime", "once", "IV", "PO", "x1"])
    return f"{amount} {rng.choice(UNITS)} {freq}"


def _score(rng: random.Random) -> str:
    return rng.choice([
        f"GCS {rng.randint(3, 15)}", f"pain {rng.randint(0, 10)}/10", f"BP {rng.randint(90, 180)}/{rng.randint(50, 100)}",
        f"HR {rng.randint(50, 130)}", f"RR {rng.randint(10, 30)}", f"SpO2 {rng.randint(88, 100)}%",
        f"T {rng.randint(36, 39)}.{rng.randint(0, 9)} C", f"NYHA class {rng.choice(['I', 'II', 'III'])}",
        f"Apgar {rng.randint(5, 9)}/{rng.randint(7, 10)}", f"Hgb {rng.randint(7, 15)}.{rng.randint(0, 9)}",
        f"K {rng.randint(3, 5)}.{rng.randint(0, 9)}", f"INR {rng.randint(1, 3)}.{rng.randint(0, 9)}",
        f"EF {rng.randint(20, 65)}%", f"{rng.randint(1, 4)}+ edema", f"BMI {rng.randint(18, 40)}",
        f"FiO2 {rng.choice([21, 30, 40, 50])}%", f"PEEP {rng.choice([5, 8, 10])}", f"weight {rng.randint(45, 120)} kg",
    ])  # fmt: skip


def _time(rng: random.Random) -> str:
    h, m = rng.randint(0, 23), rng.choice([0, 5, 15, 20, 30, 45])
    return rng.choice([f"{h:02d}:{m:02d}", f"{h:02d}{m:02d}", f"{h % 12 or 12}{rng.choice(['am', 'pm', ' PM', ' AM'])}"])


# --- surrogate PHI ------------------------------------------------------------------------------
_HOSPITAL_FORMS = (
    "{city} General Hospital", "St. {last}'s Hospital", "{city} Medical Center", "{last} Memorial Hospital",
    "{city} Royal Infirmary", "Hospital {last}", "Klinikum {city}", "Centre Hospitalier de {city}",
    "{city} University Hospital", "Ospedale {last}", "{city} Community Clinic", "{last} Health Centre",
    "Hospital Universitario {city}", "{city} Children's Hospital", "Szpital {city}", "{last} Family Practice",
)  # fmt: skip
_STREET_FORMS = ("{n} {last} Street", "{last}weg {n}", "Rua {last}, {n}", "{n} rue {last}", "Via {last} {n}",
                 "ul. {last} {n}", "{last}gatan {n}", "{n} {last} Road", "Calle {last} {n}", "{last}straat {n}")


@dataclass(slots=True)
class Surrogates:
    """Fake PHI values of one locale, drawn from Faker with a per-document seed."""

    fake: Any
    rng: random.Random
    ascii_only: bool

    def _a(self, value: str) -> str:
        value = " ".join(value.split())
        if self.ascii_only:
            value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
        return value

    def _call(self, provider: str, fallback: Callable[[], str]) -> str:
        """A Faker provider of this locale, or the fallback where the locale lacks it."""
        try:
            return str(getattr(self.fake, provider)())
        except AttributeError:
            return fallback()

    def first(self) -> str:
        return self._a(self.fake.first_name())

    def last(self) -> str:
        return self._a(self.fake.last_name())

    def name(self) -> str:
        r = self.rng.random()
        if r < 0.6:
            return f"{self.first()} {self.last()}"
        if r < 0.75:
            return f"{self.last()}, {self.first()}"
        if r < 0.9:
            return f"{self.first()} {self.first()[0]}. {self.last()}"
        return self._a(self.fake.name())

    def city(self) -> str:
        return self._a(self._call("city", lambda: self.last() + "ville"))

    def street(self) -> str:
        value = self._call("street_address", str)
        if not value or self.rng.random() < 0.25:
            value = self.rng.choice(_STREET_FORMS).format(n=self.rng.randint(1, 999), last=self.last())
        return self._a(value)

    def postcode(self) -> str:
        return self._a(self._call("postcode", lambda: str(self.rng.randint(10000, 99999))))

    def hospital(self) -> str:
        return self._a(self.rng.choice(_HOSPITAL_FORMS).format(city=self.city(), last=self.last()))

    def company(self) -> str:
        return self._a(self._call("company", lambda: f"{self.last()} Ltd"))

    def phone(self) -> str:
        r = self.rng.random()
        d = self.rng.randint
        if r < 0.55:
            return self._a(self._call("phone_number", lambda: f"{d(200, 999)} {d(100, 999)} {d(1000, 9999)}"))
        return self.rng.choice([
            f"{d(10, 99)}-{d(10, 99)}-{d(10, 99)}-{d(10, 99)}", f"+{d(1, 99)} {d(100, 999)} {d(100, 999)} {d(100, 999)}",
            f"({d(200, 999)}) {d(200, 999)}-{d(1000, 9999)}", f"0{d(1, 9)} {d(1000, 9999)} {d(1000, 9999)}",
            f"{d(200, 999)}.{d(200, 999)}.{d(1000, 9999)}", f"0{d(7000, 7999)} {d(100000, 999999)}",
            f"+{d(30, 49)} {d(1, 9)} {d(10, 99)} {d(10, 99)} {d(10, 99)} {d(10, 99)}",
            f"{d(200, 999)}-{d(1000, 9999)}", f"x{d(1000, 9999)}",
        ])  # fmt: skip

    def date(self) -> str:
        day = date(1930, 1, 1) + timedelta(days=self.rng.randint(0, 34000))
        months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                  "October", "November", "December"]  # fmt: skip
        mon = months[day.month - 1]
        return self.rng.choice([
            f"{day.month}/{day.day}/{day.year}", f"{day.day:02d}/{day.month:02d}/{day.year}",
            f"{day.day}.{day.month}.{day.year}", f"{day.year}-{day.month:02d}-{day.day:02d}",
            f"{mon} {day.day}, {day.year}", f"{day.day} {mon} {day.year}", f"{day.day} {mon[:3]} {day.year}",
            f"{mon[:3]} {day.day}", f"{day.month}/{day.day}", f"{day.day}-{mon[:3]}-{day.year % 100:02d}",
            f"{day.month:02d}/{day.day:02d}/{day.year % 100:02d}", f"{mon} {day.year}",
        ])  # fmt: skip

    def identifier(self) -> str:
        d, rng = self.rng.randint, self.rng
        kind = rng.random()
        if kind < 0.15:
            return self._a(self._call("ssn", lambda: f"{d(100, 899)}-{d(10, 99)}-{d(1000, 9999)}"))
        if kind < 0.25:
            return self._a(self._call("iban" if rng.random() < 0.5 else "license_plate", lambda: f"{d(10**7, 10**8)}"))
        letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(rng.randint(1, 3)))
        return rng.choice([
            f"{d(1000000, 99999999)}", f"{letters}{d(100000, 9999999)}", f"{letters}-{d(10000, 999999)}",
            f"{d(100, 999)} {d(100, 999)} {d(1000, 9999)}", f"{d(10, 99)}-{d(100000, 999999)}-{d(0, 9)}",
            f"{letters}{d(10, 99)}-{d(1000, 9999)}-{letters}", f"#{d(100000, 9999999)}",
        ])  # fmt: skip

    def email(self) -> str:
        if self.rng.random() < 0.85:
            return self._a(self._call("email", lambda: f"{self.first().lower()}@example.org"))
        return self._a(self._call("url", lambda: "https://example.org"))

    def age(self) -> str:
        return str(self.rng.randint(90, 104))


# --- templates ----------------------------------------------------------------------------------
# A template is text with slots. PHI slots: {name} {first} {last} {city} {street} {zip} {hospital}
# {company} {phone} {date} {id} {email} {age}. Negative slots (unlabelled): {drug} {eponym} {dose}
# {score} {time} {finding} {young} (an age under 90).
_SLOT_LABEL = {
    "name": "NAME", "first": "NAME", "last": "NAME", "city": "LOCATION", "street": "LOCATION",
    "zip": "LOCATION", "hospital": "HOSPITAL", "company": "HOSPITAL", "phone": "PHONE", "date": "DATE",
    "id": "ID", "email": "EMAIL", "age": "AGE",
}  # fmt: skip

TRAIN_TEMPLATES: dict[str, str] = {
    "discharge": (
        "DISCHARGE SUMMARY\nPatient: {name}    MRN: {id}\nDOB: {date}    Admitted: {date}    Discharged: {date}\n"
        "Attending: Dr. {last}\nHospital course: {young}-year-old with {eponym} admitted to {hospital} with "
        "{finding}. Started {drug} {dose}; {score}. Seen by Dr. {name} from cardiology on {date}.\n"
        "Follow-up with Dr. {last} at {hospital}, phone {phone}.\n"
    ),
    "ed_note": (
        "ED NOTE {date} {time}\n{name} is a {young} y/o brought in by EMS from home in {city}. {score}, {score}. "
        "Hx of {eponym}. Given {drug} {dose} at {time}. Wife {first} at bedside, contact {phone}. "
        "Exam: {finding}. Dispo: admit to medicine.\n"
    ),
    "nursing": (
        "Nursing progress note {time}: pt {finding}, {score}. {drug} {dose} given. Family ({first} and "
        "{first}) visited, updated by RN {first}. Pt's son {name} will call {phone} tonight. {score}.\n"
    ),
    "letter": (
        "{hospital}\n{street}\n{zip} {city}\n\n{date}\n\nDear Dr. {last},\n\nThank you for referring "
        "{name} (DOB {date}, ID {id}), who I saw in clinic today. She has {eponym} and takes {drug} {dose}. "
        "{finding}. I have asked her to return on {date}.\n\nYours sincerely,\n\n{name}\nConsultant, {hospital}\n"
        "Tel {phone} | {email}\n"
    ),
    "telephone": (
        "Telephone encounter {date} {time}\nCaller: {name} (daughter). My name is {first} and I am calling about "
        "my mother, {name}. She is out of {drug}. Callback number {phone}. Advised to continue {drug} {dose}.\n"
        "Spoke with {first} at {time}.\n"
    ),
    "radiology": (
        "RADIOLOGY REPORT\nName: {name}  Acc#: {id}  Exam date: {date}\nReferring: {name}, MD\n"
        "CT HEAD WITHOUT CONTRAST. Indication: {eponym}, {score}. Findings: no hemorrhage. "
        "Comparison {date}. Dictated by {name} MD at {hospital} {date} {time}.\n"
    ),
    "pathology": (
        "SURGICAL PATHOLOGY\nPatient {last}, {first}   Case {id}   Collected {date}   Received {date}\n"
        "Specimen: colon, sigmoid. Clinical history: {eponym}. Diagnosis: adenocarcinoma, grade 2. "
        "Pathologist: {name}, {hospital}.\n"
    ),
    "billing": (
        "BILLING\nAccount: {id}   Insurance ID: {id}   Policy {id}\nGuarantor: {name}\nAddress: {street}, {city} {zip}\n"
        "Phone: {phone}  Email: {email}\nService date {date}  CPT 99213  Amount due 125.00\n"
    ),
    "dictation": (
        "this is doctor {last} dictating on {name} date of birth {date} seen today at {hospital} "
        "she is {young} years old with {eponym} on {drug} {dose} {finding} plan follow up with "
        "doctor {last} in {city} call her at {phone} end of dictation\n"
    ),
    "legacy_caps": (
        "PT NAME: {name}   UNIT NO: {id}\nADM {date}   RM 4{young}\nDX: {eponym}\nMEDS: {drug} {dose}, {drug} {dose}\n"
        "NOK: {name} (HUSBAND) {phone}\nRESIDES {street} {city}\nSEEN BY DR {last} {date}\n"
    ),
    "chat": (
        "{first}: Did you call {first} about the results?\n{first}: Yes, left a message at {phone}.\n"
        "{first}: Ok. {last} needs {drug} {dose} before {time}.\n{first}: Will do. Her {score} this morning.\n"
    ),
    "address_block": (
        "Patient address: {name}, {street}, {zip} {city}\nNext of kin: {name}, {street}, {city}\n"
        "GP: Dr {name}, {company}, {phone}\n"
    ),
    "nonagenarian": (
        "{age} year old woman from {city} with {eponym}, {finding}. Lives with her grandson {first} at "
        "{street}. {score}.\n"
    ),
    "soap": (
        "S: {young}yo M c/o chest pain since {date}. Took {drug}.\nO: {score}, {score}. {finding}.\n"
        "A: r/o ACS. {eponym} hx.\nP: {drug} {dose}; recheck {time}. D/w Dr. {last} and PCP {name}.\n"
    ),
    "portal_message": (
        "Message from patient portal, {date}\nHi, this is {name}. I moved to {street}, {zip} {city} last month, "
        "please update my file. My new mobile is {phone} and my e-mail {email}. Insurance member no. {id}.\n"
    ),
    "referral_form": (
        "Referral\nSurname: {last}   Given name: {first}   Date of birth: {date}\nHome address: {street}\n"
        "Town: {city}   Postcode: {zip}\nTelephone: {phone}\nNational ID: {id}\nReferred to: {hospital}\n"
        "Reason: {eponym}; {score}.\n"
    ),
    "social_history": (
        "Social: lives alone in {city}, works at {company}. Daughter {first} {last} visits; son-in-law "
        "{first} is the contact ({phone}). Former smoker. Drinks socially.\n"
    ),
    "handover": (
        "Handover {time}: bed 12 {last}, {young}F, {eponym}. {score}. Plan {drug} {dose}. "
        "Covering: Dr {first} {last} (bleep {phone}). Family {first} aware.\n"
    ),
    "systems_review": (
        "NEURO: A+Ox3, MAE, PERRL 3mm brisk. Sedated on {drug} gtt. CV: SR 80s-90s, no ectopy. {score}. "
        "RESP: LS clear bilat, O2 2L NC, sats 95-98%. Suctioned sm amt thick secretions. GI: abd soft, +BS, "
        "tol clears. GU: Foley draining clear yellow urine 30-50cc/hr. ID: Tmax 99.1, WBC 11.2, on {drug}. "
        "SKIN: intact. PLAN: cont {drug} {dose}, wean as tol, f/u AM labs, lytes repleted prn.\n"
    ),
    "vent_flowsheet": (
        "Resp care: pt remains on SIMV 14 x 600, PS 10, PEEP 5, FiO2 40%. ABG 7.38/42/96. RSBI 65. BS coarse, "
        "sx for mod amts tan secretions. MDI given. Plan to wean to CPAP {time} if tolerates. {score}, {score}.\n"
    ),
    "negatives": (
        "Continue {drug} {dose} and {drug} {dose}. {eponym} stable. {score}; {score}. {finding}. "
        "Next dose at {time}. Monitor for {eponym}.\n"
    ),
}

TEST_TEMPLATES: dict[str, str] = {
    "transfer": (
        "Inter-facility transfer form\nFrom: {hospital}   To: {hospital}\nPatient {name}, born {date}, record {id}\n"
        "Reason: {eponym} with {finding}. Current meds {drug} {dose}. Receiving physician {name}. "
        "Report called to {first} at {phone} on {date} {time}.\n"
    ),
    "consult_letter": (
        "Re: {name}, {street}, {city} {zip}\n\nDear {first},\nI reviewed your patient on {date}. {finding}; {score}. "
        "Please continue {drug} {dose}. Kind regards, {name}, {hospital} ({email})\n"
    ),
    "voicemail": (
        "voicemail left {date} hi this is {first} {last} calling for doctor {last} my number is {phone} "
        "i am out of my {drug} thanks\n"
    ),
    "op_note": (
        "OPERATIVE NOTE  Date of surgery: {date}\nSurgeon: {name}  Assistant: {name}\nProcedure: {eponym} repair. "
        "Anesthesia: {drug}. EBL 200 mL. {score}. Patient {last} tolerated well, to PACU at {time}.\n"
    ),
    "caps_summary": (
        "MR {last} IS A {young} YEAR OLD MAN LIVING AT {street} {city}. SEEN {date} AT {hospital}. "
        "TEL {phone}. ID {id}. {eponym}. {drug} {dose}.\n"
    ),
    "group_chat": (
        "{first}: {last} in bed 4 is asking for {drug}\n{first}: ok I'll ask {first}\n"
        "{first}: family ({name}) on {phone}\n"
    ),
    "intake": (
        "New patient intake {date}\nName {name} | DOB {date} | Phone {phone} | Email {email}\n"
        "Address {street}, {zip} {city} | Employer {company} | Insurance {id}\nHistory: {eponym}, {score}.\n"
    ),
    "oldest_old": "Patient aged {age}, resident of {city}, admitted {date} with {eponym}; {drug} {dose} started.\n",
}

_SLOT = re.compile(r"\{(\w+)\}")


def _fill(slot: str, s: Surrogates, rng: random.Random) -> str:
    negatives: dict[str, Callable[[], str]] = {
        "drug": lambda: rng.choice(DRUGS), "eponym": lambda: rng.choice(EPONYMS), "dose": lambda: _dose(rng),
        "score": lambda: _score(rng), "time": lambda: _time(rng), "finding": lambda: rng.choice(FINDINGS),
        "young": lambda: str(rng.randint(1, 88)),
    }  # fmt: skip
    if slot in negatives:
        return negatives[slot]()
    fillers = {
        "name": s.name, "first": s.first, "last": s.last, "city": s.city, "street": s.street, "zip": s.postcode,
        "hospital": s.hospital, "company": s.company, "phone": s.phone, "date": s.date, "id": s.identifier,
        "email": s.email, "age": s.age,
    }  # fmt: skip
    return fillers[slot]()


def _style_text(value: str, style: str) -> str:
    if style == "upper":
        return value.upper()
    if style == "lower":
        return re.sub(r"[.,;:()|]", "", value.lower())
    return value


def render(template: str, s: Surrogates, rng: random.Random, style: str) -> tuple[str, list[dict[str, Any]]]:
    parts: list[str] = []
    spans: list[dict[str, Any]] = []
    pos = 0
    length = 0
    for m in _SLOT.finditer(template):
        literal = _style_text(template[pos : m.start()], style)
        parts.append(literal)
        length += len(literal)
        value = _style_text(_fill(m.group(1), s, rng), style).strip()
        label = _SLOT_LABEL.get(m.group(1))
        if label and value:
            spans.append({"start": length, "end": length + len(value), "label": label})
        parts.append(value)
        length += len(value)
        pos = m.end()
    parts.append(_style_text(template[pos:], style))
    return "".join(parts), spans


def generate(family: str, n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` documents of the TRAIN or TEST family, the same for the same seed."""
    logging.getLogger("faker").setLevel(logging.ERROR)  # en_PH bank numbers log a notice per value
    yield from _generate(family, n, seed)


def _generate(family: str, n: int, seed: int) -> Iterator[dict[str, Any]]:
    from faker import Faker

    templates = TRAIN_TEMPLATES if family == "train" else TEST_TEMPLATES
    locales = TRAIN_LOCALES if family == "train" else TEST_LOCALES
    rng = random.Random(f"{family}-{seed}")
    fakers: dict[str, Any] = {}
    names = sorted(templates)
    for i in range(n):
        locale = rng.choice(locales)
        if locale not in fakers:
            fakers[locale] = Faker(locale)
        fake = fakers[locale]
        fake.seed_instance(rng.randint(0, 2**31))
        kinds = [rng.choice(names) for _ in range(rng.choice((1, 1, 2, 3)))]
        style = rng.choices(["as-is", "upper", "lower"], weights=[0.7, 0.15, 0.15])[0]
        if kinds[0] in ("dictation", "voicemail"):
            style = "lower"
        if kinds[0] in ("legacy_caps", "caps_summary"):
            style = "upper"
        s = Surrogates(fake, rng, ascii_only=rng.random() < 0.5)
        text, spans = "", []
        for kind in kinds:
            part, part_spans = render(templates[kind], s, rng, style)
            spans += [{**sp, "start": sp["start"] + len(text), "end": sp["end"] + len(text)} for sp in part_spans]
            text += part + "\n"
        yield {"id": f"{family}-{i}", "text": text, "spans": spans, "template": "+".join(kinds), "locale": locale,
               "style": style}
