"""The spec loader reports every problem with its location; good specs load and hash stably."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from baton.durations import format_duration, parse_duration
from baton.errors import SpecError
from baton.roles import YamlRoleDirectory
from baton.spec import load_spec, load_spec_text
from baton.spec.diagram import mermaid
from tests.conftest import REFUNDS_APP, refund_spec

REFERENCE = refund_spec()
ROLES = YamlRoleDirectory(REFUNDS_APP.roles_file).roles()


def reference_text() -> str:
    return REFERENCE.read_text()


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, source="bad.yaml", roles=ROLES)
    return caught.value.problems


def test_reference_spec_is_valid() -> None:
    spec = load_spec(REFERENCE, roles=ROLES)
    assert [s.step for s in spec.flow] == ["intake", "drafter", "policy"]
    assert spec.ladders["standard"][0].timeout == timedelta(hours=4)


def test_every_problem_is_reported_with_its_location() -> None:
    text = (
        reference_text()
        .replace("  - step: policy\n", "  - step: policy\n    agent: polcy\n")
        .replace(
            "(policy.compliant || overruled) && drafter.amount <= 50.0",
            "policy.compliant && drafter.amount <=",
        )
        .replace("output: refunds.contracts:OrderFacts", "output: refunds.contracts:Nope")
        .replace("{approval: finance}", "{approval: finanse}")
        .replace("- {role: finance, timeout: 48h, remind: 36h}\n", "- {role: treasurer, timeout: 48h}\n")
    )
    problems = problems_of(text)
    joined = "\n".join(problems)
    assert "flow[2].agent (line 48): unknown agent 'polcy'" in joined
    assert "decide[1].when" in joined
    assert "CEL syntax error in 'policy.compliant && drafter.amount <='" in joined
    assert "agents.intake.output" in joined
    assert "has no 'Nope'" in joined
    assert "decide[3].then.approval" in joined
    assert "unknown ladder 'finanse'" in joined
    assert "ladders.finance[0].role" in joined
    assert "unknown role 'treasurer'" in joined
    assert len(problems) == 5, problems


def test_review_must_point_at_an_earlier_step() -> None:
    text = reference_text().replace("reviews: drafter", "reviews: policy")
    assert any(
        p.startswith("flow[2].reviews") and "must follow the step it reviews" in p for p in problems_of(text)
    )


def test_guard_may_not_read_a_later_step() -> None:
    text = reference_text().replace("expr: intake.order_exists", "expr: policy.compliant")
    assert any("reads step 'policy', which has not run yet" in p for p in problems_of(text))


def test_unknown_name_in_rule_is_named() -> None:
    text = reference_text().replace("when: policy.compliant || overruled\n", "when: polciy.compliant\n")
    assert any("unknown name 'polciy'" in p for p in problems_of(text))


def test_shape_errors_name_field_and_line() -> None:
    text = reference_text().replace("    check_attempts: 2", "    check_attempts: 0\n    gaurds: []")
    problems = problems_of(text)
    assert any(
        p.startswith("flow[1].check_attempts (line") and "greater than or equal to 1" in p for p in problems
    )
    assert any(p.startswith("flow[1].gaurds (line") and "Extra inputs" in p for p in problems)


def test_last_rule_must_be_a_catch_all() -> None:
    text = reference_text().replace("  - then: reject\n", "  - when: 'true'\n    then: reject\n")
    assert any("last rule must have no 'when'" in p for p in problems_of(text))


def test_non_positive_timeout_is_refused() -> None:
    text = reference_text().replace("timeout: 4h", "timeout: 0s")
    assert any(p.startswith("ladders.standard[0].timeout") for p in problems_of(text))


def test_yaml_syntax_error_names_the_line() -> None:
    problems = problems_of("process: x\nagents: [\n")
    assert len(problems) == 1
    assert problems[0].startswith("line 3")
    assert "YAML syntax error" in problems[0]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.yaml")


def test_hash_is_stable_and_tracks_content() -> None:
    a = load_spec(REFERENCE).sha256()
    assert a == load_spec_text(reference_text() + "\n# a comment\n").sha256()
    assert a != load_spec_text(reference_text().replace("version: 1", "version: 2")).sha256()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("4h", 14400), ("1h30m", 5400), ("2d", 172800), ("PT1M", None)],
)
def test_durations(text: str, seconds: float | None) -> None:
    parsed = parse_duration(text)
    if seconds is None:
        assert parsed == text  # left for pydantic's ISO 8601 parser
    else:
        assert parsed == timedelta(seconds=seconds)
        assert parse_duration(format_duration(parsed)) == parsed


def test_diagram_draws_checks_rules_and_ladders() -> None:
    chart = mermaid(load_spec(REFERENCE))
    assert chart.startswith("flowchart TD\n")
    for fragment in (
        "intake_check{",
        'policy_review -- "no: findings back (≤2 rounds)" --> drafter',
        'decide -- "3. (policy.compliant || overruled) && drafter.amount #lt;= 500.0" --> ladder_standard',
        "support-lead (4h) → support-manager (1d)",
        "timeout → reject",
    ):
        assert fragment in chart


def test_ladder_checks_reminders_and_approver_counts() -> None:
    text = (
        reference_text()
        .replace(
            "{role: support-lead, timeout: 4h, remind: 3h}", "{role: support-lead, timeout: 4h, remind: 5h}"
        )
        .replace("approvers: 2}", "approvers: 3}")
    )
    problems = problems_of(text)
    assert any(
        p.startswith("ladders.standard[0] (line") and "remind must come before the timeout" in p
        for p in problems
    )
    fixed = text.replace("remind: 5h}", "remind: 3h}")
    assert problems_of(fixed) == [
        "ladders.finance-dual[0].approvers (line 79): needs 3 approvers but role 'finance' has 2"
    ]


def test_hold_and_inbox_and_changes_target_are_checked() -> None:
    text = (
        reference_text()
        .replace("changes_go_to: drafter", "changes_go_to: drafterr")
        .replace("amount: drafter.amount", "amount: drafter.amout + nope")
    )
    problems = problems_of(text)
    assert any("changes_go_to" in p and "unknown step 'drafterr'" in p for p in problems)
    assert any(p.startswith("inbox.amount") and "unknown name 'nope'" in p for p in problems)
    held = load_spec_text(reference_text().replace("on_timeout: reject", "on_timeout: hold"))
    assert held.on_timeout == "hold"
    assert load_spec(REFERENCE).revision_step() == "drafter"
