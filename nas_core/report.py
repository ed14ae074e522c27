r"""Model cards: a candidate's architecture, data, accuracy per group, fairness and costs, in Markdown and HTML.

The HTML card is one self-contained file (inline SVG charts, no scripts, no
external assets) so it can be attached to an e-mail or an ethics application.
Every number shown carries its bootstrap interval and each group its test-set
size, because a small group cannot carry a two-decimal claim.

Metadata (class and group names, run and data set names, rationales) comes from users and
LLMs, so in the Markdown card it is HTML-escaped (a Markdown viewer renders raw HTML) and, in
table cells, ``|`` is escaped as ``\|`` and newlines are flattened, so a name cannot break a
table. The HTML card unescapes that Markdown text once and escapes it again for HTML.
"""

from __future__ import annotations

import datetime as _dt
import html
import re
from dataclasses import dataclass

from nas_core.records import Candidate, Metrics

#: Groups with fewer test samples than this are flagged in the card.
SMALL_GROUP = 30


@dataclass(frozen=True)
class CardContext:
    """What the card says beyond the candidate itself."""

    run_name: str
    dataset_name: str
    dataset_summary: str = ""  # one paragraph: source, size, classes, attributes
    training: str = ""  # one line: the run's training settings
    env: str = ""  # one line: the deployment target
    preprocessing: tuple[str, ...] = ()  # input preprocessing steps and the class-index map (models.export)


def _md(text: object) -> str:
    """Free text for Markdown: HTML escaped, on one line."""
    return html.escape(str(text), quote=False).replace("\r", " ").replace("\n", " ")


def _cell(text: object) -> str:
    """Text for a Markdown table cell: :func:`_md` plus ``|`` escaped."""
    return _md(text).replace("|", "\\|")


_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _cells(row: str) -> list[str]:
    r"""The cells of a Markdown table row, ``\|`` kept inside its cell."""
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(inner)]


def _h(text: str) -> str:
    """Markdown text of this card as HTML: undo the Markdown-level escaping once, escape for HTML."""
    return html.escape(html.unescape(text))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(m: Metrics, name: str) -> str:
    iv = m.fairness.interval(name)
    return "" if iv is None else f" [{iv[0]:.4f}, {iv[1]:.4f}]"


def _arch_lines(c: Candidate) -> list[str]:
    if c.baseline:
        return [f"Hand-made baseline: `{_md(c.baseline)}`."]
    s = c.spec
    lines = [f"- stem: conv {s.stem.out_channels} channels, kernel {s.stem.kernel}, stride {s.stem.stride}"]
    for i, b in enumerate(s.blocks):
        extra = f", expand {b.expand}" if b.type == "mbconv" else ""
        lines.append(
            f"- block {i}: {b.type}, {b.out_channels} channels, kernel {b.kernel}, stride {b.stride}{extra}, "
            f"norm {b.norm}, act {b.act}{', SE' if b.se else ''}"
            f"{f', dropout {b.dropout}' if b.dropout else ''}{'' if b.pool == 'none' else f', {b.pool} pool'}"
        )
    lines.append(f"- head: hidden {s.head.hidden or 'none'}, dropout {s.head.dropout}")
    return lines


def model_card_markdown(c: Candidate, ctx: CardContext) -> str:
    """The model card as Markdown.

    Raises:
        ValueError: when the candidate has no metrics yet.
    """
    m = c.metrics
    if m is None:
        raise ValueError(f"candidate {c.id} has no metrics yet; wait for its evaluation to finish")
    fr, hw = m.fairness, m.hardware
    out = [
        f"# Model card: candidate {c.id} of run “{_md(ctx.run_name)}”",
        "",
        f"Generated {_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by EquiNAS Studio.",
        "",
    ]
    if m.estimate:
        out += ["> **Super-network estimate.** These numbers come from a weight-sharing super-network, "
                "not from training this model alone. Fine-tune it before relying on them.", ""]
    out += ["## Architecture", "", f"Key `{c.key}`, proposed by `{_md(c.origin)}`.", ""] + _arch_lines(c)
    if c.rationale:
        out += ["", f"Rationale: {_md(c.rationale)}"]
    out += ["", "## Data", "", f"Data set: {_md(ctx.dataset_name)}. {_md(ctx.dataset_summary)}".strip()]
    if ctx.training:
        out += ["", f"Training: {_md(ctx.training)}"]
    if ctx.preprocessing:
        out += ["", "## Input preprocessing", ""] + [f"{i}. {_md(s)}" for i, s in enumerate(ctx.preprocessing, 1)]
    out += [
        "", "## Accuracy", "",
        # A super-network estimate is scored on the validation split: it must not be called a test result.
        f"- {'validation (estimate)' if m.estimate else 'test'} accuracy {_pct(m.test_acc)} (n = {fr.n}), "
        f"balanced accuracy {_pct(m.balanced_acc)}",
        f"- validation accuracy {_pct(m.val_acc)}, train accuracy {_pct(m.train_acc)}",
        "", "| class | recall |", "|---|---|",
    ]
    out += [f"| {_cell(name)} | {_pct(r)} |" for name, r in m.per_class_recall]
    out += ["", "## Accuracy per group", "", "| attribute | group | n | accuracy | 95% interval | note |",
            "|---|---|---|---|---|---|"]
    for g in fr.groups:
        iv = f"{_pct(g.accuracy_ci[0])} – {_pct(g.accuracy_ci[1])}" if g.accuracy_ci else ""
        note = "excluded from fairness metrics" if g.group == "unknown" else (
            "too few samples to trust" if g.n < SMALL_GROUP else "")
        out.append(f"| {_cell(g.attribute)} | {_cell(g.group)} | {g.n} | {_pct(g.accuracy)} | {iv} | {note} |")
    out += [
        "", "## Fairness", "",
        f"- Unfairness {_num(fr.unfairness)}{_ci(m, 'unfairness')}",
        f"- EODD {_num(fr.eodd)}{_ci(m, 'eodd')}",
        f"- EOPP1 {_num(fr.eopp1)}{_ci(m, 'eopp1')}",
        f"- EOPP2 {_num(fr.eopp2)}{_ci(m, 'eopp2')}",
        "", "| attribute | Unfairness | EODD | EOPP1 | EOPP2 |", "|---|---|---|---|---|",
    ]
    out += [f"| {_cell(a.attribute)} | {_num(a.unfairness)} | {_num(a.eodd)} | {_num(a.eopp1)} | {_num(a.eopp2)} |"
            for a in fr.attributes]
    out += [
        "", "## Hardware", "",
        f"- parameters {hw.params:,}; MACs {hw.macs:,}; size {hw.size_mb:.2f} MB",
        f"- latency {_num(hw.latency_image_s, 6)} s per image at batch {hw.batch_size} "
        f"({hw.device}, {hw.threads} threads); batch 1: {_num(hw.latency_b1_s, 6)} s"
        + ("" if hw.latency_cpu_image_s is None else
           f"; CPU time {_num(hw.latency_cpu_image_s, 6)} s per image (all threads; barely moves with load)")
        + ("" if hw.latency_spread is None else f"; rounds spread {100 * hw.latency_spread:.0f}%"),
        f"- throughput {_num(hw.throughput, 1)} images/s; peak inference memory "
        f"{_num(hw.peak_memory_mb, 1)} MB ({hw.memory_method or 'method not recorded'})",
    ]
    if ctx.env:
        out.append(f"- target: {_md(ctx.env)}")
    out += ["", "## Limits", "",
            "Metrics are measured on the held-out test split of the data set above; groups with few test "
            "images have wide intervals. Performance on other populations, devices or image sources is "
            "not established by this card."]
    return "\n".join(out) + "\n"


def _svg_group_bars(m: Metrics) -> str:
    groups = [g for g in m.fairness.groups if g.accuracy is not None]
    if not groups:
        return ""
    w, bar, gap, h = 640, 26, 8, 0
    rows = []
    for i, g in enumerate(groups):
        y = 10 + i * (bar + gap)
        width = int(400 * g.accuracy)
        colour = "#bbbbbb" if g.group == "unknown" else ("#f4a582" if g.n < SMALL_GROUP else "#4393c3")
        label = html.escape(f"{g.attribute}: {g.group} (n={g.n})")
        rows.append(
            f'<text x="0" y="{y + 18}" font-size="12">{label}</text>'
            f'<rect x="200" y="{y}" width="{width}" height="{bar}" fill="{colour}"/>'
            f'<text x="{205 + width}" y="{y + 18}" font-size="12">{_pct(g.accuracy)}</text>'
        )
        h = y + bar + 10
    x_overall = 200 + int(400 * m.test_acc)
    rows.append(f'<line x1="{x_overall}" y1="0" x2="{x_overall}" y2="{h}" stroke="#b2182b" '
                f'stroke-dasharray="4"/><text x="{x_overall + 3}" y="{h + 12}" font-size="11" '
                f'fill="#b2182b">overall {_pct(m.test_acc)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 20}" role="img" '
            f'aria-label="accuracy per group">{"".join(rows)}</svg>')


def model_card_html(c: Candidate, ctx: CardContext) -> str:
    """The model card as one self-contained HTML page (Markdown content plus an SVG chart)."""
    md = model_card_markdown(c, ctx)
    body: list[str] = []
    table: list[str] = []

    def flush_table() -> None:
        if table:
            head, *rest = table
            body.append("<table><tr>" + "".join(f"<th>{_h(x)}</th>" for x in _cells(head)) + "</tr>")
            for row in rest[1:]:
                body.append("<tr>" + "".join(f"<td>{_h(x)}</td>" for x in _cells(row)) + "</tr>")
            body.append("</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("# "):
            body.append(f"<h1>{_h(line[2:])}</h1>")
        elif line.startswith("## "):
            title = line[3:]
            body.append(f"<h2>{_h(title)}</h2>")
            if title == "Accuracy per group":
                body.append(_svg_group_bars(c.metrics))  # type: ignore[arg-type]
        elif line.startswith("- "):
            body.append(f"<li>{_h(line[2:])}</li>")
        elif line.startswith("> "):
            body.append(f"<blockquote>{_h(line[2:]).replace('**', '')}</blockquote>")
        elif line.strip():
            body.append(f"<p>{_h(line)}</p>")
    flush_table()
    style = ("body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
             "blockquote{background:#fff3cd;padding:8px;border-left:4px solid #e0a800}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Model card</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
