"""The demo scenario: ten refund cases, one per path a governed case can take.

``run_scenario`` drives the cases through a :class:`BatonClient` (the tests
call it against their own server); ``run_demo`` is ``baton demo``: it starts
the embedded dev server and a worker, resets the refunds database, runs the
scenario, prints one line per case and stops what it started.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from activities import build_activities
from activities.refunds.db import RefundsDB
from baton import search, telemetry
from baton.client import BatonClient
from baton.connection import connect
from baton.devserver import DevServer
from baton.errors import BatonUsageError
from baton.fakellm import FakeLlmServer, FakeScript
from baton.messages import CaseResult, CaseStatus, Verdict
from baton.settings import Settings
from baton.spec import ProcessSpec, SpecSnapshot, snapshot_of

DEMO_RUNG_TIMEOUT = timedelta(seconds=3)
VERDICTS: dict[str, Verdict] = {
    "approve": "approve",
    "reject": "reject",
    "request_changes": "request_changes",
}


@dataclass
class DemoCase:
    """One scripted case: its input, what people do, and what must come out."""

    slug: str
    title: str
    case: dict[str, object]
    expect_outcome: str
    expect_path: list[str]
    process: str = "refund-request"
    people: list[tuple[str, str, str]] = field(default_factory=list)
    """(decision, approver, comment) sent in order once the case awaits approval.
    A decision starting with ``signal:`` goes as a signal (its refusal lands in the
    audit trail); the others go as updates (a refusal would raise at once)."""


@dataclass
class CaseReport:
    """What happened to one demo case and whether it matched the script."""

    demo: DemoCase
    case_id: str
    result: CaseResult

    @property
    def ok(self) -> bool:
        """Outcome as expected and every expected path element present, in order."""
        remaining = iter(self.result.path)
        in_order = all(any(step == seen for seen in remaining) for step in self.demo.expect_path)
        return self.result.outcome.value == self.demo.expect_outcome and in_order

    def line(self) -> str:
        """One printable line: id, path, outcome."""
        mark = "ok " if self.ok else "!! "
        path = " → ".join(self.result.path)
        outcome = f"{self.result.outcome.value}: {self.result.reason}"
        if self.result.usage.calls:
            u = self.result.usage
            outcome += f" [{u.calls} LLM calls, {u.input_tokens}+{u.output_tokens} tokens]"
        return f"{mark}{self.case_id}  [{self.demo.title}]\n      {path}\n      ⇒ {outcome}"


def _refund(order: str, customer: str, amount: float, reason: str) -> dict[str, object]:
    return {
        "order_id": order,
        "customer_id": customer,
        "requested_amount": amount,
        "reason": reason,
    }


SCENARIO = [
    DemoCase(
        "auto", "auto-approved small refund",
        _refund("ORD-1001", "CUS-001", 34.90, "defective"),
        "actioned", ["intake", "drafter", "policy", "auto", "action"],
    ),
    DemoCase(
        "approval", "approved by a support lead after an unauthorised attempt",
        _refund("ORD-1002", "CUS-002", 249.00, "defective"),
        "actioned", ["approval:standard", "approved by alice", "action"],
        people=[("signal:approve", "bob", "looks fine to me"), ("approve", "alice", "verified defect")],
    ),
    DemoCase(
        "revision", "policy review rejects, drafter revises",
        _refund("ORD-1003", "CUS-003", 79.98, "changed_mind"),
        "actioned", ["drafter", "policy", "drafter(r1)", "policy", "auto", "action"],
    ),
    DemoCase(
        "contained", "bad draft stopped at the handoff, fixed with feedback",
        _refund("ORD-1004", "CUS-004", 90.00, "defective"),
        "actioned", ["intake", "drafter✗", "drafter", "policy", "auto", "action"],
    ),
    DemoCase(
        "escalated", "wrong customer: intake handoff fails, a manager rejects",
        _refund("ORD-1005", "CUS-009", 120.00, "defective"),
        "rejected", ["intake✗", "escalated:exceptions", "rejected by dana"],
        people=[("reject", "dana", "requester does not own the order")],
    ),
    DemoCase(
        "timeout", "nobody approves: ladder climbs, safe default applies",
        _refund("ORD-1006", "CUS-006", 310.00, "not_as_described"),
        "rejected", ["approval:standard", "timeout"],
    ),
    DemoCase(
        "finance", "large refund approved by finance",
        _refund("ORD-1007", "CUS-007", 1899.00, "defective"),
        "actioned", ["approval:finance", "approved by carol", "action"],
        people=[("approve", "carol", "within budget")],
    ),
    DemoCase(
        "changes", "support lead requests changes: redrafted, every check again",
        _refund("ORD-1014", "CUS-010", 120.00, "not_as_described"),
        "actioned",
        ["approval:standard", "changes requested by alice", "drafter", "policy", "auto", "action"],
        people=[("request_changes", "alice", "only one of three items was damaged: refund at most 40.00")],
    ),
    DemoCase(
        "dual", "above 5,000: two different finance approvers",
        _refund("ORD-1013", "CUS-009", 7200.00, "defective"),
        "actioned", ["approval:finance-dual", "approved by carol+erin", "action"],
        people=[("approve", "carol", "invoice checked"), ("approve", "erin", "second pair of eyes")],
    ),
    DemoCase(
        "exception", "outside the window: review never passes, manager makes an exception",
        _refund("ORD-1010", "CUS-002", 40.00, "late_delivery"),
        "actioned", ["drafter(r2)", "escalated:exceptions", "approved by dana", "action"],
        people=[("approve", "dana", "goodwill: courier lost it for weeks")],
    ),
]  # fmt: skip


LLM_SCENARIO = [
    DemoCase(
        "llm", "LLM drafter repaired after a schema-violating reply; explainer rate-limited once",
        _refund("ORD-1015", "CUS-011", 42.50, "defective"),
        "actioned", ["intake", "drafter", "policy", "explainer", "auto", "action"],
        process="refund-request-llm",
    ),
]  # fmt: skip
FAKE_LLM_SCRIPT = Path(__file__).resolve().parents[1] / "processes" / "fake-llm" / "demo.yaml"


def demo_snapshot(
    client: BatonClient, rung_timeout: timedelta = DEMO_RUNG_TIMEOUT, process: str = "refund-request"
) -> SpecSnapshot:
    """A bundled spec with every approval rung shortened, so the demo sees timeouts."""
    spec = client.load(process).spec
    ladders = {
        name: [
            rung.model_copy(
                update={"timeout": rung_timeout, "remind": rung_timeout * 2 / 3 if rung.remind else None}
            )
            for rung in rungs
        ]
        for name, rungs in spec.ladders.items()
    }
    short = ProcessSpec.model_validate(spec.model_copy(update={"ladders": ladders}).model_dump())
    return snapshot_of(short, source=f"{process} (demo)")


async def run_scenario(
    client: BatonClient, *, prefix: str, scenario: list[DemoCase] | None = None
) -> list[CaseReport]:
    """Run every scripted case concurrently and return their reports in script order."""
    cases = scenario or SCENARIO
    snapshots = {p: demo_snapshot(client, process=p) for p in {d.process for d in cases}}

    async def one(index: int, demo: DemoCase) -> CaseReport:
        case_id = await client.start_case(
            snapshots[demo.process], demo.case, case_id=f"{prefix}-{index}-{demo.slug}", submitted_by="demo"
        )
        for decision, approver, comment in demo.people:
            await wait_for_approval(client, case_id)
            signal, verdict = decision.startswith("signal:"), decision.removeprefix("signal:")
            try:
                await client.decide(
                    case_id, VERDICTS[verdict], approver=approver, comment=comment, signal=signal
                )
            except BatonUsageError:
                break  # off script (e.g. the case did not wait): its report will say so
        return CaseReport(demo, case_id, await client.result(case_id))

    return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(scenario or SCENARIO, 1))))


async def wait_for_approval(client: BatonClient, case_id: str, *, timeout: float = 30) -> CaseStatus:
    """Poll the case until it waits on a ladder (as a person watching the inbox would)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await client.status(case_id)
        if status.awaiting is not None or status.outcome is not None:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{case_id} never reached an approval (stage: {status.stage})")
        await asyncio.sleep(0.1)


async def run_demo(settings: Settings, *, use_existing_server: bool = False) -> bool:
    """``baton demo``: returns True when every case took its scripted path."""
    from worker import build_worker  # the worker module is the composition root

    RefundsDB(settings.refunds_db).reset()
    telemetry.configure(settings.home, service="baton-demo")
    server = DevServer(
        settings.temporal_db,
        log_file=settings.home / "temporal.log",
        search_attributes=search.TYPE_NAMES_BY_NAME,
    )
    started = time.monotonic()
    if not use_existing_server:
        print(f"starting Temporal dev server (db {settings.temporal_db}, UI http://localhost:8233)")
        await server.start()
    try:
        temporal = await connect()
        client = BatonClient(temporal, task_queue=settings.task_queue, settings=settings)
        parts = build_activities(settings)
        worker = build_worker(temporal, task_queue=settings.task_queue, activities=parts.activities)
        fake = FakeLlmServer(FakeScript.load(FAKE_LLM_SCRIPT))
        await fake.start()
        # The demo's worker runs in this process: point the OpenAI provider at the stand-in.
        os.environ["OPENAI_BASE_URL"] = fake.base_url
        os.environ["OPENAI_API_KEY"] = "demo-key-for-the-stand-in"  # never send a real key to it
        async with worker:
            prefix = time.strftime("demo-%Y%m%d-%H%M%S")
            print(
                f"running {len(SCENARIO)} refund cases "
                f"(approval rungs shortened to {DEMO_RUNG_TIMEOUT.seconds}s)\n"
            )
            reports = await run_scenario(client, prefix=prefix)
            print(f"running {len(LLM_SCENARIO)} refund-request-llm case against the scripted "
                  f"OpenAI-compatible server at {fake.base_url} (a stand-in, not a model)\n")  # fmt: skip
            reports += await run_scenario(client, prefix=prefix + "-llm", scenario=LLM_SCENARIO)
        await fake.stop()
        await parts.aclose()
    finally:
        server.stop()
    for report in reports:
        print(report.line())
    ledger = RefundsDB(settings.refunds_db).ledger()
    refunded = [r for r in ledger if r["case_id"] != "seed"]
    good = sum(r.ok for r in reports)
    print(
        f"\n{good}/{len(reports)} cases took their scripted path; {len(refunded)} refunds in the "
        f"ledger; {time.monotonic() - started:.1f}s.\nInspect them: `baton dev`, then open "
        "http://localhost:8233 (search for WorkflowId STARTS_WITH '" + prefix + "')."
    )
    return good == len(reports)
