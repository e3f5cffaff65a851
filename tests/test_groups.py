"""Parallel groups: members run at once, each handoff checked alone; reviewers resolved by rule."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from baton.errors import SpecError
from baton.messages import AgentInput, AuditKind, Outcome
from baton.scenario import wait_for_approval
from baton.spec import load_spec_text, snapshot_of
from baton.spec.diagram import mermaid
from baton.spec.models import GroupSpec, ProcessSpec
from tests.bulk_contracts import Said
from tests.conftest import Running, refund, refund_spec
from workflows.resolution import Opinion, resolve

HEAD = """
process: panel-test
version: 1
input: refunds.contracts:RefundRequest
agents:
  intake: {activity: refunds.intake, output: "refunds.contracts:OrderFacts"}
  drafter: {activity: refunds.drafter, output: "refunds.contracts:RefundProposal"}
  a: {activity: probe.a, output: "tests.bulk_contracts:Said", retry: {max_attempts: 1}}
  b: {activity: probe.b, output: "tests.bulk_contracts:Said", retry: {max_attempts: 1}}
  c: {activity: probe.c, output: "tests.bulk_contracts:Said", retry: {max_attempts: 1}}
flow:
  - step: intake
  - step: drafter
"""
TAIL = """
decide:
  - when: panel.decided_by != null
    then: {approval: standard}
  - then: auto
ladders:
  standard: [{role: support-lead, timeout: 1h}]
  exceptions: [{role: support-manager, timeout: 1h}]
escalation: {ladder: exceptions}
action: {activity: refunds.issue_refund}
"""


def panel_spec(group: str) -> ProcessSpec:
    """The test process with ``group`` (YAML, indented as a flow item) after the drafter."""
    return load_spec_text(HEAD + group + TAIL, source="panel.yaml", base_dir=refund_spec().parent)


def reviewers(strategy: str, extra: str = "", member: str = "") -> str:
    """A group of reviewers a, b, c, each giving ``verdict`` on reject > escalate > approve."""
    members = "".join(
        f"      - {{step: {s}, sees: [case, drafter], verdict: {s}.verdict, findings: {s}.findings{member}}}\n"
        for s in "abc"
    )
    return (
        "  - group: panel\n    reviews: drafter\n"
        f"    resolve: {strategy}\n    scale: [reject, escalate, approve]\n    escalating: [escalate]\n"
        f"{extra}    parallel:\n{members}"
    )


Script = dict[str, list[str]]
"""Verdicts per reviewer, one per time it is asked (the last one repeats)."""


def probes(script: Script, *, barrier: int = 0) -> list[Callable[..., Any]]:
    """Reviewer activities a, b, c answering from ``script``.

    With ``barrier`` n, each waits until n reviewers have started before it answers: they
    can only all answer if they run at the same time.
    """
    started: list[str] = []
    everyone = asyncio.Event()
    asked: dict[str, int] = {}

    def make(name: str) -> Callable[..., Any]:
        @activity.defn(name=f"probe.{name}")
        async def probe(inp: AgentInput) -> Said:
            if barrier:
                started.append(name)
                if len(started) >= barrier:
                    everyone.set()
                await asyncio.wait_for(everyone.wait(), timeout=10)
            answers = script[name]
            asked[name] = asked.get(name, 0) + 1
            verdict = answers[min(asked[name], len(answers)) - 1]
            if verdict == "fail":
                raise ApplicationError("reviewer down", non_retryable=True)
            findings = [] if verdict == "approve" else [f"{name} found a problem"]
            return Said(verdict=verdict, seen=sorted(inp.handoffs), findings=findings)

        return probe

    return [make(n) for n in "abc"]


async def run(on_dev: Running, spec: ProcessSpec, script: Script, **options: int) -> Any:
    async with on_dev.worker(probes(script, **options)):
        case_id = await on_dev.baton.start_case(snapshot_of(spec), refund("ORD-1001", "CUS-001", 30.0))
        return await on_dev.baton.result(case_id)


async def test_members_run_at_once_and_see_only_what_came_before(on_dev: Running) -> None:
    spec = panel_spec(reviewers("unanimous"))
    # Each reviewer waits for all three to have started: run one after another, none could answer.
    result = await run(on_dev, spec, {"a": ["approve"], "b": ["approve"], "c": ["approve"]}, barrier=3)
    assert result.outcome == Outcome.ACTIONED, result.reason
    assert result.path == ["intake", "drafter", "a", "b", "c", "panel: approve", "auto", "action"]
    for name in "abc":  # independent: no reviewer saw another's verdict
        assert result.handoffs[name]["seen"] == ["drafter"]
    assert result.handoffs["panel"]["opinions"] == {"a": "approve", "b": "approve", "c": "approve"}
    kinds = [e.kind for e in result.audit]
    assert kinds.count(AuditKind.OPINION) == 3
    resolved = next(e for e in result.audit if e.kind == AuditKind.RESOLVED)
    assert resolved.data["strategy"] == "unanimous"
    assert resolved.data["effect"] == "pass"


async def test_most_conservative_sends_combined_findings_back_to_the_drafter(on_dev: Running) -> None:
    spec = panel_spec(reviewers("most_conservative"))
    seen: list[list[str]] = []
    script = {"a": ["approve"], "b": ["reject", "approve"], "c": ["approve"]}
    async with on_dev.worker([*probes(script), recording_drafter(on_dev, seen)]):
        case_id = await on_dev.baton.start_case(snapshot_of(spec), refund("ORD-1001", "CUS-001", 30.0))
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    assert result.path[2:] == [
        "a", "b", "c", "panel: reject", "drafter(r1)", "a", "b", "c", "panel: approve", "auto", "action",
    ]  # fmt: skip
    assert seen == [[], ["review: b: b found a problem"]]  # the findings went back, marked with who said them
    revision = next(e for e in result.audit if e.kind == AuditKind.REVISION)
    assert revision.detail == "drafter revises (round 1 of 2)"


def recording_drafter(on_dev: Running, seen: list[list[str]]) -> Callable[..., Any]:
    """The real drafter, noting the feedback it is given on each run."""

    @activity.defn(name="refunds.drafter")
    async def drafter(inp: AgentInput) -> Any:
        seen.append([f"{f.source}: {f.message}" for f in inp.feedback])
        return await on_dev.refunds.drafter(inp)

    return drafter


async def test_a_disagreement_goes_to_a_person_and_the_rules_still_apply(on_dev: Running) -> None:
    spec = panel_spec(reviewers("escalate_on_disagreement"))
    baton = on_dev.baton
    async with on_dev.worker(probes({"a": ["approve"], "b": ["reject"], "c": ["approve"]})):
        case_id = await baton.start_case(snapshot_of(spec), refund("ORD-1001", "CUS-001", 30.0))
        waiting = await wait_for_approval(baton, case_id)
        assert waiting.awaiting is not None
        assert waiting.awaiting.role == "support-manager"
        # the person sees each reviewer's verdict and findings in what they are asked
        assert "a approve, b reject, c approve" in waiting.awaiting.purpose
        assert "b: b found a problem" in waiting.awaiting.purpose
        await baton.approve(case_id, approver="dana", comment="b misread the order")
        lead = await wait_for_approval(baton, case_id)  # the rule for an overruled panel still applies
        assert lead.awaiting is not None
        assert lead.awaiting.role == "support-lead"
        await baton.approve(case_id, approver="alice")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert result.path[2:] == [
        "a", "b", "c", "panel: split", "escalated:exceptions", "approved by dana",
        "approval:standard", "approved by alice", "action",
    ]  # fmt: skip
    assert result.handoffs["panel"]["decided_by"] == "dana"


async def test_quorum_passes_with_enough_and_sends_back_without(on_dev: Running) -> None:
    spec = panel_spec(reviewers("quorum", "    quorum: 2\n"))
    result = await run(on_dev, spec, {"a": ["approve"], "b": ["reject"], "c": ["approve"]})
    assert "panel: approve" in result.path
    assert result.outcome == Outcome.ACTIONED
    result = await run(on_dev, spec, {"a": ["reject", "approve"], "b": ["reject"], "c": ["approve"]})
    assert result.path[2:7] == ["a", "b", "c", "panel: reject", "drafter(r1)"]
    assert result.outcome == Outcome.ACTIONED


async def test_an_optional_member_that_fails_is_left_out_and_recorded(on_dev: Running) -> None:
    group = reviewers("unanimous").replace("{step: c,", "{step: c, optional: true,")
    result = await run(on_dev, panel_spec(group), {"a": ["approve"], "b": ["approve"], "c": ["fail"]})
    assert result.outcome == Outcome.ACTIONED, result.reason
    assert result.path[2:] == ["a", "b", "c✗", "c✗", "c left out", "panel: approve", "auto", "action"]
    left = next(e for e in result.audit if e.kind == AuditKind.SKIPPED)
    assert left.step == "c"
    assert "left out of panel" in left.detail
    assert result.handoffs["panel"]["left_out"] == ["c"]
    assert "c" not in result.handoffs


async def test_a_required_member_that_fails_escalates_the_group(on_dev: Running) -> None:
    spec = panel_spec(reviewers("unanimous"))
    baton = on_dev.baton
    async with on_dev.worker(probes({"a": ["approve"], "b": ["fail"], "c": ["approve"]})):
        case_id = await baton.start_case(snapshot_of(spec), refund("ORD-1001", "CUS-001", 30.0))
        waiting = await wait_for_approval(baton, case_id)
        assert waiting.awaiting is not None
        assert waiting.awaiting.purpose.startswith("handoff from b failed its checks")
        await baton.reject(case_id, approver="dana", reason="reviewer b is down")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.REJECTED
    assert "escalated:exceptions" in result.path


async def test_cancelling_the_case_cancels_every_running_member(on_dev: Running) -> None:
    started = asyncio.Event()
    running: list[str] = []

    def slow(name: str) -> Callable[..., Any]:
        @activity.defn(name=f"probe.{name}")
        async def probe(inp: AgentInput) -> Said:
            running.append(name)
            if len(running) == 3:
                started.set()
            while True:  # until cancelled (heartbeats carry the cancellation)
                activity.heartbeat()
                await asyncio.sleep(0.1)

        return probe

    text = (HEAD + reviewers("unanimous") + TAIL).replace(
        "retry: {max_attempts: 1}}", "retry: {max_attempts: 1}, timeouts: {heartbeat: 5s}}"
    )
    spec = load_spec_text(text, source="panel.yaml", base_dir=refund_spec().parent)
    async with on_dev.worker([slow(n) for n in "abc"]):
        case_id = await on_dev.baton.start_case(snapshot_of(spec), refund("ORD-1001", "CUS-001", 30.0))
        await asyncio.wait_for(started.wait(), timeout=20)
        handle = on_dev.client.get_workflow_handle(case_id)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
        assert isinstance(ended.value.cause, CancelledError)
        history = await handle.fetch_history()
    events = [e.event_type for e in history.events]
    assert events.count(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED) == 3
    assert events.count(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED) == 3, [EventType.Name(e) for e in events]


def opinions(*said: tuple[str, str]) -> list[Opinion]:
    group = group_of("most_conservative")
    return [Opinion(m, v, group.effect(v)) for m, v in said]


def group_of(strategy: str, extra: str = "") -> GroupSpec:
    item = panel_spec(reviewers(strategy, extra)).flow[2]
    assert isinstance(item, GroupSpec)
    return item


@pytest.mark.parametrize(
    ("strategy", "extra", "said", "effect", "verdict"),
    [
        ("unanimous", "", [("a", "approve"), ("b", "approve")], "pass", "approve"),
        ("unanimous", "", [("a", "approve"), ("b", "escalate")], "escalate", "escalate"),
        ("unanimous", "", [("a", "reject"), ("b", "escalate")], "revise", "reject"),
        ("quorum", "    quorum: 2\n", [("a", "approve")], "escalate", "approve"),  # short of reviewers
        ("most_conservative", "", [("a", "approve"), ("b", "escalate")], "escalate", "escalate"),
        ("most_conservative", "", [("a", "reject"), ("b", "escalate")], "revise", "reject"),
        ("most_conservative", "", [("a", "approve"), ("b", "approve")], "pass", "approve"),
        (
            "quorum",
            "    quorum: 2\n",
            [("a", "approve"), ("b", "reject"), ("c", "approve")],
            "pass",
            "approve",
        ),
        (
            "quorum",
            "    quorum: 2\n",
            [("a", "approve"), ("b", "reject"), ("c", "escalate")],
            "revise",
            "reject",
        ),
        ("escalate_on_disagreement", "", [("a", "approve"), ("b", "reject")], "escalate", "reject"),
        ("escalate_on_disagreement", "", [("a", "reject"), ("b", "reject")], "revise", "reject"),
        ("escalate_on_disagreement", "", [("a", "approve"), ("b", "approve")], "pass", "approve"),
        ("unanimous", "", [], "escalate", "reject"),
    ],
)
def test_each_strategy_resolves_as_declared(
    strategy: str, extra: str, said: list[tuple[str, str]], effect: str, verdict: str
) -> None:
    resolution = resolve(group_of(strategy, extra), opinions(*said))
    assert (resolution.effect, resolution.verdict) == (effect, verdict)


@pytest.mark.parametrize(
    ("group", "problem"),
    [
        (
            reviewers("unanimous").replace("{step: c,", "{step: a,"),
            "flow[2].parallel[2].step (line 22): duplicate step name 'a'",
        ),
        (
            reviewers("unanimous").replace("{step: c, sees: [case, drafter]", "{step: c, sees: [case, a]"),
            "flow[2].parallel[2].sees[1] (line 22): 'a' runs in the same group: members see only what came before it",
        ),
        (
            reviewers("unanimous").replace("reviews: drafter", "reviews: policy"),
            "flow[2].reviews (line 15): unknown step 'policy'",
        ),
        (
            reviewers("unanimous").replace("scale: [reject, escalate, approve]", "scale: [reject, approve]"),
            "flow[2].escalating[0] (line 18): 'escalate' is not on the scale (reject, approve)",
        ),
        (
            reviewers("quorum", "    quorum: 4\n"),
            "flow[2].quorum (line 19): quorum 4 is more than the 3 members",
        ),
        (
            reviewers("unanimous").replace("    resolve: unanimous\n", ""),
            "flow[2].resolve (line 14): a reviewing group needs 'resolve': unanimous, most_conservative, quorum "
            "or escalate_on_disagreement",
        ),
        (
            reviewers("unanimous").replace(
                "  - group: panel\n", "  - group: panel\n    when: drafter.amount >\n"
            ),
            "flow[2].when (line 15): CEL syntax error in 'drafter.amount >'",
        ),
        (
            reviewers("unanimous").replace(", verdict: a.verdict", ""),
            "flow[2].parallel[0] (line 20): a reviewer in a group needs 'passes' (CEL, true = accepted) "
            "or 'verdict' (CEL, a word on the scale)",
        ),
    ],
)
def test_validate_reports_group_problems_with_their_line(group: str, problem: str) -> None:
    with pytest.raises(SpecError) as failed:
        panel_spec(group)
    assert any(p.startswith(problem) for p in failed.value.problems), failed.value.problems


def test_a_scale_must_cover_every_verdict_the_reviewer_can_give() -> None:
    panel = refund_spec("refund-panel").read_text()
    narrow = panel.replace("scale: [reject, escalate, approve]", "scale: [reject, approve]").replace(
        "    escalating: [escalate]                  # a person decides; reject sends findings back\n", ""
    )
    with pytest.raises(SpecError) as failed:
        load_spec_text(narrow, source="refund-panel.yaml", base_dir=refund_spec().parent)
    assert failed.value.problems == [
        "flow[2].parallel[1].verdict (line 65): fraud can answer 'escalate', which the group's scale "
        "(reject, approve) does not cover"
    ]


def test_the_diagram_draws_the_group_its_conditions_and_its_resolution() -> None:
    text = mermaid(load_spec_text(refund_spec("refund-panel").read_text(), base_dir=refund_spec().parent))
    assert 'panel_fork[/"parallel group panel"\\]' in text
    assert "panel_fork --> policy" in text
    assert "panel_fork --> fraud" in text
    assert "only when: drafter.amount #gt; 100.0" in text
    assert "resolve: most_conservative<br/>scale: reject #gt; escalate #gt; approve" in text
    assert 'panel_resolve -- "escalate: a person decides" --> ladder_exceptions' in text
    assert 'panel_resolve -- "revise: combined findings back (≤2 rounds)" --> drafter' in text


def test_a_step_may_not_review_a_group() -> None:
    extra = "  - step: c2\n    agent: c\n    reviews: panel\n    passes: c2.verdict == 'approve'\n"
    with pytest.raises(SpecError) as failed:
        load_spec_text(
            HEAD + reviewers("unanimous") + extra + TAIL, source="p.yaml", base_dir=refund_spec().parent
        )
    assert any("'panel' is a group: a review sends findings to one step" in p for p in failed.value.problems)
