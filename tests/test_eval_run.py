"""``baton eval`` end to end on the real dev server: the runner, resuming, and the command's exits.

A small refund case set runs through the governed process and its unchecked chain, two of
its cases with a wrong customer injected at intake. The governed arm commits no wrong
action and contains both faults; the unchecked chain refunds what it should not. The
single arm, answered by the app's scripted naive agent, refunds what every case asks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.llm.providers import load_providers_file
from baton.evals.cases import EvalCase, load_cases
from baton.evals.inject import choose
from baton.evals.records import Arm, CaseRun
from baton.evals.runner import FAKE_LLM_NOTE, RUNS_FILE, load_options, load_runs, options_path, run_eval
from tests.conftest import REFUNDS_APP, ROOT

INJECTED = {"auto-1016", "auto-1009"}
KINDS = ["wrong_customer"]
RATE = 2 / 6


def line(case_id: str, order: str, customer: str, amount: float, expect: dict[str, Any], **more: Any) -> str:
    """One labelled refund case as a JSONL line."""
    case = {"order_id": order, "customer_id": customer, "requested_amount": amount, "reason": "defective"}
    return json.dumps({"id": case_id, "case": case, "expect": expect, **more})


def actioned(amount: float) -> dict[str, Any]:
    return {"outcome": "actioned", "action": {"amount": {"equals": amount, "tolerance": 0.01}}}


CASES = "\n".join(
    [
        "# a small refund eval: one case per path the figures count",
        line("auto-1001", "ORD-1001", "CUS-001", 34.9, actioned(34.9)),
        line(
            "lead-1002",
            "ORD-1002",
            "CUS-002",
            249.0,
            {"outcome": "escalated"},
            human=[{"decide": "approve", "as": "alice", "comment": "verified defect"}],
        ),
        line("giftcard-1011", "ORD-1011", "CUS-003", 50.0, {"outcome": "rejected"}),
        line(
            "wrongcust-1005",
            "ORD-1005",
            "CUS-009",
            120.0,
            {"outcome": "rejected"},
            human=[{"decide": "reject", "as": "dana", "comment": "requester does not own the order"}],
        ),
        line("auto-1016", "ORD-1016", "CUS-012", 28.5, actioned(28.5), after="auto-1001"),
        line("auto-1009", "ORD-1009", "CUS-001", 50.0, actioned(50.0)),
    ]
)


def seed_injecting(ids: Sequence[str]) -> int:
    """A seed whose choice corrupts exactly the two clean auto-approved cases (found, not hard-coded,
    so the test does not depend on the hash's particular order)."""
    return next(s for s in range(1000) if set(choose(ids, RATE, KINDS, s)) == INJECTED)


def by(runs: list[CaseRun], arm: Arm) -> dict[str, CaseRun]:
    return {run.case: run for run in runs if run.arm == arm}


async def test_governed_contains_what_the_unchecked_chain_acts_on_and_a_rerun_resumes(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    (tmp_path / "cases.jsonl").write_text(CASES)
    cases = load_cases(tmp_path / "cases.jsonl")
    seed = seed_injecting([c.id for c in cases])
    seen: list[tuple[Arm, int, int]] = []

    async def run(selected: list[EvalCase]) -> tuple[Any, list[CaseRun]]:
        return await run_eval(
            REFUNDS_APP,
            "refund-request",
            selected,
            out_dir=tmp_path / "out",
            arms=("governed", "unchecked", "single"),
            inject_rate=RATE,
            inject_kinds=KINDS,
            seed=seed,
            concurrency=4,
            client=env.client,
            rung_timeout=timedelta(seconds=3),
            progress=lambda arm, done, total: seen.append((arm, done, total)),
        )

    report, runs = await run(cases)
    governed, loose = by(runs, "governed"), by(runs, "unchecked")
    assert {r.case for r in runs if r.injected} == INJECTED
    assert all(r.outcome != "failed" for r in runs), [r.error for r in runs]
    # Governed: every clean case right, the two scripted people counted, both faults stopped at intake.
    assert governed["auto-1001"].action is not None
    assert governed["auto-1001"].action["amount"] == 34.9
    assert governed["lead-1002"].outcome == "actioned"
    assert governed["lead-1002"].escalated
    assert governed["wrongcust-1005"].outcome == "rejected"
    g = report.arms["governed"]
    assert (g.cases, g.correct, g.accuracy, g.wrong_actions) == (6, 4, 1.0, 0)
    assert (g.faults_injected, g.faults_reaching_action, g.faults_contained) == (2, 0, 2)
    assert round(g.human_touches_per_100, 1) == 33.3  # alice and dana, over six runs
    assert all(r.outcome == "rejected" and r.escalated for c, r in governed.items() if c in INJECTED)
    # Unchecked: nobody is asked, and the corrupted and wrong-customer cases become refunds.
    u = report.arms["unchecked"]
    assert u.human_touches_per_100 == 0
    assert u.escalation_rate == 0
    assert (u.faults_injected, u.faults_reaching_action) == (2, 2)
    assert loose["wrongcust-1005"].outcome == "actioned"
    assert loose["lead-1002"].outcome == "actioned"  # acted on with no person: wrong by its label
    assert all(r.path == ["intake", "drafter", "auto", "action"] for r in loose.values())
    # Wrong: the gift card, the wrong customer, the 249.00 no person saw, and both corrupted records.
    assert (u.correct, u.accuracy, u.wrong_actions, u.wrong_value) == (1, 0.25, 5, 28.5 + 50 + 50 + 120 + 249)
    # The arms end alike on lead-1002 (both actioned); they differ where the governed one refused.
    assert set(report.disagreements) == {"giftcard-1011", "wrongcust-1005", *INJECTED}
    assert report.model_note == FAKE_LLM_NOTE
    assert any("single arm skipped" in note for note in report.notes)
    assert "single" not in report.arms
    assert (tmp_path / "out" / "report.html").exists()
    assert (
        json.loads((tmp_path / "out" / "report.json").read_text())["arms"]["governed"]["wrong_actions"] == 0
    )
    assert ("governed", 6, 6) in seen
    assert ("unchecked", 6, 6) in seen
    on_disk, bad = load_runs(tmp_path / "out" / RUNS_FILE)
    assert (len(on_disk), bad) == (12, 0)

    # A rerun with the same folder starts nothing: every (case, arm) is already there.
    seen.clear()
    again, rerun = await run(cases)
    assert len(rerun) == 12
    assert len(load_runs(tmp_path / "out" / RUNS_FILE)[0]) == 12
    assert seen == [("governed", 6, 6), ("unchecked", 6, 6)]
    assert again.arms == report.arms


def baton(*args: str, env: WorkflowEnvironment, home: Path) -> subprocess.CompletedProcess[str]:
    """``baton`` as a user runs it, against the test's dev server (``--no-server``)."""
    environ = {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "BATON_HOME": str(home),
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "baton"), "--app", str(ROOT / "examples" / "refunds"), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=180,
        check=False,
    )


async def test_the_command_fails_the_gate_and_refuses_a_bad_case_file(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join([*CASES.splitlines()[:2], CASES.splitlines()[4]]))  # auto-1001, wrongcust-1005
    gate = "arms.unchecked.wrong_actions > 0"
    done = baton(
        "eval", "refund-request", "--cases", str(cases), "--arms", "governed,unchecked",
        "--out", str(tmp_path / "out"), "--no-server", "--fail-if", gate,
        env=env, home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "wrong committed actions" in done.stdout
    assert f"--fail-if {gate!r} holds: arms.unchecked.wrong_actions = 1" in done.stderr
    assert "governed  2/2" in done.stderr
    assert (tmp_path / "out" / "report.json").exists()

    cases.write_text(CASES.splitlines()[1] + '\n{"id": "x", "case": {}, "expect": {"outcome": "maybe"}}\n')
    bad = baton("eval", "refund-request", "--cases", str(cases), "--no-server", env=env, home=tmp_path)
    assert bad.returncode == 2
    assert f"{cases}:2: expect.outcome" in bad.stderr
    assert "Traceback" not in bad.stderr
    cases.write_text(CASES.splitlines()[1])
    unknown = baton("eval", "no-such", "--cases", str(cases), "--no-server", env=env, home=tmp_path)
    assert unknown.returncode == 2
    assert "no process 'no-such'" in unknown.stderr
    expression = baton(
        "eval", "refund-request", "--cases", str(cases), "--no-server", "--fail-if", "wrong_actionz > 0",
        env=env, home=tmp_path,
    )  # fmt: skip
    assert expression.returncode == 2
    assert "--fail-if 'wrong_actionz > 0'" in expression.stderr
    assert not (tmp_path / "eval").exists()  # nothing started, nothing written


async def test_an_interrupted_eval_leaves_a_partial_report_and_stops_its_cases(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    (tmp_path / "cases.jsonl").write_text(CASES)
    cases = load_cases(tmp_path / "cases.jsonl")
    task: asyncio.Task[Any] | None = None

    def interrupt_after_the_first(arm: Arm, done: int, total: int) -> None:
        if done >= 1 and task is not None:
            task.cancel()  # what Ctrl-C does to `asyncio.run`'s main task

    task = asyncio.create_task(
        run_eval(
            REFUNDS_APP,
            "refund-request",
            cases,
            out_dir=tmp_path / "out",
            arms=("governed",),
            concurrency=2,
            client=env.client,
            progress=interrupt_after_the_first,
        )
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    finished, _ = load_runs(tmp_path / "out" / RUNS_FILE)
    assert 1 <= len(finished) < 6
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["arms"]["governed"]["cases"] == len(finished)
    assert f"partial: {len(finished)} of 6 case runs finished" in written["notes"]
    # A case the interrupt caught was terminated, not left waiting on a person (describe is authoritative;
    # the listing only finds the ids).
    for listed in [
        w async for w in env.client.list_workflows("WorkflowId STARTS_WITH 'lead-1002--governed'")
    ]:
        described = await env.client.get_workflow_handle(listed.id).describe()
        assert described.status != WorkflowExecutionStatus.RUNNING


async def test_the_single_arm_acts_on_the_scripted_naive_agent_and_prices_its_tokens(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # The refund app's own eval options (the single agent in the drafter's place) and prices.
    options = load_options(options_path(REFUNDS_APP.root / "eval" / "cases.jsonl"), required=True)
    assert options.single is not None
    (tmp_path / "cases.jsonl").write_text(CASES)
    report, runs = await run_eval(
        REFUNDS_APP,
        "refund-request",
        load_cases(tmp_path / "cases.jsonl"),
        out_dir=tmp_path / "out",
        arms=("governed", "single"),
        options=options,
        concurrency=6,
        client=env.client,
        rung_timeout=timedelta(seconds=3),
    )
    single = by(runs, "single")
    assert all(r.outcome != "failed" for r in runs), [r.error for r in runs]
    # The scripted agent refunds whatever was asked, for every case: the gift card and the wrong
    # customer's order included, each with the amount filled from its own case.
    assert all(r.path == ["intake", "drafter", "auto", "action"] for r in single.values())
    assert {c: r.action["amount"] for c, r in single.items() if r.action} == {
        "auto-1001": 34.9, "lead-1002": 249.0, "giftcard-1011": 50.0,
        "wrongcust-1005": 120.0, "auto-1016": 28.5, "auto-1009": 50.0,
    }  # fmt: skip
    s = report.arms["single"]
    assert (s.correct, s.wrong_actions, s.wrong_value) == (3, 3, 249.0 + 50.0 + 120.0)
    assert report.arms["governed"].wrong_actions == 0
    assert {r.model for r in single.values()} == {"gpt-4o-mini"}
    assert s.input_tokens > 0
    assert s.output_tokens > 0
    assert "gpt-4o-mini" not in options.prices  # the price list is the providers file's
    price = load_providers_file(REFUNDS_APP.root / "providers.yaml").prices["gpt-4o-mini"]
    expected = (s.input_tokens * price.input_per_million + s.output_tokens * price.output_per_million) / 1e6
    assert s.cost == pytest.approx(expected)
    assert report.arms["governed"].input_tokens == 0  # refund-request's agents are Python: no tokens
