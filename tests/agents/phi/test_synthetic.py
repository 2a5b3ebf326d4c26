"""The training-data generator: TRAIN and TEST families apart, offsets right, output reproducible."""

from __future__ import annotations

from ai_med_extract.agents.phi import synthetic


def test_generator_families_do_not_share_templates_or_locales() -> None:
    assert not set(synthetic.TRAIN_TEMPLATES) & set(synthetic.TEST_TEMPLATES)
    assert not set(synthetic.TRAIN_LOCALES) & set(synthetic.TEST_LOCALES)
    docs = list(synthetic.generate("test", 20, 1))
    assert {d["locale"] for d in docs} <= set(synthetic.TEST_LOCALES)
    for d in docs:
        for s in d["spans"]:
            assert d["text"][s["start"] : s["end"]].strip() and s["label"] in synthetic.LABELS
    assert docs == list(synthetic.generate("test", 20, 1))


def test_generated_documents_cover_every_style_and_label() -> None:
    docs = list(synthetic.generate("train", 300, 0))
    assert {d["style"] for d in docs} == {"as-is", "upper", "lower"}
    assert {s["label"] for d in docs for s in d["spans"]} == set(synthetic.LABELS)
    assert len({d["locale"] for d in docs}) >= 15
    negatives = [d for d in docs if "negatives" in d["template"]]
    assert negatives and all(
        d["text"][s["start"] : s["end"]].lower() not in {e.lower() for e in synthetic.EPONYMS}
        for d in negatives for s in d["spans"]
    )
