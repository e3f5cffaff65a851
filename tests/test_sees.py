"""Scoped inputs: a step that declares ``sees`` is shown only that, enforced by the workflow."""

from __future__ import annotations

import pytest
from temporalio import activity

from baton.errors import SpecError
from baton.messages import AgentInput, AuditKind, Outcome
from baton.spec import load_spec_text, snapshot_of
from baton.spec.diagram import mermaid
from tests.bulk_contracts import Seen
from tests.conftest import Running, refund, refund_spec

PROBE = """
  probe:
    activity: probe.seen
    output: tests.bulk_contracts:Seen
"""


def with_probe(sees: str | None) -> str:
    """The refund spec with a probe step after policy, seeing ``sees`` (None: no ``sees`` key)."""
    text = refund_spec().read_text()
    text = text.replace("\nflow:\n", PROBE + "\nflow:\n", 1)
    scope = "" if sees is None else f"    sees: {sees}\n"
    return text.replace("\ndecide:\n", f"\n  - step: probe\n{scope}\ndecide:\n", 1)


@activity.defn(name="probe.seen")
async def probe_seen(inp: AgentInput) -> Seen:
    return Seen(handoffs=sorted(inp.handoffs), case_fields=sorted(inp.case))


@pytest.mark.parametrize(
    ("sees", "handoffs", "case_fields"),
    [
        ("[drafter]", ["drafter"], []),
        ("[case, policy]", ["policy"], ["customer_id", "note", "order_id", "reason", "requested_amount"]),
        ("[]", [], []),
        (
            None,
            ["drafter", "intake", "policy"],
            ["customer_id", "note", "order_id", "reason", "requested_amount"],
        ),
    ],
)
async def test_a_step_sees_only_what_it_declares(
    on_dev: Running, sees: str | None, handoffs: list[str], case_fields: list[str]
) -> None:
    spec = load_spec_text(with_probe(sees), source="probe.yaml", base_dir=refund_spec().parent)
    async with on_dev.worker([probe_seen]):
        case_id = await on_dev.baton.start_case(snapshot_of(spec), refund("ORD-1001", "CUS-001", 20.0))
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    assert result.handoffs["probe"] == {"handoffs": handoffs, "case_fields": case_fields}
    assert [e.step for e in result.audit if e.kind == AuditKind.CHECK_PASSED][-1] == "probe"


@pytest.mark.parametrize(
    ("sees", "problem"),
    [
        (
            "[probe]",
            "flow[3].sees[0] (line 58): step 'probe' has not run yet here: a step sees only earlier steps",
        ),
        ("[polcy]", "flow[3].sees[0] (line 58): unknown step 'polcy' (a step sees 'case' and earlier steps)"),
        ("[case, case]", "flow[3].sees[1] (line 58): 'case' is named twice"),
    ],
)
def test_sees_names_only_the_case_and_earlier_steps(sees: str, problem: str) -> None:
    with pytest.raises(SpecError) as failed:
        load_spec_text(with_probe(sees), source="probe.yaml", base_dir=refund_spec().parent)
    assert failed.value.problems == [problem]


def test_an_llm_prompt_may_not_use_what_its_step_does_not_see() -> None:
    llm = refund_spec("refund-request-llm")
    text = llm.read_text().replace(
        "  - step: explainer\n", "  - step: explainer\n    sees: [case, drafter]\n"
    )
    with pytest.raises(SpecError) as failed:
        load_spec_text(text, source="llm.yaml", base_dir=llm.parent)
    assert any(
        "the prompt of 'explainer' uses $policy, which this step does not see" in p
        for p in failed.value.problems
    )


def test_the_diagram_shows_scopes_and_two_person_rungs() -> None:
    spec = load_spec_text(with_probe("[drafter]"), source="probe.yaml", base_dir=refund_spec().parent)
    drawn = mermaid(spec)
    assert "sees only: drafter" in drawn
    assert "finance ×2 (2d)" in drawn


def with_routed_probe(when: str) -> str:
    """The refund spec with a probe step after policy that runs only ``when``."""
    text = refund_spec().read_text()
    text = text.replace("\nflow:\n", PROBE + "\nflow:\n", 1)
    return text.replace("\ndecide:\n", f'\n  - step: probe\n    when: "{when}"\n\ndecide:\n', 1)


@pytest.mark.parametrize(
    ("when", "runs"), [("case.requested_amount > 100.0", False), ("drafter.amount < 100.0", True)]
)
async def test_a_routed_step_runs_only_when_its_rule_holds(on_dev: Running, when: str, runs: bool) -> None:
    spec = load_spec_text(with_routed_probe(when), source="routed.yaml", base_dir=refund_spec().parent)
    async with on_dev.worker([probe_seen]):
        case_id = await on_dev.baton.start_case(snapshot_of(spec), refund("ORD-1001", "CUS-001", 20.0))
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    assert ("probe" in result.handoffs) is runs
    skipped = [e.detail for e in result.audit if e.kind == AuditKind.SKIPPED]
    assert skipped == ([] if runs else [f"probe skipped: {when} is false"])
    assert ("probe skipped" in result.path) is not runs


def test_a_route_reads_only_the_case_and_earlier_steps() -> None:
    with pytest.raises(SpecError) as failed:
        load_spec_text(
            with_routed_probe("probe.handoffs.size() > 0"), source="r.yaml", base_dir=refund_spec().parent
        )
    assert failed.value.problems == [
        "flow[3].when (line 58): 'probe.handoffs.size() > 0' reads step 'probe', which has not run yet here"
    ]
    drawn = mermaid(load_spec_text(with_routed_probe("case.requested_amount > 100.0"), source="r.yaml",
                                   base_dir=refund_spec().parent))  # fmt: skip
    assert "only when: case.requested_amount #gt; 100.0" in drawn
