"""``GovernedProcess``: interprets a frozen process spec for one case.

The spec arrives whole in the start input (never read from disk here), so a
case stays governed by the version it started under. The run is:

    validate case → flow (agents, handoff checks, review loops)
        → [escalation ladder if a handoff or review cannot pass]
        → decision rules → [approval ladder] → idempotent action → result
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.handoffs import HandoffRunner, execute, failure_message
from workflows.ladder import PAST, ApprovalDesk, LadderResult
from workflows.trail import AuditTrail

with workflow.unsafe.imports_passed_through():
    from baton.contracts import check_against, resolve_contract
    from baton.messages import (
        ActionInput,
        ActionResult,
        AuditEvent,
        AuditKind,
        CaseResult,
        CaseStart,
        CaseStatus,
        Feedback,
        HumanDecision,
        JsonDict,
        Outcome,
    )
    from baton.rules import RuleError, evaluate, evaluate_bool


@dataclass
class FlowFailure:
    """Why the flow stopped short: a handoff that never passed or a review never satisfied."""

    kind: str
    index: int
    problems: list[Feedback]


@workflow.defn(name="GovernedProcess")
class GovernedProcess:
    """One case of a governed process; see the module docstring for the shape of a run."""

    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        self._start = start
        self._spec = start.spec.spec
        self._trail = AuditTrail()
        self._desk = ApprovalDesk(
            self._spec,
            self._trail,
            submitted_by=start.submitted_by,
            on_change=lambda: self._set_stage(self._stage),
        )
        self._handoffs = HandoffRunner(self._spec, start.case_id, start.case, self._trail)
        self._outputs: dict[str, JsonDict] = {}
        self._rounds: dict[str, int] = {}
        self._path: list[str] = []
        self._stage = "starting"
        self._outcome: Outcome | None = None
        self._reason: str | None = None
        self._result: CaseResult | None = None

    @workflow.run
    async def run(self, start: CaseStart) -> CaseResult:
        """Run the case to an outcome; never leaves it waiting without a deadline."""
        self._trail.add(
            AuditKind.CASE_STARTED,
            f"{self._spec.process} v{self._spec.version} started by {start.submitted_by}",
            actor=start.submitted_by,
            spec_sha256=start.spec.sha256,
        )
        if not self._case_is_valid():
            return self._close(Outcome.INVALID_INPUT, "case does not match the input contract")
        failure = await self._run_flow(0)
        decided_by = "rules"
        while failure is not None:
            escalated = await self._escalate(failure)
            if escalated is None:
                return self._closed()
            if escalated == "retry":
                failure = await self._run_flow(failure.index)
                continue
            decided_by = escalated
            failure = None
        if decided_by == "rules":
            verdict = await self._decide()
            if verdict is None:
                return self._closed()
            decided_by = verdict
        return await self._act(decided_by)

    @workflow.signal
    def approve(self, decision: HumanDecision) -> None:
        """An approver approves what the case is waiting on."""
        self._desk.receive("approve", decision)

    @workflow.signal
    def reject(self, decision: HumanDecision) -> None:
        """An approver rejects what the case is waiting on."""
        self._desk.receive("reject", decision)

    @workflow.query
    def status(self) -> CaseStatus:
        """Where the case is now and what, if anything, it waits for."""
        return CaseStatus(
            case_id=self._start.case_id,
            process=self._spec.process,
            spec_version=self._spec.version,
            spec_sha256=self._start.spec.sha256,
            stage=self._stage,
            path=list(self._path),
            awaiting=self._desk.awaiting,
            outcome=self._outcome,
            reason=self._reason,
        )

    @workflow.query
    def audit(self) -> list[AuditEvent]:
        """Every audit event so far, in order."""
        return list(self._trail.events)

    # -- stages -------------------------------------------------------------

    def _case_is_valid(self) -> bool:
        with workflow.unsafe.imports_passed_through():
            model = resolve_contract(self._spec.input)
        _, problems = check_against(model, self._start.case)
        if problems:
            self._trail.add(AuditKind.CHECK_FAILED, "case input: " + "; ".join(problems))
        return not problems

    async def _run_flow(self, start_at: int) -> FlowFailure | None:
        """Run steps from ``start_at``; loop review rejections back to the reviewed step."""
        flow = self._spec.flow
        feedback: dict[str, list[Feedback]] = {}
        i = start_at
        while i < len(flow):
            step = flow[i]
            revision = self._rounds.get(step.step, 0)
            self._set_stage(f"running {step.agent_name}" + (f" (revision {revision})" if revision else ""))
            result = await self._handoffs.run(
                step, self._outputs, feedback.pop(step.step, []), revision=revision
            )
            self._path.extend([f"{step.step}✗"] * result.failed_attempts)
            if result.output is None:
                return FlowFailure("handoff", i, result.problems)
            self._outputs[step.step] = result.output
            self._path.append(step.step + (f"(r{revision})" if revision else ""))
            if step.reviews is None:
                i += 1
                continue
            try:
                passed, findings = self._review(i)
            except RuleError as exc:
                problem = Feedback(source="guard", message=f"review could not be read: {exc}")
                return FlowFailure("handoff", i, [problem])
            if passed:
                i += 1
                continue
            rounds = self._rounds.get(step.reviews, 0) + 1
            self._trail.add(
                AuditKind.REVIEW_REJECTED,
                f"{step.step} rejected {step.reviews}: " + "; ".join(f.message for f in findings),
                step=step.step,
                agent=step.agent_name,
                round=rounds,
            )
            if rounds > step.max_rounds:
                return FlowFailure("review", i, findings)
            target = self._spec.step_index(step.reviews)
            for stale in flow[target : i + 1]:
                self._outputs.pop(stale.step, None)
            self._rounds[step.reviews] = rounds
            feedback[step.reviews] = findings
            self._trail.add(
                AuditKind.REVISION,
                f"{step.reviews} revises (round {rounds} of {step.max_rounds})",
                step=step.reviews,
                round=rounds,
            )
            i = target
        return None

    def _review(self, index: int) -> tuple[bool, list[Feedback]]:
        step = self._spec.flow[index]
        context = self._context()
        assert step.passes is not None
        if evaluate_bool(step.passes, context):
            return True, []
        raw = evaluate(step.findings, context) if step.findings else []
        items = raw if isinstance(raw, list) else [raw]
        findings = [
            Feedback(source="review", message=str(item.get("message", item)), data=item)
            if isinstance(item, dict)
            else Feedback(source="review", message=str(item))
            for item in items
        ]
        return False, findings or [Feedback(source="review", message=f"{step.step} did not pass")]

    async def _escalate(self, failure: FlowFailure) -> str | None:
        """Hand a stuck case to people; returns ``retry``, a decider, or None when closed."""
        step = self._spec.flow[failure.index]
        problems = "; ".join(p.message for p in failure.problems)
        if failure.kind == "handoff":
            purpose = f"handoff from {step.step} failed its checks ({problems}); approve = run it again"
        else:
            purpose = f"{step.step} still rejects {step.reviews} ({problems}); approve = act anyway"
        self._trail.add(AuditKind.ESCALATED, purpose, step=step.step, agent=step.agent_name)
        if self._spec.escalation is None:
            self._close(Outcome.REJECTED, f"safe default ({self._spec.on_timeout}): {purpose}")
            return None
        ladder = self._spec.escalation.ladder
        self._path.append(f"escalated:{ladder}")
        result = await self._wait_for_people(ladder, purpose)
        if result.record is None or result.result != "approve":
            self._close_after_people(result, purpose)
            return None
        if failure.kind == "handoff":
            self._path.append("retry")
            return "retry"
        return result.record.approver

    async def _decide(self) -> str | None:
        """Apply the first matching decision rule; returns the decider, or None when closed."""
        self._set_stage("deciding")
        context = self._context()
        for i, rule in enumerate(self._spec.decide):
            try:
                matched = rule.when is None or evaluate_bool(rule.when, context)
            except RuleError as exc:
                self._trail.add(AuditKind.DECISION, f"rule decide[{i}] failed: {exc}", rule=i)
                self._path.append("rule-error")
                self._close(Outcome.REJECTED, f"safe default: decision rule {i} failed to evaluate")
                return None
            if not matched:
                continue
            self._trail.add(
                AuditKind.DECISION,
                f"decide[{i}] → {rule.outcome}" + (f" ({rule.reason})" if rule.reason else ""),
                rule=i,
                when=rule.when,
                outcome=rule.outcome,
            )
            self._path.append(rule.outcome)
            if rule.then == "auto":
                return "rules"
            if rule.then == "reject":
                self._close(Outcome.REJECTED, rule.reason or f"decision rule {i} rejects")
                return None
            purpose = rule.reason or f"decision rule {i} requires approval"
            result = await self._wait_for_people(rule.then.approval, purpose)
            if result.record is None or result.result != "approve":
                self._close_after_people(result, purpose)
                return None
            return result.record.approver
        raise AssertionError("validated specs end with a catch-all rule")

    async def _wait_for_people(self, ladder: str, purpose: str) -> LadderResult:
        self._set_stage(f"awaiting approval ({ladder})")
        result = await self._desk.climb(ladder, purpose)
        self._path.extend(f"{role} timed out" for role in result.timed_out_roles)
        if result.record is not None:
            self._path.append(f"{PAST[result.result]} by {result.record.approver}")
        return result

    def _close_after_people(self, result: LadderResult, purpose: str) -> None:
        if result.record is None:
            self._path.append("timeout")
            self._close(Outcome.REJECTED, f"safe default ({self._spec.on_timeout}): nobody decided")
        else:
            comment = result.record.comment or "no reason given"
            self._close(Outcome.REJECTED, f"rejected by {result.record.approver}: {comment}")

    async def _act(self, decided_by: str) -> CaseResult:
        action = self._spec.action
        info = workflow.info()
        key = f"{info.workflow_id}/{action.activity}"
        self._set_stage(f"acting ({action.activity})")
        try:
            done: ActionResult = await execute(
                action.activity,
                ActionInput(
                    idempotency_key=key,
                    case_id=self._start.case_id,
                    process=self._spec.process,
                    case=self._start.case,
                    handoffs=dict(self._outputs),
                    decided_by=decided_by,
                    approvals=list(self._desk.records),
                ),
                result_type=ActionResult,
                timeouts=action.timeouts,
                retry=action.retry,
                local=False,
                summary=f"action · {action.activity}",
            )
        except ActivityError as exc:
            message = failure_message(exc)
            self._trail.add(AuditKind.ACTION, f"action failed: {message}", idempotency_key=key)
            self._path.append("action✗")
            return self._close(Outcome.ACTION_FAILED, message)
        self._trail.add(
            AuditKind.ACTION,
            f"{action.activity} applied ({done.reference})"
            + ("" if done.applied_now else " by an earlier attempt"),
            idempotency_key=key,
            reference=done.reference,
            applied_now=done.applied_now,
        )
        self._path.append("action")
        return self._close(Outcome.ACTIONED, f"decided by {decided_by}", decided_by, done)

    # -- helpers ------------------------------------------------------------

    def _context(self) -> JsonDict:
        return {"case": self._start.case, **self._outputs}

    def _set_stage(self, stage: str) -> None:
        self._stage = stage
        waiting = self._desk.awaiting
        details = f"**{self._spec.process}** · stage: {stage}"
        if waiting is not None:
            details += f"\n\nwaiting for **{waiting.role}** until {waiting.deadline.isoformat()}"
        workflow.set_current_details(details)

    def _close(
        self,
        outcome: Outcome,
        reason: str,
        decided_by: str | None = None,
        action: ActionResult | None = None,
    ) -> CaseResult:
        self._outcome, self._reason = outcome, reason
        self._set_stage(f"closed: {outcome.value}")
        self._trail.add(AuditKind.CASE_CLOSED, f"{outcome.value}: {reason}", outcome=outcome.value)
        self._result = CaseResult(
            case_id=self._start.case_id,
            process=self._spec.process,
            outcome=outcome,
            reason=reason,
            path=list(self._path),
            decided_by=decided_by,
            approvals=list(self._desk.records),
            action=action,
            handoffs=dict(self._outputs),
            audit=list(self._trail.events),
        )
        return self._result

    def _closed(self) -> CaseResult:
        assert self._result is not None, "the case was closed before this point"
        return self._result
