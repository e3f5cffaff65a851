"""Accountability on a real dev server: one trace per case with business spans, GenAI
attributes, no duplicates on replay, no case data in spans, a tamper-evident audit log."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

from activities.audit import AuditActivities
from baton import auditlog, traces
from baton.auditlog import AuditLog
from baton.messages import AuditBatch, AuditEvent, AuditKind, AuditReceipt, Outcome
from baton.scenario import wait_for_approval
from baton.telemetry import JsonlSpanExporter
from tests.conftest import Running, refund

EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="session", autouse=True)
def otel_providers() -> None:
    """In-memory span exporter and metric reader as this test process's global providers."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@pytest.fixture
def traced(env: WorkflowEnvironment, on_dev: Running) -> Running:
    """``on_dev`` with a client that traces (as ``baton.connection.connect`` does)."""
    config = env.client.config()
    config["interceptors"] = [TracingInterceptor()]
    EXPORTER.clear()
    return Running(Client(**config), on_dev.settings, on_dev.refunds, on_dev.llm)


def spans_of(case_id: str) -> list[ReadableSpan]:
    found = [s for s in EXPORTER.get_finished_spans() if _case(s) == case_id]
    roots = {s.context.trace_id for s in found if s.name == "StartWorkflow:GovernedProcess"}
    return [s for s in EXPORTER.get_finished_spans() if s.context.trace_id in roots]


def _case(span: ReadableSpan) -> Any:
    attributes = span.attributes or {}
    return attributes.get("baton.case_id") or attributes.get("temporalWorkflowID")


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_one_trace_per_case_with_business_spans_and_no_replay_duplicates(traced: Running) -> None:
    baton = traced.baton
    async with traced.worker(max_cached_workflows=0):  # every activation replays from history
        case_id = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        await wait_for_approval(baton, case_id)
        await baton.approve(case_id, approver="alice", comment="ok")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    spans = spans_of(case_id)
    assert len({s.context.trace_id for s in spans}) == 1
    mine = [s for s in EXPORTER.get_finished_spans() if _case(s) == case_id]
    in_trace = {s.context.span_id for s in spans}
    # Every span of the case is in its trace, except later client calls' own spans (the
    # test's status queries and the approval's client side), whose handlers are in it.
    strays = {s.name for s in mine if s.context.span_id not in in_trace}
    assert strays <= {"QueryWorkflow:status", "HandleQuery:status", "StartWorkflowUpdate:decide"}
    (start,) = by_name(spans, "StartWorkflow:GovernedProcess")
    (run,) = by_name(spans, "RunWorkflow:GovernedProcess")
    assert run.parent is not None
    assert run.parent.span_id == start.context.span_id
    starts = [s for s in spans if s.name.startswith("StartActivity:")]
    # Temporal's tracing interceptor hangs workflow-side spans off the case's start span;
    # successive activities are siblings there, never nested in one another.
    assert {s.parent.span_id for s in starts if s.parent} == {start.context.span_id}
    business = [s for s in spans if s.attributes and "baton.seq" in s.attributes]
    assert {s.parent.span_id for s in business if s.parent} == {start.context.span_id}
    for ran in (s for s in spans if s.name.startswith("RunActivity:")):
        assert ran.parent is not None
        assert ran.parent.span_id in {s.context.span_id for s in starts}
    # One business span per audit event, even though every activation replayed.
    seqs = Counter(
        int(str(s.attributes["baton.seq"])) for s in spans if s.attributes and "baton.seq" in s.attributes
    )
    assert sorted(seqs) == [e.seq for e in result.audit]
    assert set(seqs.values()) == {1}
    checks = by_name(spans, "baton.check_passed")
    assert [s.attributes["baton.check.result"] for s in checks if s.attributes] == ["passed"] * 3
    (decision,) = by_name(spans, "baton.decision")
    assert decision.attributes is not None
    assert decision.attributes["baton.decision"] == "approval:standard"
    (approved,) = by_name(spans, "baton.approved")
    assert approved.attributes is not None
    assert approved.attributes["baton.approver"] == "alice"
    agents = [
        s.attributes["gen_ai.agent.name"] for s in spans if s.name.startswith("invoke_agent") and s.attributes
    ]
    assert agents == ["intake", "drafter", "policy"]
    # No case data in spans: not the customer, not the drafted message.
    dumped = json.dumps([dict(s.attributes or {}) for s in spans])
    assert "CUS-002" not in dumped
    assert "refunding" not in dumped


async def test_audit_log_is_chained_joined_to_the_trace_and_tamper_evident(
    traced: Running, tmp_path: Path
) -> None:
    async with traced.worker():
        case_id = await traced.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 20.0))
        result = await traced.baton.result(case_id)
    log = traced.settings.audit_log
    assert auditlog.verify(log).ok
    records = list(auditlog.read(log, case_id=case_id))
    assert [r["event"]["seq"] for r in records] == [e.seq for e in result.audit]
    (start,) = by_name(spans_of(case_id), "StartWorkflow:GovernedProcess")
    assert {r["trace_id"] for r in records} == {f"{start.context.trace_id:032x}"}
    assert all(r["workflow_id"] == case_id and r["run_id"] for r in records)
    assert "CUS-001" not in log.read_text()  # digests and names, not the case

    lines = log.read_text().splitlines(keepends=True)
    tampered = tmp_path / "t.jsonl"

    def check(new_lines: list[str]) -> str:
        tampered.write_text("".join(new_lines))
        return str(auditlog.verify(tampered))

    edited = lines.copy()
    edited[4] = edited[4].replace("contract and", "contract AND")
    assert check(edited) == "line 5: record changed: its hash does not match its content"
    assert check(lines[:4] + lines[5:]).startswith("line 5: chain broken")
    swapped = [*lines[:3], lines[4], lines[3], *lines[5:]]
    assert check(swapped).startswith("line 4: chain broken")
    assert check(lines) == f"ok: {len(lines)} records, chain intact"


async def test_a_retried_audit_append_writes_no_duplicates(on_dev: Running) -> None:
    real = AuditActivities(AuditLog(on_dev.settings.audit_log))
    attempts: list[int] = []

    @activity.defn(name="baton.audit_append")
    async def crashing_append(batch: AuditBatch) -> AuditReceipt:
        receipt = await real.audit_append(batch)  # the records land...
        attempts.append(activity.info().attempt)
        if activity.info().attempt == 1:
            raise RuntimeError("worker died before reporting")  # ...but the report is lost
        return receipt

    async with on_dev.worker([crashing_append]):
        case_id = await on_dev.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 20.0))
        result = await on_dev.baton.result(case_id)
    assert attempts[:2] == [1, 2]
    keys = [r["key"] for r in auditlog.read(on_dev.settings.audit_log)]
    assert len(keys) == len(set(keys)) == len(result.audit)
    assert auditlog.verify(on_dev.settings.audit_log).ok


async def test_llm_spans_follow_genai_conventions_without_content(
    traced: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    from baton.fakellm import FakeLlmServer, FakeScript
    from tests.test_llm import DRAFT, NOTE, SECRET

    script = FakeScript.model_validate(
        {"agents": {"drafter": [{"json": DRAFT}], "explainer": [{"json": NOTE}]}}
    )
    async with FakeLlmServer(script) as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        async with traced.worker():
            case_id = await traced.baton.start_case("refund-request-llm", refund("ORD-1015", "CUS-011", 42.5))
            result = await traced.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    spans = spans_of(case_id)
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == 2
    for chat in chats:
        assert chat.attributes is not None
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert chat.attributes["gen_ai.usage.input_tokens"] == 100
        assert chat.parent is not None
        parent = next(s for s in spans if s.context.span_id == chat.parent.span_id)
        assert parent.name == "RunActivity:baton.llm_agent"
    dumped = json.dumps([dict(s.attributes or {}) for s in spans])
    assert SECRET not in dumped
    assert "Kai" not in dumped  # neither prompt nor reply content


async def test_trace_file_prints_as_a_tree(traced: Running, tmp_path: Path) -> None:
    async with traced.worker():
        case_id = await traced.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 20.0))
        await traced.baton.result(case_id)
    path = tmp_path / "traces.jsonl"
    JsonlSpanExporter(path).export(spans_of(case_id))
    tree = traces.case_tree(path, case_id)
    assert tree[0].startswith("StartWorkflow:GovernedProcess")
    assert tree[1].startswith("  RunWorkflow:GovernedProcess")
    assert any(line.startswith("    RunActivity:refunds.intake") for line in tree)
    assert any("baton.check_passed" in line and "result=passed" in line for line in tree)


def metric_points() -> dict[str, float]:
    data = READER.get_metrics_data()
    if data is None:
        return {}
    return {
        m.name: sum(getattr(p, "value", 0) or getattr(p, "count", 0) for p in m.data.data_points)
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }  # fmt: skip


async def test_metrics_count_each_logged_event_once(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    events = [
        AuditEvent(seq=1, at=now, kind=AuditKind.HANDOFF, detail="x", agent="drafter",
                   data={"input_tokens": 120, "output_tokens": 30, "calls": 1}),
        AuditEvent(seq=2, at=now, kind=AuditKind.APPROVAL_REQUESTED, detail="x", data={"role": "finance"}),
        AuditEvent(seq=3, at=now + timedelta(seconds=42), kind=AuditKind.APPROVED, detail="x",
                   actor="carol", data={"role": "finance"}),
        AuditEvent(seq=4, at=now, kind=AuditKind.CASE_CLOSED, detail="x", data={"outcome": "actioned"}),
    ]  # fmt: skip
    batch = AuditBatch(case_id="m-1", process="p", workflow_id="m-1", run_id="r", events=events)
    sink = AuditActivities(AuditLog(tmp_path / "audit.jsonl"))
    before = metric_points()
    assert (await sink.audit_append(batch)).written == 4
    assert (await sink.audit_append(batch)).written == 0  # a retry: nothing new written, nothing counted
    after = metric_points()
    assert after["baton.cases"] - before.get("baton.cases", 0) == 1
    assert after["baton.llm.tokens"] - before.get("baton.llm.tokens", 0) == 150
    assert after["baton.approval.latency"] - before.get("baton.approval.latency", 0) == 1


async def test_each_opinion_and_the_resolution_of_a_parallel_group_is_a_span(traced: Running) -> None:
    baton = traced.baton
    async with traced.worker():
        # ORD-1018 is 2,400 delivered yesterday: policy approves, fraud rejects, the drafter caps it
        case_id = await baton.start_case("refund-panel", refund("ORD-1018", "CUS-006", 2400.0))
        await wait_for_approval(baton, case_id)
        await baton.approve(case_id, approver="carol", comment="ok")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    spans = spans_of(case_id)
    opinions = [dict(s.attributes or {}) for s in by_name(spans, "baton.opinion")]
    assert [(o["baton.step"], o["baton.review.verdict"], o["baton.group"]) for o in opinions] == [
        ("policy", "approve", "panel"), ("fraud", "reject", "panel"),
        ("policy", "approve", "panel"), ("fraud", "approve", "panel"),
    ]  # fmt: skip
    resolved = [dict(s.attributes or {}) for s in by_name(spans, "baton.resolved")]
    assert [(r["baton.review.strategy"], r["baton.review.effect"]) for r in resolved] == [
        ("most_conservative", "revise"), ("most_conservative", "pass"),
    ]  # fmt: skip
    # the two reviewers' activities overlapped: both were started before either completed
    history = await traced.client.get_workflow_handle(case_id).fetch_history()
    firsts = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")][2:4]
    names = [e.activity_task_scheduled_event_attributes.activity_type.name for e in firsts]
    assert names == ["refunds.policy", "refunds.fraud"]
    assert firsts[0].event_id + 1 == firsts[1].event_id  # scheduled by one workflow task, together
