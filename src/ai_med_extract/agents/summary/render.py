"""Markdown rendering of a summary (statements carry their citations as ``[F1, F2]``)."""

from __future__ import annotations

from .facts import fmt_number
from .output import Section, Statement, Trend


def _statement(s: Statement) -> str:
    text = s.text
    if s.flags:
        text += f" _(unverified: {', '.join(s.flags)})_"
    if s.citations:
        text += f" [{', '.join(s.citations[:8])}{', ...' if len(s.citations) > 8 else ''}]"
    return text


def _trend_table(trends: list[Trend]) -> list[str]:
    rows = ["| Measure | Latest | Date | Previous | Trend |", "|---|---|---|---|---|"]
    for t in trends:
        unit = f" {t.unit}" if t.unit else ""
        prev = f"{fmt_number(t.previous)}{unit}" if t.previous is not None else "-"
        rows.append(f"| {t.title} | {fmt_number(t.latest)}{unit} | {t.latest_date} | {prev} | {t.direction} |")
    return rows


def render_markdown(title: str, sections: dict[str, Section], trends: list[Trend] | None = None) -> str:
    lines = [f"# {title}", ""]
    prose = {"narrative", "assessment"}
    for key, section in sections.items():
        lines += [f"## {section.title}", ""]
        if key == "vitals_labs" and trends:
            lines += _trend_table(trends) + [""]
        for s in section.statements:
            generated = any(x.generated for x in section.statements)
            lines.append(_statement(s) if key in prose and generated else f"- {_statement(s)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
