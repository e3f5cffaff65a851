"""``baton eval``'s baselines and fault injection, on the real engine.

The arms are spec rewrites the loader accepts; a fault injected at the first handoff is
stopped by the governed spec's guard or contract and flows into a committed action when
the checks are off: the mission's "small data problem at step one", run.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from refunds.activities import RefundActivities
from refunds.contracts import OrderFacts
from temporalio.testing import WorkflowEnvironment

from baton.app import App
from baton.errors import BatonUsageError, SpecError
from baton.evals.arms import SingleAgent, arm_spec, single_agent, unchecked
from baton.evals.inject import FAULTS, FaultInjector, choose, fault, intercepting
from baton.messages import AgentInput, AuditKind, CaseResult, CaseStatus, LlmResult, Outcome, Usage
from baton.scenario import wait_for_approval
from baton.settings import Settings
from baton.spec import ProcessSpec, load_spec, snapshot_of
from baton.spec.models import GroupSpec
from baton.testing import serve_app
from baton.wiring import Wiring, wiring_for
from tests.conftest import ACCESS_APP, REFUNDS_APP, Running, refund

ACCESS_APP.activate()

SPECS = {
    "refund-request": REFUNDS_APP,
    "refund-panel": REFUNDS_APP,
    "refund-request-llm": REFUNDS_APP,
    "access-request": ACCESS_APP,
    "access-board": ACCESS_APP,
}
SINGLE = {
    "refunds": SingleAgent(step="drafter", provider="openai", prompt="processes/prompts/single-agent.md"),
    "access": SingleAgent(step="proposer", provider="openai", prompt="prompts/propose.md"),
}
ORDER: dict[str, Any] = {
    "order_id": "ORD-1002",
    "order_exists": True,
    "customer_id": "CUS-002",
    "customer_name": "Bo",
    "category": "electronics",
    "amount_paid": 249.0,
    "already_refunded": 0.0,
    "refundable_amount": 249.0,
    "delivered_at": "2026-01-10T12:00:00+00:00",
    "days_since_delivery": 3,
    "problems": [],
}
LOOKUP: dict[str, Any] = {
    "employee_id": "EMP-104",
    "employee_exists": True,
    "active": True,
    "system": "payroll-db",
    "system_exists": True,
    "max_duration_days": 90,
    "current_grants": [],
}


def wiring(app: App, tmp_path: Path) -> Wiring:
    """What ``baton validate`` checks the app's specs against (its home in ``tmp_path``)."""
    settings = Settings(
        home=tmp_path,
        task_queue="unused",
        roles_file=app.roles_file,
        providers_file=app.root / "providers.yaml",
    )
    return wiring_for(app, settings)


def base_dir(app: App, tmp_path: Path) -> Path:
    """Where the single agent's prompt lives: the refund app's own, a written one for access."""
    if app is REFUNDS_APP:
        return app.root
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "prompts" / "propose.md").write_text(
        "Propose the grant for $case.\nDirectory: $lookup\n$feedback\n"
    )
    return tmp_path


# --- the arms ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_every_arm_of_every_example_spec_validates_with_its_wiring(name: str, tmp_path: Path) -> None:
    app = SPECS[name]
    governed = load_spec(app.resolve_process(name))
    wired = wiring(app, tmp_path)
    single = SINGLE[app.name]
    for arm in ("governed", "unchecked", "single"):
        spec = arm_spec(governed, arm, single, base_dir=base_dir(app, tmp_path), wiring=wired)
        assert ProcessSpec.model_validate(spec.model_dump()) == spec  # travels to the worker intact
        if arm != "governed":
            assert spec.process == f"{name}--{arm}"
            assert spec.decide[0].then == "auto"
            assert len(spec.decide) == 1
            assert not spec.ladders
            assert spec.escalation is None
            assert spec.token_budget is None
            assert all(not s.guards and s.when is None and s.reviews is None for s in spec.steps())
            assert spec.action == governed.action


def test_the_unchecked_refund_chain_is_intake_then_drafter_with_nothing_between() -> None:
    spec = unchecked(load_spec(REFUNDS_APP.resolve_process("refund-request")))
    assert [s.step for s in spec.flow] == ["intake", "drafter"]  # the policy reviewer gates nothing now
    assert list(spec.agents) == ["intake", "drafter"]
    assert "unchecked chain" in spec.description


def test_a_group_that_only_reviews_is_dropped_and_a_reviewer_a_later_prompt_reads_is_kept() -> None:
    panel = unchecked(load_spec(REFUNDS_APP.resolve_process("refund-panel")))
    assert not any(isinstance(item, GroupSpec) for item in panel.flow)
    assert [s.step for s in panel.flow] == ["intake", "drafter"]
    # The briefer's prompt reads $risk: the risk reviewer still runs, as a step that gates nothing.
    access = unchecked(load_spec(ACCESS_APP.resolve_process("access-request")))
    assert [s.step for s in access.flow] == ["lookup", "proposer", "risk", "briefer"]


def test_the_single_arm_is_the_retrieval_then_one_llm_agent(tmp_path: Path) -> None:
    governed = load_spec(REFUNDS_APP.resolve_process("refund-request"))
    spec = single_agent(governed, SINGLE["refunds"], base_dir=REFUNDS_APP.root)
    assert [s.step for s in spec.flow] == ["intake", "drafter"]  # the action reads the drafter step
    assert [s.agent_name for s in spec.steps()] == ["intake", "single"]  # its agent has a name of its own
    assert spec.agents["single"].kind == "llm"
    assert spec.agents["single"].output.endswith(":RefundProposal")
    assert spec.agents["single"].prompt_text is not None
    assert "$intake" in spec.agents["single"].prompt_text
    blind = SINGLE["refunds"].model_copy(update={"retrieval": False})
    with pytest.raises(SpecError, match=r"prompt uses \$intake"):  # nothing retrieved to fill it with
        single_agent(governed, blind, base_dir=REFUNDS_APP.root)
    (tmp_path / "refund.md").write_text("Propose a refund for $case.\n$feedback\n")
    alone = single_agent(governed, blind.model_copy(update={"prompt": "refund.md"}), base_dir=tmp_path)
    assert [s.step for s in alone.flow] == ["drafter"]


def test_a_single_agent_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    governed = load_spec(REFUNDS_APP.resolve_process("refund-request"))
    with pytest.raises(BatonUsageError, match="needs a single agent"):
        arm_spec(governed, "single")
    with pytest.raises(BatonUsageError, match="has no step 'writer'"):
        single_agent(governed, SINGLE["refunds"].model_copy(update={"step": "writer"}), base_dir=tmp_path)
    with pytest.raises(SpecError, match="cannot read prompt"):
        single_agent(governed, SINGLE["refunds"], base_dir=tmp_path)  # no such prompt here
    with pytest.raises(SpecError, match="unknown LLM provider 'nope'"):
        arm_spec(
            governed,
            "single",
            SINGLE["refunds"].model_copy(update={"provider": "nope"}),
            base_dir=REFUNDS_APP.root,
            wiring=wiring(REFUNDS_APP, tmp_path),
        )


# --- the faults ----------------------------------------------------------------------------


def test_wrong_customer_swaps_whose_record_it_is_for_another_of_the_same_form() -> None:
    changed = FAULTS["wrong_customer"](ORDER, random.Random(1))
    assert changed is not None
    assert changed["customer_id"] != "CUS-002"
    assert changed["customer_id"].startswith("CUS-")
    assert len(changed["customer_id"]) == len("CUS-002")
    assert {k: v for k, v in changed.items() if k != "customer_id"} == {
        k: v for k, v in ORDER.items() if k != "customer_id"
    }
    other = FAULTS["wrong_customer"](LOOKUP, random.Random(1))  # the access app's analogue
    assert other is not None
    assert other["employee_id"] != "EMP-104"
    assert other["employee_id"].startswith("EMP-")
    assert FAULTS["wrong_customer"]({"order_id": "ORD-1"}, random.Random(1)) is None


def test_inflated_amount_multiplies_the_largest_money_fields_by_ten() -> None:
    changed = FAULTS["inflated_amount"](ORDER, random.Random(1))
    assert changed is not None
    assert (changed["amount_paid"], changed["refundable_amount"]) == (2490.0, 2490.0)  # still consistent
    assert changed["already_refunded"] == 0.0
    assert changed["days_since_delivery"] == 3
    assert FAULTS["inflated_amount"](LOOKUP, random.Random(1)) is None  # no money in a directory lookup


def test_missing_field_removes_the_records_key_which_the_contract_requires() -> None:
    changed = FAULTS["missing_field"](ORDER, random.Random(1))
    assert changed is not None
    assert "order_id" not in changed
    assert len(changed) == len(ORDER) - 1
    with pytest.raises(ValueError, match="order_id"):
        OrderFacts.model_validate(changed)
    other = FAULTS["missing_field"](LOOKUP, random.Random(1))
    assert other is not None
    assert "employee_id" not in other


def test_stale_record_moves_dates_back_a_year_or_more_else_flips_a_status() -> None:
    changed = FAULTS["stale_record"](ORDER, random.Random(1))
    assert changed is not None
    moved = datetime.fromisoformat(ORDER["delivered_at"]) - datetime.fromisoformat(changed["delivered_at"])
    assert 365 <= moved.days <= 730
    assert changed["days_since_delivery"] == 3 + moved.days
    assert FAULTS["stale_record"](LOOKUP, random.Random(1)) == {**LOOKUP, "active": False}
    assert FAULTS["stale_record"]({**ORDER, "delivered_at": None}, random.Random(1)) is None


def test_faults_never_mutate_the_handoff_and_repeat_with_the_same_seed() -> None:
    before = dict(ORDER)
    for corrupt in FAULTS.values():
        assert corrupt(ORDER, random.Random(5)) == corrupt(ORDER, random.Random(5))
    assert before == ORDER


def swap_reason(handoff: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    """An app's own fault kind, found by its dotted path."""
    return {**handoff, "reason_code": "other"} if "reason_code" in handoff else None


def test_an_app_adds_its_own_fault_kind_by_dotted_path() -> None:
    assert fault("tests.test_eval_arms:swap_reason") is swap_reason
    with pytest.raises(BatonUsageError, match="unknown fault 'typo'"):
        fault("typo")
    with pytest.raises(BatonUsageError, match="does not resolve"):
        fault("tests.test_eval_arms:nothing_here")


def test_choose_is_reproducible_respects_the_rate_and_shares_the_kinds() -> None:
    cases = [f"case-{n:03d}" for n in range(200)]
    kinds = ["wrong_customer", "missing_field"]
    chosen = choose(cases, 0.25, kinds, seed=42)
    assert len(chosen) == 50
    assert chosen == choose(reversed(cases), 0.25, kinds, seed=42)  # order of the case set is irrelevant
    assert sorted(chosen.values()).count("wrong_customer") == 25
    assert choose(cases, 0.25, kinds, seed=43) != chosen
    assert choose(cases, 0.0, kinds, seed=42) == {}
    assert len(choose(cases, 1.0, kinds, seed=42)) == 200
    assert len(choose(cases[:5], 0.1, kinds, seed=1)) == 1  # 0.5 cases rounds up
    with pytest.raises(BatonUsageError, match="not between 0 and 1"):
        choose(cases, 1.5, kinds, seed=42)
    with pytest.raises(BatonUsageError, match="unknown fault"):
        choose(cases, 0.1, ["typo"], seed=42)


def test_the_injector_corrupts_only_the_first_step_of_a_chosen_case_and_records_it() -> None:
    spec = load_spec(REFUNDS_APP.resolve_process("refund-request"))
    injector = FaultInjector({"c1": "missing_field", "c2": "inflated_amount"}, specs=[spec], seed=3)

    def asked(case_id: str, step: str = "intake") -> AgentInput:
        return AgentInput(case_id=case_id, process=spec.process, step=step, agent=step, case={})

    facts = OrderFacts.model_validate(ORDER)
    corrupted = injector.corrupt(asked("c1"), facts)
    assert isinstance(corrupted, dict)
    assert "order_id" not in corrupted
    assert injector.corrupt(asked("c1", "drafter"), {"order_id": "ORD-1002"}) == {"order_id": "ORD-1002"}
    assert injector.corrupt(asked("c3"), facts) is facts  # not chosen
    llm = LlmResult(output={"order_id": "x"}, usage=Usage(), model="m")
    assert injector.corrupt(asked("c2"), llm) == llm  # no money in it: the kind does not apply
    assert injector.applied == {"c1": "missing_field", "c2": None}


# --- on the real engine ------------------------------------------------------------------------


def arms_of(process: str) -> dict[str, ProcessSpec]:
    """The governed refund spec and its unchecked chain."""
    governed = load_spec(REFUNDS_APP.resolve_process(process))
    return {"governed": governed, "unchecked": unchecked(governed)}


def eval_case(case_id: str) -> str:
    """The eval case a workflow runs (``<case>--<arm>``): both arms get the same corruption."""
    return case_id.rpartition("--")[0]


async def run_both_arms(
    on_dev: Running, kind: str, case: dict[str, Any]
) -> tuple[FaultInjector, dict[str, str], CaseStatus, CaseResult, CaseResult]:
    """Run one case, injected with ``kind``, through the governed spec and its unchecked chain.

    Returns the injector, the case id of each arm, the governed case's status once it waited
    on a person (or ended), and both results (a governed case that waits is then rejected by
    a support manager, as an eval's scripted person would).
    """
    specs = arms_of("refund-request")
    key = f"eval-{uuid.uuid4().hex[:8]}"
    injector = FaultInjector({key: kind}, specs=specs.values(), seed=11, case_key=eval_case)
    running = Running(intercepting(on_dev.client, injector), on_dev.settings, on_dev.refunds, on_dev.llm)
    ids = {arm: f"{key}--{arm}" for arm in specs}
    async with running.worker():
        baton = running.baton
        for arm, spec in specs.items():
            await baton.start_case(snapshot_of(spec), case, case_id=ids[arm])
        loose = await baton.result(ids["unchecked"])
        status = await wait_for_approval(baton, ids["governed"])
        if status.awaiting is not None:
            await baton.reject(ids["governed"], approver="dana", reason="bad record at intake")
        governed = await baton.result(ids["governed"])
    return injector, ids, status, governed, loose


def refunds_written(refunds: RefundActivities, ids: dict[str, str]) -> list[tuple[str, int]]:
    """The ledger rows of these cases: which case refunded how many cents."""
    with refunds.db.connect() as conn:
        rows = conn.execute("SELECT case_id, amount_cents FROM refunds").fetchall()
    return [(r[0], r[1]) for r in rows if r[0] in ids.values()]


async def test_a_wrong_customer_at_intake_is_stopped_governed_and_refunded_unchecked(on_dev: Running) -> None:
    injector, ids, waiting, governed, loose = await run_both_arms(
        on_dev, "wrong_customer", refund("ORD-1002", "CUS-002", 249.0)
    )
    assert injector.applied == {ids["governed"]: "wrong_customer", ids["unchecked"]: "wrong_customer"}
    # Governed: the intake guard stops the record of another customer, twice, then a person.
    assert waiting.awaiting is not None
    assert waiting.awaiting.ladder == "exceptions"
    assert governed.outcome == Outcome.REJECTED
    assert governed.action is None
    stopped = [e.detail for e in governed.audit if e.kind == AuditKind.CHECK_FAILED]
    assert stopped == ["intake: the order belongs to another customer"] * 2
    assert governed.path[0] == "intake✗"
    # Unchecked: the same corrupted record flows on into a committed refund.
    assert loose.outcome == Outcome.ACTIONED
    assert loose.handoffs["intake"]["customer_id"] != "CUS-002"
    assert loose.path == ["intake", "drafter", "auto", "action"]
    assert refunds_written(on_dev.refunds, ids) == [(ids["unchecked"], 24900)]


async def test_a_missing_field_is_caught_by_the_contract_in_both_arms(on_dev: Running) -> None:
    injector, ids, waiting, governed, loose = await run_both_arms(
        on_dev, "missing_field", refund("ORD-1001", "CUS-001", 20.0)
    )
    assert set(injector.applied.values()) == {"missing_field"}
    assert waiting.awaiting is not None  # governed: escalated to a person; unchecked: the safe default
    for result in (governed, loose):
        assert result.outcome == Outcome.REJECTED
        problems = [p for e in result.audit if e.kind == AuditKind.CHECK_FAILED for p in e.data["problems"]]
        assert [p["source"] for p in problems] == ["contract", "contract"]
        assert all("order_id" in p["message"] for p in problems)
    assert refunds_written(on_dev.refunds, ids) == []


async def test_the_single_arm_runs_unchanged_and_acts_on_a_corrupted_record(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    governed = load_spec(REFUNDS_APP.resolve_process("refund-request"))
    single = single_agent(governed, SINGLE["refunds"], base_dir=REFUNDS_APP.root)
    case_id = f"solo-{uuid.uuid4().hex[:8]}"
    injector = FaultInjector({case_id: "wrong_customer"}, specs=[single], seed=2)
    # The app's scripted single agent refunds what the case asks, read from the prompt it is sent.
    async with serve_app(REFUNDS_APP, intercepting(env.client, injector), home=tmp_path) as harness:
        await harness.client.start_case(
            snapshot_of(single), refund("ORD-1015", "CUS-011", 42.5), case_id=case_id
        )
        result = await harness.result(case_id)
    assert injector.applied == {case_id: "wrong_customer"}
    assert result.outcome == Outcome.ACTIONED
    assert result.path == ["intake", "drafter", "auto", "action"]
    assert result.handoffs["intake"]["customer_id"] != "CUS-011"
    assert result.usage.calls >= 1
    assert result.handoffs["drafter"]["amount"] == 42.5
