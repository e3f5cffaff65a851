"""Check an eval case set's labels against the real engine: the governed process, every case.

Run from the Baton checkout (starts its own Temporal dev server and the app's worker on a
freshly seeded home, as one arm of ``baton eval`` does)::

    .venv/bin/python examples/refunds/eval/check_labels.py
    .venv/bin/python examples/refunds/eval/check_labels.py --app examples/access --process access-request \\
        --handoff proposer

Cases run in file order, several at once, each behind the case its ``after`` names; the
scripted people decide as each case's ``human`` says. A case matches when the run ends as
``baton eval`` would score it correct (:func:`baton.evals.report.is_correct`), every scripted
person was needed and accepted, and the case never waited on a person nobody was scripted as.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from baton.app import App
from baton.evals.cases import EvalCase, load_cases
from baton.evals.records import CaseRun
from baton.evals.report import is_correct
from baton.testing import AppHarness, DecisionRefusedError, serve_app, start_dev_server

HERE = Path(__file__).resolve().parent
SUBMITTER = "eval"
"""Who starts the cases, as ``baton eval`` does: never one of the scripted approvers."""
SETTLE = 30.0
"""Seconds a case may take to end once its people have decided (the agents are local)."""


@dataclass
class Check:
    """One case's run and whether it matched its label."""

    case: EvalCase
    outcome: str = "failed"
    waited: bool = False
    amount: object = None
    problems: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        want = self.case.expect.outcome
        got = f"{self.outcome}{' (waited)' if self.waited else ''} amount={self.amount}"
        return f"{self.case.id}: want {want}, got {got}: {'; '.join(self.problems)}\n    path: {self.path}"


async def run_case(harness: AppHarness, process: str, handoff: str, case: EvalCase, prefix: str) -> Check:
    """Start one case, decide as its people do, wait for the end, compare with the label."""
    check = Check(case)
    started = time.monotonic()
    case_id = await harness.start(process, case.case, submitted_by=SUBMITTER, case_id=f"{prefix}-{case.id}")
    for person in case.human:
        status = await harness.wait_for_approval(case_id)
        if status.awaiting is None:
            check.problems.append(f"ended before {person.as_} was needed ({person.decide})")
            break
        check.waited = True
        try:
            await harness.client.decide(case_id, person.decide, approver=person.as_, comment=person.comment)
        except DecisionRefusedError as refused:
            check.problems.append(f"{person.as_} refused: {refused}")
            break
    try:
        result = await asyncio.wait_for(harness.result(case_id), timeout=SETTLE)
    except TimeoutError:
        status = await harness.client.status(case_id)
        role = status.awaiting.role if status.awaiting else status.stage
        check.problems.append(f"still waiting on {role} with nobody scripted")
        check.path = status.path
        await harness.client.handle(case_id).terminate("eval label check: nobody scripted")
        return check
    check.outcome = str(result.outcome.value)
    check.path = result.path
    check.waited = check.waited or any(step.startswith(("approval:", "escalated:")) for step in result.path)
    action = result.handoffs.get(handoff) if check.outcome == "actioned" else None
    check.amount = action.get("amount") if action else None
    run = CaseRun(
        case=case.id,
        arm="governed",
        outcome=check.outcome,
        escalated=check.waited,
        human_touches=len(case.human),
        action=action,
        latency_ms=(time.monotonic() - started) * 1000,
        path=result.path,
    )
    if not is_correct(case.expect, run):
        check.problems.append("does not match the label")
    return check


async def check_cases(
    harness: AppHarness, process: str, handoff: str, cases: Sequence[EvalCase], *, concurrency: int = 4
) -> list[Check]:
    """Run ``cases`` (each behind its ``after``), at most ``concurrency`` at once; one check each."""
    gate = asyncio.Semaphore(concurrency)
    tasks: dict[str, asyncio.Task[Check]] = {}
    prefix = f"labels-{int(time.time())}"

    async def one(case: EvalCase) -> Check:
        if case.after is not None and case.after in tasks:
            await tasks[case.after]
        async with gate:
            return await run_case(harness, process, handoff, case, prefix)

    for case in cases:
        tasks[case.id] = asyncio.create_task(one(case))
    return [await task for task in tasks.values()]


async def check_file(app_dir: Path, process: str, handoff: str, cases_file: Path, concurrency: int) -> int:
    cases = load_cases(cases_file)
    app = App.require(app_dir)
    environment = await start_dev_server()
    async with environment:
        with tempfile.TemporaryDirectory() as home:
            async with serve_app(app, environment.client, home=Path(home)) as harness:
                started = time.monotonic()
                checks = await check_cases(harness, process, handoff, cases, concurrency=concurrency)
    bad = [c for c in checks if not c.ok]
    for check in bad:
        print(check.line())
    seconds = time.monotonic() - started
    print(f"{len(checks)} cases run, {len(checks) - len(bad)} match their label ({seconds:.0f} s)")
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--app", type=Path, default=HERE.parent, help="the app directory")
    parser.add_argument("--process", default="refund-request")
    parser.add_argument("--handoff", default="drafter", help="the handoff the action commits")
    parser.add_argument("--cases", type=Path, help="default: <app>/eval/cases.jsonl")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    cases_file = args.cases or args.app / "eval" / "cases.jsonl"
    return asyncio.run(check_file(args.app, args.process, args.handoff, cases_file, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
