"""The eval report as people read it: a terminal table, one self-contained HTML file, a chart.

The HTML is one file a team attaches to a review: inline CSS, inline SVG drawn here, no
scripts, no external assets. Every value that came from a case or a run (ids, action
fields, fault names, notes) is escaped, because a case set is outside input: a note
saying ``<script>`` must show as text. The terminal table passes the same values
through :func:`baton.safetext.printable` so none can repaint the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from baton.evals.cases import Expectation
from baton.evals.records import Arm, CaseRun
from baton.evals.report import Delta, Report, is_correct, is_wrong_action
from baton.safetext import printable

MAX_DISAGREEMENTS = 20
"""Disagreeing cases the terminal table lists; the rest are counted."""

ARM_COLOURS: dict[Arm, str] = {"governed": "#2e7d32", "unchecked": "#ef6c00", "single": "#c62828"}


def _count(value: Any) -> str:
    return f"{value:,}"


def _share(value: Any) -> str:
    return f"{100 * value:.1f}%"


def _ms(value: Any) -> str:
    return f"{value:,.0f} ms"


ROWS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("cases", "runs", _count),
    ("correct", "correct (runs without a fault)", _count),
    ("accuracy", "accuracy", _share),
    ("wrong_actions", "wrong committed actions", _count),
    ("wrong_value", "  their total amount", lambda v: f"{v:,.2f}"),
    ("escalation_rate", "escalation rate", _share),
    ("human_touches_per_100", "human touches per 100 runs", lambda v: f"{v:.1f}"),
    ("input_tokens", "input tokens", _count),
    ("output_tokens", "output tokens", _count),
    ("cost", "cost", lambda v: f"{v:,.4f}"),
    ("latency_p50_ms", "latency p50", _ms),
    ("latency_p95_ms", "latency p95", _ms),
    ("faults_injected", "faults injected", _count),
    ("faults_reaching_action", "faults reaching an action", _count),
    ("faults_contained", "faults contained", _count),
)
"""Each figure's row: its name in the report, its label, how its value reads."""


def _cell(report: Report, arm: Arm, figure: str, fmt: Callable[[Any], str]) -> str:
    value = getattr(report.arms[arm], figure)
    return "n/a" if value is None else fmt(value)


def table(report: Report) -> str:
    """The report as plain fixed-width text: one row per figure, one column per arm."""
    arms = list(report.arms)
    label_width = max(len(label) for _, label, _ in ROWS)
    rows = [[label] + [_cell(report, arm, figure, fmt) for arm in arms] for figure, label, fmt in ROWS]
    widths = [max(12, len(arm), *(len(row[i + 1]) for row in rows)) for i, arm in enumerate(arms)]
    lines = [f"eval: {printable(report.process)} · {report.generated_at:%Y-%m-%d %H:%M %Z}".rstrip()]
    if report.model_note:
        lines.append(printable(report.model_note))
    lines += ["", " " * label_width + "".join(f"  {arm:>{w}}" for arm, w in zip(arms, widths, strict=True))]
    for row in rows:
        cells = "".join(f"  {cell:>{w}}" for cell, w in zip(row[1:], widths, strict=True))
        lines.append(f"{row[0]:<{label_width}}{cells}")
    if report.disagreements:
        lines += ["", f"the arms disagree on {len(report.disagreements)} case(s):"]
        shown = list(report.disagreements.items())[:MAX_DISAGREEMENTS]
        id_width = max(len(printable(case_id)) for case_id, _ in shown)
        end_width = {arm: max(len(f"{arm}={o.get(arm, '')}") for _, o in shown) for arm in arms}
        for case_id, outcomes in shown:
            ends = "  ".join(
                f"{f'{arm}={outcomes[arm]}':<{end_width[arm]}}" for arm in arms if arm in outcomes
            )
            lines.append(f"  {printable(case_id):<{id_width}}  {ends}".rstrip())
        if len(report.disagreements) > MAX_DISAGREEMENTS:
            lines.append(f"  and {len(report.disagreements) - MAX_DISAGREEMENTS} more")
    if report.notes:
        lines += ["", "notes:"] + [f"  - {printable(note)}" for note in report.notes]
    return "\n".join(lines) + "\n"


def deltas_table(deltas: Sequence[Delta]) -> str:
    """What ``--compare`` prints: only the figures that moved, before → after (change)."""
    labels = {figure: (label.strip(), fmt) for figure, label, fmt in ROWS}
    lines = []
    for delta in deltas:
        if delta.before == delta.after:
            continue
        label, fmt = labels[delta.figure]
        before = "n/a" if delta.before is None else fmt(delta.before)
        after = "n/a" if delta.after is None else fmt(delta.after)
        change = (
            "" if delta.change is None else f" ({'+' if delta.change >= 0 else '-'}{fmt(abs(delta.change))})"
        )
        lines.append(f"  {delta.arm:<10} {label:<32} {before} → {after}{change}")
    return "\n".join(["compared with the previous report:", *lines]) + "\n" if lines else "no figure moved\n"


def _nice_top(value: float) -> float:
    """The smallest of 2, 4, 10, 20, 40, 100, ... at or above ``value``: halves stay round."""
    scale = 1.0
    while True:
        for step in (2, 4, 10):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _bars(x0: int, title: str, axis: str, values: dict[Arm, float | None], top: float, fmt: str) -> str:
    """One bar chart panel, 370 px wide: title, y axis with three ticks, one bar per arm."""
    left, plot_w, plot_top, plot_h = x0 + 70, 280, 50, 180
    base = plot_top + plot_h
    parts = [
        f'<text x="{x0 + 185}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>'
    ]
    for tick in (0.0, top / 2, top):
        y = base - plot_h * tick / top
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt.format(tick)}</text>')
    parts.append(
        f'<text transform="translate({x0 + 18},{plot_top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        f"{axis}</text>"
    )
    slot = plot_w / max(1, len(values))
    for index, (arm, value) in enumerate(values.items()):
        middle = left + slot * (index + 0.5)
        height = 0.0 if value is None else plot_h * min(value, top) / top
        shown = "n/a" if value is None else fmt.format(value)
        parts.append(
            f'<rect x="{middle - slot * 0.3:.1f}" y="{base - height:.1f}" width="{slot * 0.6:.1f}" '
            f'height="{height:.1f}" fill="{ARM_COLOURS[arm]}"><title>{arm}: {shown}</title></rect>'
        )
        parts.append(
            f'<text x="{middle:.1f}" y="{base - height - 6:.1f}" text-anchor="middle">{shown}</text>'
        )
        parts.append(f'<text x="{middle:.1f}" y="{base + 18}" text-anchor="middle">{arm}</text>')
    parts.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#333"/>')
    parts.append(f'<line x1="{left}" y1="{plot_top}" x2="{left}" y2="{base}" stroke="#333"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{base + 40}" text-anchor="middle">arm</text>')
    return "\n".join(parts)


def svg_chart(report: Report) -> str:
    """Two bar charts in one standalone SVG: wrong committed actions and accuracy, per arm."""
    wrong: dict[Arm, float | None] = {arm: float(f.wrong_actions) for arm, f in report.arms.items()}
    accuracy = {arm: None if f.accuracy is None else 100 * f.accuracy for arm, f in report.arms.items()}
    top = _nice_top(max([v for v in wrong.values() if v is not None], default=0.0))
    title = escape(f"baton eval: {report.process}")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="760" height="310" viewBox="0 0 760 310" '
        f'font-family="sans-serif" font-size="12" role="img"><title>{title}</title>\n'
        '<rect width="760" height="310" fill="#fff"/>\n'
        + _bars(0, "Wrong committed actions", "wrong committed actions (runs)", wrong, top, "{:.0f}")
        + "\n"
        + _bars(380, "Accuracy", "accuracy (% of runs without a fault)", accuracy, 100.0, "{:.0f}%")
        + "\n</svg>\n"
    )


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}th{text-align:left}
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.disagree{background:#fff4e0}
.wrong{color:#b00020;font-weight:bold}.ok{color:#2e7d32}.note{color:#555}
pre{margin:0;white-space:pre-wrap;word-break:break-all;font-size:11px}"""


def _expected(expect: Expectation) -> str:
    fields = [
        f"{name} = {field.equals!r}" + (f" ± {field.tolerance:g}" if field.tolerance is not None else "")
        for name, field in expect.action.items()
    ]
    return escape(expect.outcome) + "".join(f"<br>{escape(text)}" for text in fields)


def _run_cell(expect: Expectation, run: CaseRun | None) -> str:
    if run is None:
        return "<td>—</td>"
    wrong = is_wrong_action(expect, run)
    if run.injected:
        verdict = "wrong action" if wrong else "fault contained"
    else:
        verdict = "wrong action" if wrong else "correct" if is_correct(expect, run) else "incorrect"
    parts = [
        f'<span class="{"wrong" if wrong or verdict == "incorrect" else "ok"}">{escape(run.outcome)}</span>'
    ]
    parts.append(verdict)
    if run.action and "amount" in run.action:
        parts.append("amount " + escape(str(run.action["amount"])))
    if run.injected:
        parts.append("fault: " + escape(run.injected))
    if run.escalated:
        parts.append(f"escalated, {run.human_touches} human touch(es)")
    if run.action:
        detail = escape(json.dumps(run.action, indent=1, ensure_ascii=False, default=str))
        parts.append(f"<details><summary>action</summary><pre>{detail}</pre></details>")
    return "<td>" + "<br>".join(parts) + "</td>"


def _case_row(case_id: str, expect: Expectation, runs: list[CaseRun | None], disagree: bool) -> str:
    cells = "".join(_run_cell(expect, run) for run in runs)
    mark = ' class="disagree"' if disagree else ""
    return f"<tr{mark}><th>{escape(case_id)}</th><td>{_expected(expect)}</td>{cells}</tr>"


def html(report: Report, runs: Sequence[CaseRun]) -> str:
    """The whole report as one self-contained HTML page: charts, summary, per-case detail."""
    latest = {(run.case, run.arm): run for run in runs}
    arms = list(report.arms)
    head = "".join(f"<th>{escape(arm)}</th>" for arm in arms)
    summary = "".join(
        f"<tr><th>{escape(label.strip())}</th>"
        + "".join(f'<td class="num">{escape(_cell(report, arm, figure, fmt))}</td>' for arm in arms)
        + "</tr>"
        for figure, label, fmt in ROWS
    )
    detail = "".join(
        _case_row(
            case_id, expect, [latest.get((case_id, arm)) for arm in arms], case_id in report.disagreements
        )
        for case_id, expect in report.labels.items()
    )
    notes = "".join(f"<li>{escape(note)}</li>" for note in report.notes)
    title = escape(f"baton eval: {report.process}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head><body>
<h1>{title}</h1>
<p class="note">generated {escape(report.generated_at.isoformat())} · {len(report.labels)} cases ·
arms: {escape(", ".join(arms))}</p>
{f'<p class="note">{escape(report.model_note)}</p>' if report.model_note else ""}
{svg_chart(report)}
<h2>Summary</h2>
<table><tr><th>figure</th>{head}</tr>{summary}</table>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Per case</h2>
<p class="note">{len(report.disagreements)} case(s) where the arms end differently are highlighted.</p>
<table><tr><th>case</th><th>expected</th>{head}</tr>{detail}</table>
</body></html>
"""


def write_outputs(report: Report, runs: Sequence[CaseRun], directory: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.html`` and ``chart.svg`` into ``directory`` (created).

    Returns:
        ``{"json": ..., "html": ..., "svg": ...}``, the paths written.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    outputs = {
        "json": (target / "report.json", report.to_json()),
        "html": (target / "report.html", html(report, runs)),
        "svg": (target / "chart.svg", svg_chart(report)),
    }
    for path, text in outputs.values():
        path.write_text(text, encoding="utf-8")
    return {kind: path for kind, (path, _) in outputs.items()}
