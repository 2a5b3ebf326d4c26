"""Combine the layers' spans: overlapping spans become one, keeping the most specific label."""

from __future__ import annotations

from ai_med_extract.agents.phi.types import PhiLabel, PhiSpan

# when two layers disagree on overlapping text, the earlier label wins
_PRIORITY = [
    PhiLabel.EMAIL, PhiLabel.URL, PhiLabel.IP_ADDRESS, PhiLabel.SSN, PhiLabel.MRN, PhiLabel.HEALTH_PLAN,
    PhiLabel.ACCOUNT, PhiLabel.LICENSE, PhiLabel.VEHICLE, PhiLabel.DEVICE, PhiLabel.BIOMETRIC,
    PhiLabel.PHOTO, PhiLabel.FAX, PhiLabel.PHONE, PhiLabel.ADDRESS, PhiLabel.ZIP, PhiLabel.DATE,
    PhiLabel.AGE, PhiLabel.YEAR, PhiLabel.HOSPITAL, PhiLabel.LOCATION, PhiLabel.NAME, PhiLabel.ID,
]  # fmt: skip
_JOINABLE = frozenset({PhiLabel.NAME, PhiLabel.HOSPITAL, PhiLabel.LOCATION})
_RANK = {label: i for i, label in enumerate(_PRIORITY)}


def merge_spans(spans: list[PhiSpan], text: str) -> list[PhiSpan]:
    """Sorted, non-overlapping spans. Neighbouring name or place spans separated by one space are
    joined ("Janet" + "Gateman" -> "Janet Gateman") so operators see whole names."""
    if not spans:
        return []
    spans = sorted(spans, key=lambda s: (s.start, -s.end))
    out: list[PhiSpan] = []
    for s in spans:
        if out and s.start < out[-1].end:
            prev = out[-1]
            start, end = prev.start, max(prev.end, s.end)
            if _RANK[s.label] < _RANK[prev.label] and (s.end - s.start) >= (prev.end - prev.start) // 2:
                label, detector, recognizer = s.label, s.detector, s.recognizer
            else:
                label, detector, recognizer = prev.label, prev.detector, prev.recognizer
            out[-1] = PhiSpan(start, end, label, max(prev.score, s.score), detector, recognizer)
        else:
            out.append(s)
    joined: list[PhiSpan] = []
    for s in out:
        if (
            joined and s.label is joined[-1].label and s.label in _JOINABLE
            and text[joined[-1].end : s.start] in (" ", "-", ". ")
        ):
            prev = joined[-1]
            joined[-1] = PhiSpan(
                prev.start, s.end, prev.label, max(prev.score, s.score), prev.detector, prev.recognizer
            )
        else:
            joined.append(s)
    return joined
