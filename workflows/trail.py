"""The audit trail kept in workflow state.

Events are stamped with ``workflow.now()`` (deterministic) and numbered, so the
query, the result and a replay all see the same sequence.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from opentelemetry import trace
    from temporalio.contrib.opentelemetry import TracingWorkflowInboundInterceptor
    from temporalio.contrib.opentelemetry import workflow as otel_workflow

    from baton.messages import AuditEvent, AuditKind

CHECK_RESULT = {AuditKind.CHECK_PASSED: "passed", AuditKind.CHECK_FAILED: "failed"}
VERDICTS = {
    AuditKind.APPROVED: "approved",
    AuditKind.REJECTED: "rejected",
    AuditKind.CHANGES_REQUESTED: "changes_requested",
    AuditKind.REFUSED: "refused",
}


def _tracing_configured() -> bool:
    """False while no SDK tracer provider is installed: spans would be dropped anyway, and
    each one costs a round trip out of the sandbox (measured in BENCHMARKS.md)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


class AuditTrail:
    """Append-only list of :class:`AuditEvent` for one case; each event is also a span.

    Spans go through Temporal's tracing interceptor, which skips them on replay, so a
    replayed case adds no duplicate spans. Attributes are names, results and token
    counts: never the case's data or an agent's output.
    """

    def __init__(self, process: str = "", case_id: str = "") -> None:
        self.events: list[AuditEvent] = []
        self.logged = 0
        self._process = process
        self._case_id = case_id

    def add(
        self,
        kind: AuditKind,
        detail: str,
        *,
        step: str | None = None,
        agent: str | None = None,
        actor: str | None = None,
        **data: Any,
    ) -> AuditEvent:
        """Record one event and log it through the replay-safe workflow logger."""
        event = AuditEvent(
            seq=len(self.events) + 1,
            at=workflow.now(),
            kind=kind,
            detail=detail,
            step=step,
            agent=agent,
            actor=actor,
            data=data,
        )
        self.events.append(event)
        workflow.logger.info("audit %s: %s", kind.value, detail)
        self._span(event)
        return event

    def _span(self, event: AuditEvent) -> None:
        # completed_span falls back to a plain, replay-unsafe span when the tracing
        # interceptor is absent (e.g. in the Replayer), so only call it with one.
        if TracingWorkflowInboundInterceptor._from_context() is None or not _tracing_configured():
            return
        attributes: dict[str, str | int | bool] = {
            "baton.process": self._process,
            "baton.case_id": self._case_id,
            "baton.event": event.kind.value,
            "baton.seq": event.seq,
        }
        if event.step:
            attributes["baton.step"] = event.step
        if event.agent:
            attributes["baton.agent"] = event.agent
        if event.kind in CHECK_RESULT:
            attributes["baton.check.result"] = CHECK_RESULT[event.kind]
        if event.kind == AuditKind.DECISION and "outcome" in event.data:
            attributes["baton.decision"] = str(event.data["outcome"])
        if event.kind in (AuditKind.OPINION, AuditKind.RESOLVED):
            attributes["baton.review.verdict"] = str(event.data.get("verdict", ""))
            attributes["baton.review.effect"] = str(event.data.get("effect", ""))
            if "strategy" in event.data:
                attributes["baton.review.strategy"] = str(event.data["strategy"])
            if "group" in event.data:
                attributes["baton.group"] = str(event.data["group"])
        if event.kind in VERDICTS and event.actor:
            attributes["baton.approver"] = event.actor
            attributes["baton.verdict"] = VERDICTS[event.kind]
        if event.kind == AuditKind.HANDOFF and event.agent:
            attributes["gen_ai.operation.name"] = "invoke_agent"
            attributes["gen_ai.agent.name"] = event.agent
            for key, attr in (
                ("model", "gen_ai.request.model"),
                ("input_tokens", "gen_ai.usage.input_tokens"),
                ("output_tokens", "gen_ai.usage.output_tokens"),
            ):
                if key in event.data:
                    attributes[attr] = event.data[key]
        name = (
            f"invoke_agent {event.agent}" if event.kind == AuditKind.HANDOFF else f"baton.{event.kind.value}"
        )
        otel_workflow.completed_span(name, attributes=attributes)
