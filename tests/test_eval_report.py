"""The eval report's arithmetic on a hand-counted set, its gate, its comparison and its renderings.

Pure: no Temporal server. Every figure asserted below is counted by hand in the comments
next to the runs, so a change to the arithmetic shows up as a changed number here.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from baton.errors import BatonUsageError
from baton.evals.cases import EvalCase, load_cases
from baton.evals.records import CaseRun
from baton.evals.render import ROWS, deltas_table, html, svg_chart, table, write_outputs
from baton.evals.report import FIGURES, Delta, Report, build_report, compare, fail_if, nearest_rank

WHEN = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PRICES = {"m1": {"input_per_million": 2.0, "output_per_million": 8.0}}
NOTE = "measures the governance mechanics with a scripted stand-in LLM, not a model"


def _case(
    case_id: str, outcome: str, amount: float | None = None, tolerance: float | None = None
) -> EvalCase:
    expect: dict[str, Any] = {"outcome": outcome}
    if amount is not None:
        expect["action"] = {"amount": {"equals": amount, "tolerance": tolerance}}
    return EvalCase.model_validate({"id": case_id, "case": {"order": case_id}, "expect": expect})


CASES = [
    _case("ok-1", "actioned", 100.0, 0.01),
    _case("late-1", "rejected"),
    _case("big-1", "escalated", 500.0),
    _case("ok-2", "actioned", 50.0, 0.5),
    _case("inj-1", "actioned", 80.0),  # every arm gets an inflated amount injected
    _case("inj-2", "rejected"),  # every arm gets a wrong customer injected
]


def _run(
    case: str,
    arm: str,
    outcome: str,
    latency: float,
    amount: float | None = None,
    tokens: tuple[int, int] = (0, 0),
    **fields: Any,
) -> CaseRun:
    """One run; ``amount`` alone stands for an action ``{"amount": amount}``."""
    action = fields.pop("action", None if amount is None else {"amount": amount})
    return CaseRun.model_validate(
        {"case": case, "arm": arm, "outcome": outcome, "escalated": False, "human_touches": 0, "model": "m1"}
        | {"latency_ms": latency, "action": action, "input_tokens": tokens[0], "output_tokens": tokens[1]}
        | fields
    )


# fmt: off
GOVERNED = [
    _run("ok-1", "governed", "actioned", 100, 100.004, (1000, 200)),  # within 0.01 of 100: correct
    _run("late-1", "governed", "rejected", 80, None, (800, 100)),  # refused: correct
    # a person saw it and approved the expected amount: correct, and not a wrong action
    _run("big-1", "governed", "actioned", 5000, 500, (1200, 300), escalated=True, human_touches=1),
    _run("ok-2", "governed", "actioned", 120, 50.4, (1000, 200)),  # within 0.5 of 50: correct
    # corrupted, escalated, two touches, rejected: contained (and left out of accuracy)
    _run("inj-1", "governed", "rejected", 7000, None, (1500, 300), injected="inflated_amount",
         escalated=True, human_touches=2),
    _run("inj-2", "governed", "invalid_input", 60, None, (500, 50), injected="wrong_customer"),  # contained
]
UNCHECKED = [
    _run("ok-1", "unchecked", "actioned", 50, 100, (900, 150)),  # correct
    _run("late-1", "unchecked", "actioned", 40, 40, (900, 150)),  # labelled rejected: wrong, 40
    _run("big-1", "unchecked", "actioned", 45, 500, (900, 150)),  # nobody saw it: incorrect, wrong, 500
    _run("ok-2", "unchecked", "actioned", 55, 55, (900, 150)),  # 5 off, beyond 0.5: incorrect, wrong, 55
    _run("inj-1", "unchecked", "actioned", 30, 800, (900, 150), injected="inflated_amount"),  # wrong, 800
    _run("inj-2", "unchecked", "actioned", 35, 20, (900, 150), injected="wrong_customer"),  # wrong, 20
]
SINGLE = [  # "big-model" has no price: the single arm's cost is unknown
    _run("ok-1", "single", "actioned", 300, 100, (2000, 400), model="big-model"),  # correct
    _run("late-1", "single", "rejected", 310, None, (2000, 400), model="big-model"),  # correct
    # refused without asking anyone: incorrect (no escalation), but not a wrong action
    _run("big-1", "single", "rejected", 290, None, (2000, 400), model="big-model"),
    _run("ok-2", "single", "failed", 1000, error="timed out"),  # incorrect; no tokens, so no price needed
    _run("inj-1", "single", "actioned", 305, 800, (2000, 400), model="big-model",
         injected="inflated_amount"),  # wrong, 800
    _run("inj-2", "single", "actioned", 295, None, (2000, 400), model="big-model", injected="wrong_customer",
         action={"customer_id": "CUS-9"}),  # wrong, no amount
]
# fmt: on
RUNS = GOVERNED + UNCHECKED + SINGLE


@pytest.fixture
def report() -> Report:
    return build_report(
        CASES, RUNS, process="refund-request", prices=PRICES, model_note=NOTE, generated_at=WHEN
    )


def test_every_figure_matches_the_hand_count(report: Report) -> None:
    governed, unchecked, single = (report.arms[arm] for arm in ("governed", "unchecked", "single"))
    # governed: clean runs ok-1, late-1, big-1, ok-2 all correct → 4/4; no wrong action;
    # escalated big-1 and inj-1 → 2/6; touches 1 + 2 = 3 → 50 per 100; tokens
    # 1000+800+1200+1000+1500+500 = 6000 in, 200+100+300+200+300+50 = 1150 out;
    # cost 6000·2/1e6 + 1150·8/1e6 = 0.0212; latencies 60 80 100 120 5000 7000:
    # p50 = rank ceil(3) = 100, p95 = rank ceil(5.7) = 6 → 7000; both faults contained.
    assert governed.model_dump() == dict(
        cases=6, correct=4, accuracy=1.0, wrong_actions=0, wrong_value=0.0, escalation_rate=2 / 6,
        human_touches_per_100=50.0, input_tokens=6000, output_tokens=1150, cost=pytest.approx(0.0212, abs=1e-12),
        latency_p50_ms=100, latency_p95_ms=7000, faults_injected=2, faults_reaching_action=0, faults_contained=2,
    )  # fmt: skip
    # unchecked: only ok-1 correct of 4 clean → 0.25; wrong late-1 40, big-1 500, ok-2 55,
    # inj-1 800, inj-2 20 → 5, 1415; tokens 6·900, 6·150; cost 5400·2/1e6 + 900·8/1e6 = 0.018;
    # latencies 30 35 40 45 50 55: p50 = 40, p95 = 55; both faults reached an action.
    assert unchecked.model_dump() == dict(
        cases=6, correct=1, accuracy=0.25, wrong_actions=5, wrong_value=1415.0, escalation_rate=0.0,
        human_touches_per_100=0.0, input_tokens=5400, output_tokens=900, cost=pytest.approx(0.018, abs=1e-12),
        latency_p50_ms=40, latency_p95_ms=55, faults_injected=2, faults_reaching_action=2, faults_contained=0,
    )  # fmt: skip
    # single: ok-1, late-1 correct of 4 clean → 0.5; wrong inj-1 (800) and inj-2 (no amount);
    # tokens 5·2000, 5·400; cost unknown; latencies 290 295 300 305 310 1000: p50 300, p95 1000.
    assert single.model_dump() == dict(
        cases=6, correct=2, accuracy=0.5, wrong_actions=2, wrong_value=800.0, escalation_rate=0.0,
        human_touches_per_100=0.0, input_tokens=10000, output_tokens=2000, cost=None,
        latency_p50_ms=300, latency_p95_ms=1000, faults_injected=2, faults_reaching_action=2, faults_contained=0,
    )  # fmt: skip
    # ok-1 ends actioned everywhere; every other case ends differently somewhere
    assert report.disagreements == {
        "late-1": {"governed": "rejected", "unchecked": "actioned", "single": "rejected"},
        "big-1": {"governed": "actioned", "unchecked": "actioned", "single": "rejected"},
        "ok-2": {"governed": "actioned", "unchecked": "actioned", "single": "failed"},
        "inj-1": {"governed": "rejected", "unchecked": "actioned", "single": "actioned"},
        "inj-2": {"governed": "invalid_input", "unchecked": "actioned", "single": "actioned"},
    }
    assert report.notes == [
        "single: 1 run(s) failed (the workflow failed or timed out)",
        "single: no price for big-model; cost not computed",
    ]
    assert (report.process, report.generated_at, report.model_note) == ("refund-request", WHEN, NOTE)


def test_a_rerun_replaces_the_earlier_run_and_strangers_are_left_out() -> None:
    earlier = _run("ok-1", "governed", "failed", 9999)
    stranger = _run("not-in-the-set", "governed", "actioned", 1, 1)
    report = build_report(CASES, [earlier, *GOVERNED, stranger], process="p", generated_at=WHEN)
    assert report.arms["governed"].cases == 6
    assert report.arms["governed"].latency_p95_ms == 7000
    assert list(report.arms) == ["governed"]
    assert report.disagreements == {}
    assert report.notes[:2] == [
        "1 case id(s) in the runs are not in the case set; left out",
        "some cases ran more than once in an arm; the last run counts",
    ]
    # no price table at all: every run with tokens is unpriced
    assert report.arms["governed"].cost is None


def test_a_malformed_price_table_is_refused() -> None:
    with pytest.raises(BatonUsageError, match=r"price table: m1\.output_per_million: Field required"):
        build_report(CASES, RUNS, process="p", prices={"m1": {"input_per_million": 1.0}})


def test_nearest_rank_is_an_observed_value() -> None:
    assert nearest_rank([], 50) == 0.0
    assert nearest_rank([7.0], 95) == 7.0
    assert nearest_rank([float(v) for v in range(1, 11)], 50) == 5.0
    assert nearest_rank([float(v) for v in range(100, 0, -1)], 95) == 95.0


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("wrong_actions > 0", False),
        ("accuracy < 1.0 || faults_reaching_action > 0", False),
        ("arms.unchecked.wrong_actions > 0", True),
        ("arms.unchecked.accuracy < 0.9", True),
        ("arms.single.accuracy < 0.6 && arms.governed.wrong_value == 0.0", True),  # single's cost is null
        ("disagreements >= 5", True),
        ("cost < 0.05", True),
    ],
)
def test_fail_if(report: Report, expression: str, expected: bool) -> None:
    assert fail_if(report, expression) is expected


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("accuracy >", "syntax error"),
        ("wrong_actoins > 0", "Undefined variable"),
        ("wrong_actions", "expected a boolean"),
        ("arms.single.cost > 1.0", "No such overload"),  # an unknown cost, compared
    ],
)
def test_a_bad_fail_if_expression_is_a_usage_error(report: Report, expression: str, why: str) -> None:
    with pytest.raises(BatonUsageError) as caught:
        fail_if(report, expression)
    message = str(caught.value)
    assert message.startswith(f"--fail-if {expression!r}: ")
    assert why in message
    assert "figures: cases, correct, accuracy" in message


def test_compare_gives_every_figure_before_after_and_change(report: Report) -> None:
    # before the spec change, the governed arm also actioned late-1 (a wrong action of 40)
    worse = [_run("late-1", "governed", "actioned", 80, 40, (800, 100))]
    previous = build_report(CASES, RUNS + worse, process="refund-request", prices=PRICES, generated_at=WHEN)
    deltas = compare(report, previous)
    assert len(deltas) == 3 * len(FIGURES)
    moved = {(d.arm, d.figure): d for d in deltas if d.change}
    assert moved == {
        ("governed", "correct"): Delta("governed", "correct", 3, 4, 1),
        ("governed", "accuracy"): Delta("governed", "accuracy", 0.75, 1.0, 0.25),
        ("governed", "wrong_actions"): Delta("governed", "wrong_actions", 1, 0, -1),
        ("governed", "wrong_value"): Delta("governed", "wrong_value", 40.0, 0.0, -40.0),
    }
    cost = next(d for d in deltas if (d.arm, d.figure) == ("single", "cost"))
    assert cost == Delta("single", "cost", None, None, None)
    assert deltas_table(deltas).splitlines() == [
        "compared with the previous report:",
        "  governed   correct (runs without a fault)   3 → 4 (+1)",
        "  governed   accuracy                         75.0% → 100.0% (+25.0%)",
        "  governed   wrong committed actions          1 → 0 (-1)",
        "  governed   their total amount               40.00 → 0.00 (-40.00)",
    ]
    assert deltas_table(compare(report, report)) == "no figure moved\n"


def test_compare_with_an_arm_only_one_report_has(report: Report) -> None:
    previous = build_report(CASES, GOVERNED, process="refund-request", prices=PRICES, generated_at=WHEN)
    unchecked = [d for d in compare(report, previous) if d.arm == "unchecked"]
    assert unchecked[0] == Delta("unchecked", "cases", None, 6, None)


def test_the_report_round_trips_through_json(report: Report, tmp_path: Path) -> None:
    again = Report.from_json(report.to_json())
    assert again == report
    assert json.loads(report.to_json())["arms"]["single"]["cost"] is None
    with pytest.raises(BatonUsageError, match=r"previous\.json: not a baton eval report"):
        Report.from_json('{"process": 3}', source="previous.json")


def test_the_table_reads_in_a_minute(report: Report) -> None:
    text = table(report)
    lines = text.splitlines()
    assert lines[0] == "eval: refund-request · 2025-03-01 12:00 UTC"
    assert lines[1] == NOTE
    rows = {line.split("  ")[0].strip(): line.split() for line in lines[4:19]}
    assert rows["wrong committed actions"][-3:] == ["0", "5", "2"]
    assert rows["accuracy"][-3:] == ["100.0%", "25.0%", "50.0%"]
    assert rows["cost"][-3:] == ["0.0212", "0.0180", "n/a"]
    assert rows["latency p95"][-6:] == ["7,000", "ms", "55", "ms", "1,000", "ms"]
    assert len({len(line) for line in lines[3:19]}) == 1  # fixed width: every row as wide
    assert "the arms disagree on 5 case(s):" in text
    assert "  late-1  governed=rejected       unchecked=actioned  single=rejected\n" in text
    assert "  inj-2   governed=invalid_input  unchecked=actioned  single=actioned\n" in text
    assert "  - single: no price for big-model; cost not computed" in text
    assert [figure for figure, _, _ in ROWS] == list(FIGURES)


def test_the_table_lists_at_most_twenty_disagreements() -> None:
    cases = [_case(f"c-{n:02}", "rejected") for n in range(25)]
    runs = [_run(c.id, "governed", "rejected", 1) for c in cases] + [
        _run(c.id, "single", "actioned", 1) for c in cases
    ]
    text = table(build_report(cases, runs, process="p", generated_at=WHEN))
    assert "  c-19  " in text
    assert "c-20" not in text
    assert "  and 5 more" in text


def test_the_chart_is_a_standalone_svg_with_labelled_axes(report: Report) -> None:
    svg = svg_chart(report)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"Wrong committed actions", "Accuracy", "wrong committed actions (runs)", "arm"} <= set(texts)
    assert {"governed", "unchecked", "single", "0", "5", "100%", "25%", "50%"} <= set(texts)


def test_the_html_is_self_contained_and_escapes_hostile_values(report: Report) -> None:
    hostile = "<script>alert(1)</script>"
    runs = [*RUNS[1:], _run("ok-1", "governed", "actioned", 100, action={"amount": 100, "note": hostile})]
    page = html(report.model_copy(update={"process": f"<b>{hostile}"}), runs)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;" in page
    assert "<svg " in page
    assert 'src="' not in page
    assert "<link" not in page
    assert page.count('<tr class="disagree">') == 5
    assert "wrong action" in page
    assert "fault: inflated_amount" in page
    assert "amount = 100.0 ± 0.01" in page


def test_write_outputs(report: Report, tmp_path: Path) -> None:
    written = write_outputs(report, RUNS, tmp_path / "out")
    assert written == {
        "json": tmp_path / "out" / "report.json",
        "html": tmp_path / "out" / "report.html",
        "svg": tmp_path / "out" / "chart.svg",
    }
    assert Report.from_json(written["json"].read_text(encoding="utf-8")) == report
    assert written["svg"].read_text(encoding="utf-8") == svg_chart(report)
    assert written["html"].read_text(encoding="utf-8").startswith("<!doctype html>")


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = (
    '{"id": "window-late-1", "case": {"order_id": "ORD-1"}, "expect": {"outcome": "actioned", '
    '"action": {"amount": {"equals": 120.0, "tolerance": 0.01}}}, '
    '"human": [{"decide": "approve", "as": "alice", "comment": "checked"}], "tags": ["refund-window"]}'
)


def test_load_cases_reads_jsonl_skipping_blanks_and_comments(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "# the refund set", "", GOOD, '{"id": "b", "case": {}, "expect": {"outcome": "rejected"}}'
    )
    first, second = load_cases(path)
    assert first.id == "window-late-1"
    assert first.expect.action["amount"].tolerance == 0.01
    assert (first.human[0].decide, first.human[0].as_, first.tags) == ("approve", "alice", ["refund-window"])
    assert (second.human, second.tags, second.expect.action) == ([], [], {})


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            '{"id": "a", "case": {}, "expect": {"outcome": "done"}}',
            "expect.outcome: Input should be 'actioned', 'rejected' or 'escalated'",
        ),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('{"id": "a", "case": {}', "not JSON: "),
        (
            '{"id": "a", "case": {}, "expect": {"outcome": "actioned", "action": {"x": {"equals": NaN}}}}',
            "not JSON: NaN is not a JSON number",
        ),
        ('{"id": "a", "case": {}, "expected": {"outcome": "actioned"}}', "expect: Field required"),
        ('{"id": "a b", "case": {}, "expect": {"outcome": "actioned"}}', "id: String should match pattern"),
        (
            '{"id": "a", "case": {}, "expect": {"outcome": "actioned", "action": {"c": {"equals": "x", "tolerance": 1}}}}',
            "expect.action.c: Value error, tolerance applies to numbers only",
        ),
        (
            '{"id": "a", "case": {}, "expect": {"outcome": "rejected", "action": {"amount": {"equals": 1}}}}',
            "expect: Value error, a case labelled rejected commits no action",
        ),
        (
            '{"id": "a", "case": {}, "expect": {"outcome": "escalated"}, "human": [{"decide": "ok", "as": "al"}]}',
            "human[0].decide: Input should be 'approve', 'reject' or 'request_changes'",
        ),
    ],
)
def test_load_cases_names_file_line_and_field(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path, "# header", GOOD, "", line)
    with pytest.raises(BatonUsageError) as caught:
        load_cases(path)
    assert str(caught.value).startswith(f"{path}:4: {problem}")


def test_load_cases_names_both_lines_of_a_repeated_id_and_every_bad_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD, "", "nonsense", GOOD)
    with pytest.raises(BatonUsageError) as caught:
        load_cases(path)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{path}:3: not JSON")
    assert lines[1] == f"{path}:4: id 'window-late-1' repeats line 1"


def test_load_cases_refuses_an_empty_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BatonUsageError, match="no cases"):
        load_cases(_write(tmp_path, "# nothing yet", ""))
    with pytest.raises(BatonUsageError, match="cannot read the case set"):
        load_cases(tmp_path / "absent.jsonl")


def test_action_fields_match_within_tolerance_and_by_type() -> None:
    case = EvalCase.model_validate(
        {
            "id": "t",
            "case": {},
            "expect": {
                "outcome": "actioned",
                "action": {
                    "amount": {"equals": 10, "tolerance": 0.5},
                    "full": {"equals": True},
                    "who": {"equals": "C"},
                },
            },
        }
    )
    assert case.expect.action_mismatches({"amount": 10.5, "full": True, "who": "C"}) == []
    assert case.expect.action_mismatches({"amount": 10.51, "full": 1, "who": "C"}) == ["amount", "full"]
    assert case.expect.action_mismatches(None) == ["amount", "full", "who"]


def test_after_names_an_earlier_case(tmp_path):
    good = (
        '{"id": "first", "case": {}, "expect": {"outcome": "actioned"}}\n'
        '{"id": "again", "case": {}, "expect": {"outcome": "rejected"}, "after": "first"}\n'
    )
    path = tmp_path / "ok.jsonl"
    path.write_text(good)
    assert [c.after for c in load_cases(path)] == [None, "first"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "again", "case": {}, "expect": {"outcome": "rejected"}, "after": "later"}\n'
        '{"id": "later", "case": {}, "expect": {"outcome": "actioned"}}\n'
    )
    with pytest.raises(
        BatonUsageError, match=r"bad.jsonl:1: after: 'later' is not a case on an earlier line"
    ):
        load_cases(bad)
